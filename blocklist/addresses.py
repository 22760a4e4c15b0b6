"""Strict parsing of IP addresses and address ranges into integers.

Addresses are represented as ``(family, value)`` where ``family`` is 4 or 6 and
``value`` is the address as an unsigned integer. An IPv4-mapped IPv6 address
(``::ffff:1.2.3.4``) is the IPv4 address: it is returned as family 4.

The hot path (:func:`parse_address`) relies on the C library's
``inet_pton``, which accepts only canonical forms (no leading-zero or octal
octets, no whitespace, no zone ids, no brackets). Only when it rejects an
input is the slower :func:`explain_invalid` run to say why.
"""

from __future__ import annotations

import socket
from typing import Final

from blocklist.errors import InvalidAddress

V4: Final = 4
V6: Final = 6
V4_MAX: Final = (1 << 32) - 1
V6_MAX: Final = (1 << 128) - 1
MAX_BITS: Final = {V4: 32, V6: 128}
#: Longest textual IPv6 address: 6 groups, then an embedded dotted quad.
MAX_ADDRESS_LENGTH: Final = len("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255")

_inet_pton = socket.inet_pton
_AF_INET: Final = socket.AF_INET
_AF_INET6: Final = socket.AF_INET6
_from_bytes = int.from_bytes


def parse_address(text: str) -> tuple[int, int]:
    """Parse one client-supplied address into ``(family, value)``.

    Raises :class:`InvalidAddress` (with a reason that never echoes the input)
    for anything but a single plain IPv4 or IPv6 address. Cost: one
    ``inet_pton`` call on valid input.
    """
    if len(text) <= MAX_ADDRESS_LENGTH:
        try:
            if ":" not in text:
                return V4, _from_bytes(_inet_pton(_AF_INET, text), "big")
            value = _from_bytes(_inet_pton(_AF_INET6, text), "big")
        except (OSError, ValueError):
            pass
        else:
            if value >> 32 == 0xFFFF:
                return V4, value & V4_MAX
            return V6, value
    raise InvalidAddress(explain_invalid(text))


def explain_invalid(text: str) -> str:
    """Say, in a short safe sentence, why ``text`` is not a valid address.

    Only called on input :func:`parse_address` rejected; the order of checks
    picks the most specific reason a client can act on.
    """
    if text == "":
        return "empty address"
    if len(text) > MAX_ADDRESS_LENGTH:
        return f"address too long (at most {MAX_ADDRESS_LENGTH} characters)"
    if not text.isascii():
        return "address contains non-ASCII characters"
    if not text.isprintable():
        return "address contains control characters"
    if text != text.strip() or " " in text:
        return "address contains whitespace"
    if "%" in text:
        if ":" in text:
            return "zone identifiers (%...) are not accepted"
        return "percent signs are not valid in an address"
    if text.startswith("[") or text.endswith("]"):
        return "brackets are not accepted around IPv6 addresses"
    if "/" in text:
        return "CIDR notation is not accepted: give a single address"
    if "-" in text or "," in text:
        return "ranges and lists are not accepted: give a single address"
    if ":" not in text:
        return _explain_ipv4(text)
    return "not a valid IPv6 address"


def _explain_ipv4(text: str) -> str:
    parts = text.split(".")
    if any(c.isalpha() for c in text) and "0x" not in text.lower():
        return "hostnames are not accepted: give an IP address"
    if len(parts) != 4:
        return "an IPv4 address has exactly four dot-separated parts"
    for part in parts:
        if not part.isdigit():
            return "IPv4 parts must be decimal numbers"
        if len(part) > 1 and part[0] == "0":
            return "IPv4 parts with leading zeros are ambiguous and not accepted"
        if int(part) > 255:
            return "IPv4 parts must be between 0 and 255"
    return "not a valid IPv4 address"


def parse_network(text: str) -> tuple[int, int, int]:
    """Parse a feed entry: an address, a CIDR or a ``begin-end`` range.

    Returns ``(family, first, last)`` with ``first <= last``. A CIDR with host
    bits set is taken as its network (as most feeds mean it). IPv4-mapped
    IPv6 entries become IPv4. Raises :class:`InvalidAddress` otherwise.
    """
    if "/" in text:
        addr_text, _, prefix_text = text.partition("/")
        family, value = parse_address(addr_text)
        if not (prefix_text.isascii() and prefix_text.isdigit()) or len(prefix_text) > 3:
            raise InvalidAddress("CIDR prefix length is not a number")
        prefix = int(prefix_text)
        bits = MAX_BITS[family]
        if family == V4 and ":" in addr_text:
            # An IPv4-mapped IPv6 network: its prefix counts the 96 mapped bits.
            prefix -= 96
            if prefix < 0:
                raise InvalidAddress("IPv4-mapped network shorter than /96")
        if prefix > bits:
            raise InvalidAddress(f"CIDR prefix length above {bits}")
        host_bits = bits - prefix
        first = (value >> host_bits) << host_bits
        return family, first, first | ((1 << host_bits) - 1)
    if "-" in text:
        begin_text, _, end_text = text.partition("-")
        family, first = parse_address(begin_text.strip())
        end_family, last = parse_address(end_text.strip())
        if family != end_family:
            raise InvalidAddress("range mixes IPv4 and IPv6")
        if last < first:
            raise InvalidAddress("range ends before it begins")
        return family, first, last
    family, value = parse_address(text)
    return family, value, value


def format_address(family: int, value: int) -> str:
    """Inverse of :func:`parse_address`: the canonical text of an address."""
    if family == V4:
        return socket.inet_ntop(_AF_INET, value.to_bytes(4, "big"))
    return socket.inet_ntop(_AF_INET6, value.to_bytes(16, "big"))
