"""Sanity checks a freshly parsed feed must pass before it may replace the
last good one. Pure functions: the caller decides what to do on refusal
(keep serving the last good version, count and report the refusal).
"""

from __future__ import annotations

from blocklist.addresses import V4, V6, format_address, parse_network
from blocklist.errors import FeedRefused
from blocklist.feedparsers import FamilyEntries, ParsedFeed
from blocklist.index import mapped_ipv4

#: Address space no client on the internet comes from (RFC 6890 and IANA's
#: special-purpose registries): an entry listing it blocks no one, however
#: broad (FireHOL level 1 lists 224.0.0.0/3, 0.0.0.0/8, 10.0.0.0/8).
_NOT_GLOBAL_V4 = tuple(
    parse_network(text)[1:]
    for text in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/3",
    )
)  # fmt: skip
#: IPv6 clients on the internet come from global unicast, 2000::/3.
_GLOBAL_V6 = parse_network("2000::/3")[1:]


def check_feed(
    parsed: ParsedFeed,
    previous_entries: int | None,
    shrink_threshold: float,
    *,
    broadest_v4: int = 8,
    broadest_v6: int = 16,
) -> None:
    """Raise :class:`FeedRefused` if ``parsed`` looks wrong.

    Refused: a feed with no entries at all; one with fewer than
    ``shrink_threshold`` times the entries of the last good version of the
    same feed (``previous_entries``; None when there is none yet); one with
    an entry that covers more internet-facing addresses than a prefix of
    length ``broadest_v4`` (IPv4) or ``broadest_v6`` (IPv6) holds, such as
    ``0.0.0.0/0``: one bad line would block everyone. Special-purpose space
    (private, loopback, multicast, reserved) does not count. A bound of 0
    allows any entry.
    """
    if parsed.entries == 0:
        raise FeedRefused("feed has no entries")
    # IPv6 entries over ::ffff:0:0/96 also cover the IPv4 clients they map.
    mapped = mapped_ipv4(parsed.v6)
    checks = ((V4, parsed.v4, broadest_v4), (V4, mapped, broadest_v4), (V6, parsed.v6, broadest_v6))
    for family, entries, broadest in checks:
        broad = over_broad_entries(entries, family, broadest)
        if broad:
            raise FeedRefused(
                f"feed lists {broad}, broader than a /{broadest} of internet address space "
                f"(BLOCKLIST_BROADEST_PREFIX_V{family}=0 allows it)"
            )
    if previous_entries and parsed.entries < previous_entries * shrink_threshold:
        share = parsed.entries / previous_entries
        raise FeedRefused(
            f"feed shrank to {parsed.entries} entries, {share:.0%} of the last good "
            f"{previous_entries} (threshold {shrink_threshold:.0%})"
        )


def over_broad_entries(entries: FamilyEntries, family: int, broadest: int) -> str | None:
    """The first entry covering more global addresses than a ``/broadest``, as text; or None.

    Only entries larger than the bound are measured against special-purpose
    space, so the cost is one comparison per entry.
    """
    if broadest <= 0:
        return None
    bits = 32 if family == V4 else 128
    limit = 1 << (bits - broadest)
    for first, last in zip(entries.firsts, entries.lasts, strict=True):
        if last - first + 1 > limit and _global_size(family, first, last) > limit:
            return f"{format_address(family, first)}-{format_address(family, last)}"
    return None


def _global_size(family: int, first: int, last: int) -> int:
    """Addresses of ``first..last`` that an internet client could have."""
    if family == V4:
        size = last - first + 1
        for low, high in _NOT_GLOBAL_V4:
            size -= max(0, min(last, high) - max(first, low) + 1)
        return size
    low, high = _GLOBAL_V6
    return max(0, min(last, high) - max(first, low) + 1)
