"""Strict address parsing: what clients and feeds may send, and what is refused."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blocklist.addresses import (
    MAX_ADDRESS_LENGTH,
    V4,
    V4_MAX,
    V6,
    V6_MAX,
    explain_invalid,
    format_address,
    parse_address,
    parse_network,
)
from blocklist.errors import BlocklistError, InvalidAddress


def v4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def v6(text: str) -> int:
    return int(ipaddress.IPv6Address(text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2.3.4", (V4, 0x01020304)),
        ("0.0.0.0", (V4, 0)),
        ("255.255.255.255", (V4, V4_MAX)),
        ("192.168.0.1", (V4, v4("192.168.0.1"))),
        ("::", (V6, 0)),
        ("::1", (V6, 1)),
        ("2001:db8::1", (V6, v6("2001:db8::1"))),
        ("2001:DB8::A", (V6, v6("2001:db8::a"))),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", (V6, V6_MAX)),
        ("fe80::1", (V6, v6("fe80::1"))),
        ("::1.2.3.4", (V6, 0x01020304)),
        ("64:ff9b::1.2.3.4", (V6, v6("64:ff9b::102:304"))),
    ],
)
def test_parse_address_accepts_plain_addresses(text: str, expected: tuple[int, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text", ["::ffff:1.2.3.4", "::ffff:102:304", "::FFFF:1.2.3.4", "0:0:0:0:0:ffff:1.2.3.4"]
)
def test_ipv4_mapped_ipv6_address_is_the_ipv4_address(text: str) -> None:
    assert parse_address(text) == (V4, 0x01020304)


def test_mapped_address_bounds_are_ipv4_bounds() -> None:
    assert parse_address("::ffff:0.0.0.0") == (V4, 0)
    assert parse_address("::ffff:255.255.255.255") == (V4, V4_MAX)


def test_addresses_next_to_the_mapped_block_stay_ipv6() -> None:
    """Only ::ffff:0:0/96 is IPv4-mapped; its neighbours are ordinary IPv6."""
    assert parse_address("::fffe:ffff:ffff") == (V6, v6("::fffe:ffff:ffff"))
    assert parse_address("::1:0:0:0") == (V6, v6("::1:0:0:0"))


def test_longest_valid_ipv6_text_is_accepted() -> None:
    text = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
    assert len(text) == MAX_ADDRESS_LENGTH
    assert parse_address(text) == (V6, V6_MAX)


# (input, a fragment the reason must contain)
INVALID_ADDRESSES = [
    pytest.param(" 1.2.3.4", "whitespace", id="leading-space"),
    pytest.param("1.2.3.4 ", "whitespace", id="trailing-space"),
    pytest.param(" ::1", "whitespace", id="leading-space-v6"),
    pytest.param("1.2.3.4 5", "whitespace", id="inner-space"),
    pytest.param("1.2.3.4\t", "control", id="trailing-tab"),
    pytest.param("1.2.3.4\n", "control", id="trailing-newline"),
    pytest.param("1.2.3.4\r\nX-Injected: 1", "control", id="crlf-injection"),
    pytest.param("1.2.3.4\x00", "control", id="nul"),
    pytest.param("\x001.2.3.4", "control", id="leading-nul"),
    pytest.param("fe80::1%eth0", "zone", id="zone-id"),
    pytest.param("fe80::1%25eth0", "zone", id="zone-id-encoded"),
    pytest.param("010.1.1.1", "leading zero", id="leading-zero-octet"),
    pytest.param("1.2.3.04", "leading zero", id="leading-zero-last-octet"),
    pytest.param("", "empty", id="empty"),
    pytest.param("1.2.3.4-1.2.3.5", "range", id="range"),
    pytest.param("1.2.3.4,1.2.3.5", "list", id="list"),
    pytest.param("1.2.3.0/24", "CIDR", id="cidr"),
    pytest.param("::/0", "CIDR", id="cidr-v6"),
    pytest.param("example.com", "hostname", id="hostname"),
    pytest.param("localhost", "hostname", id="localhost"),
    pytest.param("1" * (MAX_ADDRESS_LENGTH + 1), "too long", id="over-long"),
    pytest.param("1.2.3.4" + " " * 100, "too long", id="over-long-padded"),
    pytest.param("\u0661.2.3.4", "non-ASCII", id="arabic-indic-digit"),
    pytest.param("\uff11.2.3.4", "non-ASCII", id="fullwidth-digit"),
    pytest.param("1.2.3.4\u200b", "non-ASCII", id="zero-width-space"),
    pytest.param("1.2.3", "four", id="three-parts"),
    pytest.param("1.2.3.4.5", "four", id="five-parts"),
    pytest.param("1", "four", id="integer"),
    pytest.param("256.0.0.1", "between 0 and 255", id="octet-too-big"),
    pytest.param("1.2.3.999", "between 0 and 255", id="last-octet-too-big"),
    pytest.param("0x7f.0.0.1", "decimal", id="hex-octet"),
    pytest.param("1..2.3", "decimal", id="empty-octet"),
    pytest.param("[::1]", "bracket", id="bracketed-v6"),
    pytest.param("[::1]:80", "bracket", id="bracketed-v6-with-port"),
    pytest.param("1:2:3:4:5:6:7:8:9", "IPv6", id="nine-groups"),
    pytest.param("gggg::1", "IPv6", id="bad-hex"),
    pytest.param("1::2::3", "IPv6", id="two-double-colons"),
    pytest.param("1.2.3.4:80", "IPv6", id="v4-with-port"),
]


@pytest.mark.parametrize(("text", "fragment"), INVALID_ADDRESSES)
def test_parse_address_rejects_with_a_specific_reason(text: str, fragment: str) -> None:
    with pytest.raises(InvalidAddress) as info:
        parse_address(text)
    assert fragment.lower() in info.value.reason.lower()
    assert str(info.value) == info.value.reason


@pytest.mark.parametrize(("text", "fragment"), INVALID_ADDRESSES)
def test_rejection_reason_never_echoes_the_input(text: str, fragment: str) -> None:
    del fragment
    with pytest.raises(InvalidAddress) as info:
        parse_address(text)
    reason = info.value.reason
    assert reason
    assert reason.isascii()
    assert reason.isprintable()
    if len(text) >= 3:
        assert text.strip() not in reason


def test_invalid_address_is_a_value_error_and_a_blocklist_error() -> None:
    """The API maps it to 422; callers catching ValueError keep working."""
    with pytest.raises(ValueError, match="hostname"):
        parse_address("example.com")
    assert issubclass(InvalidAddress, BlocklistError)


#: Every reason ``explain_invalid`` can give: a closed set, so none can carry input.
KNOWN_REASONS = frozenset(
    {
        "empty address",
        f"address too long (at most {MAX_ADDRESS_LENGTH} characters)",
        "address contains non-ASCII characters",
        "address contains control characters",
        "address contains whitespace",
        "zone identifiers (%...) are not accepted",
        "percent signs are not valid in an address",
        "brackets are not accepted around IPv6 addresses",
        "CIDR notation is not accepted: give a single address",
        "ranges and lists are not accepted: give a single address",
        "hostnames are not accepted: give an IP address",
        "an IPv4 address has exactly four dot-separated parts",
        "IPv4 parts must be decimal numbers",
        "IPv4 parts with leading zeros are ambiguous and not accepted",
        "IPv4 parts must be between 0 and 255",
        "not a valid IPv4 address",
        "not a valid IPv6 address",
    }
)


@pytest.mark.parametrize(("text", "fragment"), INVALID_ADDRESSES)
def test_rejection_reason_is_one_of_the_fixed_reasons(text: str, fragment: str) -> None:
    del fragment
    with pytest.raises(InvalidAddress) as info:
        parse_address(text)
    assert info.value.reason in KNOWN_REASONS


@given(st.text(max_size=60) | st.text(alphabet="0123456789abcdefABCDEF.:/%-[] x", max_size=50))
def test_parse_address_never_raises_anything_but_invalid_address(text: str) -> None:
    """Arbitrary input either parses to an in-range value or gets a fixed, input-free reason."""
    reason = None
    try:
        family, value = parse_address(text)
    except InvalidAddress as exc:
        reason = exc.reason
    if reason is not None:
        assert reason in KNOWN_REASONS
    else:
        assert family in (V4, V6)
        assert 0 <= value <= (V4_MAX if family == V4 else V6_MAX)
        assert format_address(family, value)


@given(st.ip_addresses())
def test_parse_address_agrees_with_ipaddress_module(
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    family, value = parse_address(str(addr))
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        assert (family, value) == (V4, int(addr.ipv4_mapped))
    else:
        assert (family, value) == (addr.version, int(addr))


def test_explain_invalid_is_what_parse_address_reports() -> None:
    with pytest.raises(InvalidAddress) as info:
        parse_address("256.1.1.1")
    assert info.value.reason == explain_invalid("256.1.1.1")


# --- parse_network ---------------------------------------------------------


def test_parse_network_single_address_is_a_one_address_range() -> None:
    assert parse_network("1.2.3.4") == (V4, 0x01020304, 0x01020304)
    assert parse_network("2001:db8::1") == (V6, v6("2001:db8::1"), v6("2001:db8::1"))


def test_parse_network_cidr_gives_first_and_last_address() -> None:
    assert parse_network("1.2.3.0/24") == (V4, v4("1.2.3.0"), v4("1.2.3.255"))
    assert parse_network("10.0.0.0/8") == (V4, v4("10.0.0.0"), v4("10.255.255.255"))
    assert parse_network("2001:db8::/32") == (
        V6,
        v6("2001:db8::"),
        v6("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0/0", (V4, 0, V4_MAX)),
        ("1.2.3.4/0", (V4, 0, V4_MAX)),
        ("1.2.3.4/32", (V4, 0x01020304, 0x01020304)),
        ("255.255.255.255/32", (V4, V4_MAX, V4_MAX)),
        ("::/0", (V6, 0, V6_MAX)),
        ("::1/128", (V6, 1, 1)),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", (V6, V6_MAX, V6_MAX)),
    ],
)
def test_parse_network_extreme_prefixes(text: str, expected: tuple[int, int, int]) -> None:
    assert parse_network(text) == expected


def test_parse_network_cidr_with_host_bits_is_taken_as_its_network() -> None:
    assert parse_network("1.2.3.4/24") == parse_network("1.2.3.0/24")
    assert parse_network("2001:db8::1234/64") == parse_network("2001:db8::/64")


def test_parse_network_begin_end_range() -> None:
    assert parse_network("1.2.3.4-1.2.3.9") == (V4, v4("1.2.3.4"), v4("1.2.3.9"))
    assert parse_network("1.2.3.4 - 1.2.3.9") == (V4, v4("1.2.3.4"), v4("1.2.3.9"))
    assert parse_network("1.2.3.4-1.2.3.4") == (V4, v4("1.2.3.4"), v4("1.2.3.4"))
    assert parse_network("2001:db8::1-2001:db8::ff") == (V6, v6("2001:db8::1"), v6("2001:db8::ff"))


def test_parse_network_mapped_ipv6_cidr_becomes_ipv4_network() -> None:
    assert parse_network("::ffff:1.2.3.0/120") == parse_network("1.2.3.0/24")
    assert parse_network("::ffff:1.2.3.4/128") == (V4, 0x01020304, 0x01020304)
    assert parse_network("::ffff:0.0.0.0/96") == (V4, 0, V4_MAX)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("1.2.3.0/33", "above 32"),
        ("::/129", "above 128"),
        ("1.2.3.0/", "not a number"),
        ("1.2.3.0/x", "not a number"),
        ("1.2.3.0/-1", "not a number"),
        ("1.2.3.0/ 24", "not a number"),
        ("1.2.3.0/\u0662\u0664", "not a number"),
        ("1.2.3.0/0024", "not a number"),
        ("::ffff:1.2.3.0/95", "shorter than /96"),
        ("1.2.3.9-1.2.3.4", "ends before it begins"),
        ("1.2.3.4-::1", "mixes IPv4 and IPv6"),
        ("::1-1.2.3.4", "mixes IPv4 and IPv6"),
        ("256.0.0.0/8", "between 0 and 255"),
        ("1.2.3.4-", "empty"),
        ("example.com/24", "hostname"),
    ],
)
def test_parse_network_rejects_bad_entries(text: str, fragment: str) -> None:
    with pytest.raises(InvalidAddress) as info:
        parse_network(text)
    assert fragment in info.value.reason


@given(st.integers(min_value=0, max_value=V4_MAX), st.integers(min_value=0, max_value=32))
def test_parse_network_cidr_agrees_with_ipaddress_module(value: int, prefix: int) -> None:
    text = f"{ipaddress.IPv4Address(value)}/{prefix}"
    net = ipaddress.IPv4Network(text, strict=False)
    assert parse_network(text) == (V4, int(net.network_address), int(net.broadcast_address))


MAPPED_BLOCK = 0xFFFF << 32


@given(
    st.integers(min_value=0, max_value=V6_MAX)
    | st.integers(min_value=MAPPED_BLOCK, max_value=MAPPED_BLOCK | V4_MAX),
    st.integers(min_value=0, max_value=128),
)
def test_parse_network_ipv6_cidr_agrees_with_ipaddress_module(value: int, prefix: int) -> None:
    """IPv6 CIDRs parse like ``ipaddress`` does, except mapped ones, which become IPv4."""
    addr = ipaddress.IPv6Address(value)
    text = f"{addr}/{prefix}"
    net = ipaddress.IPv6Network(text, strict=False)
    if addr.ipv4_mapped is None:
        assert parse_network(text) == (V6, int(net.network_address), int(net.broadcast_address))
    elif prefix < 96:
        with pytest.raises(InvalidAddress, match="shorter than /96"):
            parse_network(text)
    else:
        mask = V4_MAX
        assert parse_network(text) == (
            V4,
            int(net.network_address) & mask,
            int(net.broadcast_address) & mask,
        )


# --- format_address --------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["0.0.0.0", "1.2.3.4", "255.255.255.255", "::", "::1", "2001:db8::1", "fe80::1:2:3:4"]
)
def test_format_address_round_trips_canonical_text(text: str) -> None:
    assert format_address(*parse_address(text)) == text


def test_format_address_canonicalises() -> None:
    assert format_address(*parse_address("2001:DB8:0:0:0:0:0:1")) == "2001:db8::1"
    assert format_address(*parse_address("::ffff:1.2.3.4")) == "1.2.3.4"


@given(st.integers(min_value=0, max_value=V4_MAX))
def test_format_then_parse_is_identity_for_ipv4(value: int) -> None:
    assert parse_address(format_address(V4, value)) == (V4, value)


@given(st.integers(min_value=0, max_value=V6_MAX).filter(lambda v: v >> 32 != 0xFFFF))
def test_format_then_parse_is_identity_for_ipv6(value: int) -> None:
    assert parse_address(format_address(V6, value)) == (V6, value)


def test_percent_sign_outside_ipv6_is_not_called_a_zone_id() -> None:
    with pytest.raises(InvalidAddress) as info:
        parse_address("1.2.3.4%zz")
    assert info.value.reason == "percent signs are not valid in an address"
