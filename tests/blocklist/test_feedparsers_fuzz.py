"""Property-based fuzzing of the feed parsers: any bytes in, a feed or one typed error out."""

from __future__ import annotations

import gzip
import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from blocklist.addresses import V4_MAX, V6_MAX
from blocklist.errors import FeedParseError
from blocklist.feedparsers import FeedFormat, parse_feed

MAX = 1 << 20
FORMATS = st.sampled_from(list(FeedFormat))
# Lines that look like feed lines: addresses, CIDRs, ranges, scores, comments, junk.
FEED_LINE = st.one_of(
    st.ip_addresses().map(str),
    st.builds(lambda a, p: f"{a}/{p}", st.ip_addresses(v=4), st.integers(0, 40)),
    st.builds(lambda a, s: f"{a}\t{s}", st.ip_addresses(v=4), st.integers(-2, 20)),
    st.builds(lambda a, b: f"{a}-{b}", st.ip_addresses(v=4), st.ip_addresses(v=4)),
    st.builds(lambda a: f"{a} ; SBL{a.packed[0]}", st.ip_addresses()),
    st.text(alphabet="0123456789abcdef.:/-%# ;\t\x00\u0660x[]", max_size=40),
    st.just("# comment"),
    st.just("; comment"),
)

NETWORK = st.one_of(
    st.builds(
        lambda a, p: ipaddress.ip_network(f"{a}/{p}", strict=False), st.ip_addresses(v=4), st.integers(0, 32)
    ),
    st.builds(
        lambda a, p: ipaddress.ip_network(f"{a}/{p}", strict=False), st.ip_addresses(v=6), st.integers(0, 128)
    ),
)


def check(data: bytes, fmt: FeedFormat) -> None:
    try:
        feed = parse_feed(data, fmt, max_size=MAX)
    except FeedParseError:
        return
    for entries, top in ((feed.v4, V4_MAX), (feed.v6, V6_MAX)):
        for first, last in zip(entries.firsts, entries.lasts, strict=True):
            assert 0 <= first <= last <= top
    assert feed.malformed < feed.entries or feed.malformed == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), FORMATS)
def test_arbitrary_bytes_give_a_feed_or_a_parse_error(data: bytes, fmt: FeedFormat) -> None:
    check(data, fmt)


@settings(max_examples=300, deadline=None)
@given(st.lists(FEED_LINE, max_size=30), FORMATS, st.booleans())
def test_feed_like_text_gives_a_feed_or_a_parse_error(
    lines: list[str], fmt: FeedFormat, zipped: bool
) -> None:
    data = "\n".join(lines).encode("utf-8", errors="surrogatepass")
    check(gzip.compress(data) if zipped else data, fmt)


@settings(max_examples=200, deadline=None)
@given(st.lists(NETWORK, min_size=1, max_size=20))
def test_every_valid_network_line_is_parsed_exactly(
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> None:
    """A netset of valid networks: each becomes exactly its range (mapped IPv6 counted as IPv4)."""
    data = "\n".join(str(n) for n in networks).encode()
    feed = parse_feed(data, FeedFormat.NETSET, max_size=MAX)
    assert feed.malformed == 0
    got = set(zip(feed.v4.firsts, feed.v4.lasts, strict=True)) | set(
        zip(feed.v6.firsts, feed.v6.lasts, strict=True)
    )
    for net in networks:
        first, last = int(net.network_address), int(net.broadcast_address)
        mapped = isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96 and first >> 32 == 0xFFFF
        if mapped:
            first, last = first & V4_MAX, last & V4_MAX
        assert (first, last) in got, net
