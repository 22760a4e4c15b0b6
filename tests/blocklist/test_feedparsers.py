"""Feed parsing: the real published files, format detection, malformed lines and gzip."""

from __future__ import annotations

import gzip
import ipaddress
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from blocklist.addresses import V4_MAX
from blocklist.errors import FeedError, FeedParseError
from blocklist.feedparsers import (
    MAX_SCORE,
    FamilyEntries,
    FeedFormat,
    ParsedFeed,
    decompress_if_gzip,
    detect_format,
    parse_feed,
)

MiB = 1024 * 1024
BIG = 256 * MiB
IPSUM_FILE = "ipsum/ipsum-2026-08-22.txt"
FIREHOL_FILE = "firehol/firehol_level1-2020-08-19.netset"


def parse_text(text: str, fmt: FeedFormat = FeedFormat.AUTO) -> ParsedFeed:
    return parse_feed(text.encode(), fmt, max_size=BIG)


def triples(entries: FamilyEntries) -> list[tuple[int, int, int]]:
    return list(zip(entries.firsts, entries.lasts, entries.scores, strict=True))


def entry_lines(path: Path) -> list[str]:
    """Non-blank, non-comment lines of a feed, read independently of the parser."""
    lines = path.read_text().splitlines()
    return [s.strip() for s in lines if s.strip() and s.strip()[0] not in "#;"]


def network_bounds(text: str) -> tuple[int, int]:
    net = ipaddress.ip_network(text, strict=False)
    return int(net.network_address), int(net.broadcast_address)


@pytest.fixture(scope="module")
def ipsum_bytes(shared_data: Path) -> bytes:
    return (shared_data / IPSUM_FILE).read_bytes()


@pytest.fixture(scope="module")
def ipsum_parsed(ipsum_bytes: bytes) -> ParsedFeed:
    return parse_feed(ipsum_bytes, max_size=BIG)


# --- real feeds ------------------------------------------------------------


def test_ipsum_file_is_detected_and_fully_parsed(ipsum_parsed: ParsedFeed) -> None:
    assert ipsum_parsed.format is FeedFormat.IPSUM
    assert ipsum_parsed.entries == 120_430
    assert len(ipsum_parsed.v4) == 120_430
    assert len(ipsum_parsed.v6) == 0
    assert ipsum_parsed.malformed == 0
    assert ipsum_parsed.malformed_samples == []


def test_ipsum_entries_are_single_addresses_scored_by_their_count(
    shared_data: Path, ipsum_parsed: ParsedFeed
) -> None:
    expected = []
    for line in entry_lines(shared_data / IPSUM_FILE):
        ip, count = line.split("\t")
        value = int(ipaddress.IPv4Address(ip))
        expected.append((value, value, int(count)))
    assert triples(ipsum_parsed.v4) == expected
    scores = ipsum_parsed.v4.scores
    assert min(scores) == 1
    assert max(scores) == max(s for _, _, s in expected)
    assert max(scores) > 1


def test_firehol_netset_is_detected_with_addresses_and_networks(shared_data: Path) -> None:
    path = shared_data / FIREHOL_FILE
    parsed = parse_feed(path.read_bytes(), max_size=BIG)
    assert parsed.format is FeedFormat.NETSET
    assert parsed.entries == 2_574
    assert parsed.malformed == 0
    assert len(parsed.v6) == 0
    lines = entry_lines(path)
    assert sum("/" not in line for line in lines) == 407
    assert sum("/" in line for line in lines) == 2_167
    assert triples(parsed.v4) == [(*network_bounds(line), 0) for line in lines]
    single_addresses = sum(
        first == last for first, last in zip(parsed.v4.firsts, parsed.v4.lasts, strict=True)
    )
    assert single_addresses >= 407


def test_firehol_netset_keeps_its_bogon_networks(shared_data: Path) -> None:
    parsed = parse_feed((shared_data / FIREHOL_FILE).read_bytes(), max_size=BIG)
    ranges = set(zip(parsed.v4.firsts, parsed.v4.lasts, strict=True))
    for bogon in ("0.0.0.0/8", "10.0.0.0/8", "127.0.0.0/8", "192.168.0.0/16"):
        assert network_bounds(bogon) in ranges


@pytest.mark.parametrize(("kind", "ipv6"), [("drop", False), ("edrop", False), ("dropv6", True)])
def test_every_spamhaus_file_parses_cleanly(shared_data: Path, kind: str, ipv6: bool) -> None:
    files = sorted((shared_data / "spamhaus" / kind).glob(f"{kind}-*.txt"))
    assert len(files) >= 17
    for path in files:
        parsed = parse_feed(path.read_bytes(), max_size=BIG)
        assert parsed.format is FeedFormat.SPAMHAUS, path.name
        assert parsed.malformed == 0, (path.name, parsed.malformed_samples)
        lines = entry_lines(path)
        assert parsed.entries == len(lines) > 0, path.name
        same, other = (parsed.v6, parsed.v4) if ipv6 else (parsed.v4, parsed.v6)
        assert len(other) == 0, path.name
        expected = [(*network_bounds(line.split(";")[0].strip()), 0) for line in lines]
        assert triples(same) == expected, path.name


def test_spamhaus_drop_sizes_match_the_readme(shared_data: Path) -> None:
    sizes = {
        path.name: parse_feed(path.read_bytes(), max_size=BIG).entries
        for path in (shared_data / "spamhaus" / "drop").glob("drop-*.txt")
    }
    assert all(780 <= n <= 1_390 for n in sizes.values()), sizes


def test_dropv6_entries_are_ipv6_networks(shared_data: Path) -> None:
    path = shared_data / "spamhaus" / "dropv6" / "dropv6-2025-01-15.txt"
    parsed = parse_feed(path.read_bytes(), max_size=BIG)
    assert len(parsed.v6) == 78
    assert all(last > first > V4_MAX for first, last in zip(parsed.v6.firsts, parsed.v6.lasts, strict=True))
    first_net = ipaddress.IPv6Network("2001:678:6c4::/48")
    assert (parsed.v6.firsts[0], parsed.v6.lasts[0]) == (
        int(first_net.network_address),
        int(first_net.broadcast_address),
    )


# --- comments, blanks, inline comments, ranges -----------------------------


def test_comments_and_blank_lines_never_become_entries() -> None:
    text = (
        "# 1.2.3.4 is mentioned in a comment\n"
        "; 5.6.7.8/24 ; SBL1\n"
        "\n"
        "   \n"
        "\t\n"
        "   # indented comment 9.9.9.9\n"
        "  ; indented semicolon comment\n"
        "#\n"
        ";\n"
    )
    for fmt in FeedFormat:
        parsed = parse_text(text, fmt)
        assert parsed.entries == 0, fmt
        assert parsed.malformed == 0, fmt


def test_empty_feed_parses_to_nothing_without_error() -> None:
    parsed = parse_feed(b"", max_size=BIG)
    assert parsed.entries == 0
    assert parsed.malformed == 0
    assert parsed.format is FeedFormat.PLAIN


def test_plain_list_with_inline_comments_and_ranges() -> None:
    text = (
        "1.2.3.4  # a host\n"
        "10.0.0.0/8 ; a network\n"
        "192.168.1.10-192.168.1.20\n"
        "2001:db8::/32 # documentation\n"
        "2001:db8:1::1-2001:db8:1::9\n"
    )
    parsed = parse_text(text)
    assert parsed.format is FeedFormat.PLAIN
    assert parsed.malformed == 0
    assert triples(parsed.v4) == [
        (0x01020304, 0x01020304, 0),
        (*network_bounds("10.0.0.0/8"), 0),
        (int(ipaddress.IPv4Address("192.168.1.10")), int(ipaddress.IPv4Address("192.168.1.20")), 0),
    ]
    assert triples(parsed.v6) == [
        (*network_bounds("2001:db8::/32"), 0),
        (int(ipaddress.IPv6Address("2001:db8:1::1")), int(ipaddress.IPv6Address("2001:db8:1::9")), 0),
    ]


def test_crlf_line_endings_are_accepted() -> None:
    parsed = parse_feed(b"# list\r\n1.2.3.4\r\n5.6.7.0/24\r\n", max_size=BIG)
    assert parsed.entries == 2
    assert parsed.malformed == 0


def test_mapped_ipv6_entries_are_filed_as_ipv4() -> None:
    parsed = parse_text("::ffff:1.2.3.4\n::ffff:10.0.0.0/104\n")
    assert len(parsed.v6) == 0
    assert triples(parsed.v4) == [(0x01020304, 0x01020304, 0), (*network_bounds("10.0.0.0/8"), 0)]


def test_text_after_an_unscored_entry_is_malformed() -> None:
    parsed = parse_text("1.2.3.4\n5.6.7.8\n9.9.9.9 extra words\n")
    assert parsed.entries == 2
    assert parsed.malformed == 1
    assert parsed.malformed_samples == ["line 3: '9.9.9.9 extra words'"]


# --- ipsum scores ----------------------------------------------------------


def test_ipsum_score_rules() -> None:
    text = (
        "# IPsum Threat Intelligence Feed\n"
        "1.1.1.1\t3\n"
        "2.2.2.2\n"  # no count: listed once
        "3.3.3.3\t99999999\n"  # capped to 16 bits
        "4.4.4.4  7\n"  # any whitespace separates the count
        "5.5.5.5\t2 # with a comment\n"
        "6.6.6.6\tmany\n"
        "7.7.7.7\t-1\n"
        "8.8.8.8\t1\t2\n"
        "9.9.9.9\t\u0663\n"  # a non-ASCII digit is not a count
    )
    parsed = parse_text(text)
    assert parsed.format is FeedFormat.IPSUM
    assert [(first, score) for first, _, score in triples(parsed.v4)] == [
        (0x01010101, 3),
        (0x02020202, 1),
        (0x03030303, MAX_SCORE),
        (0x04040404, 7),
        (0x05050505, 2),
    ]
    assert parsed.malformed == 4
    assert [s.split(":")[0] for s in parsed.malformed_samples] == ["line 7", "line 8", "line 9", "line 10"]


# --- malformed lines -------------------------------------------------------


def test_malformed_lines_are_counted_and_sampled_but_not_fatal() -> None:
    good = [f"10.0.{i}.1" for i in range(20)]
    bad = [f"not-an-address-{i}" for i in range(7)]
    lines = good[:10] + bad + good[10:]
    parsed = parse_text("\n".join(lines) + "\n")
    assert parsed.entries == 20
    assert parsed.malformed == 7
    assert len(parsed.malformed_samples) == 5
    assert parsed.malformed_samples[0] == "line 11: 'not-an-address-0'"
    assert parsed.malformed_samples[4] == "line 15: 'not-an-address-4'"


def test_malformed_samples_are_escaped_and_truncated() -> None:
    """Samples go into logs and JSON status: control characters are repr-escaped."""
    nasty = [
        "1.2.3.4\x1b[31mred",
        "bad\x00nul",
        "x" * 500,
        "9.9.9.9\x7f",
        "\u202eevil-bidi",
    ]
    good = [f"10.1.{i}.1" for i in range(10)]
    parsed = parse_text("\n".join(good + nasty) + "\n")
    assert parsed.malformed == len(nasty)
    assert len(parsed.malformed_samples) == 5
    for sample in parsed.malformed_samples:
        assert "\n" not in sample
        assert "\r" not in sample
        assert "\x1b" not in sample
        assert "\x00" not in sample
        assert sample.isprintable()
        assert len(sample) < 120
    assert "\\x1b" in parsed.malformed_samples[0]
    assert parsed.malformed_samples[2] == f"line 13: {'x' * 80!r}"


def test_line_breaks_other_than_newline_cannot_sneak_into_samples() -> None:
    data = "\n".join([f"10.2.{i}.1" for i in range(10)]).encode() + b"\nbad\rline\x0bhere\x0c\xc2\x85x\n"
    parsed = parse_feed(data, max_size=BIG)
    assert parsed.malformed >= 1
    for sample in parsed.malformed_samples:
        assert sample.isprintable()


def test_html_error_page_is_refused() -> None:
    html = (
        "<!DOCTYPE html>\n<html>\n<head><title>503 Service Unavailable</title></head>\n"
        "<body>\n<h1>Service Unavailable</h1>\n<p>Try again later.</p>\n</body>\n</html>\n"
    )
    with pytest.raises(FeedParseError, match="malformed") as info:
        parse_text(html)
    assert isinstance(info.value, FeedError)
    assert "line 1:" in str(info.value)


def test_mostly_malformed_feed_is_refused_even_with_some_valid_lines() -> None:
    text = "1.2.3.4\n" + "".join(f"garbage line {i}\n" for i in range(5))
    with pytest.raises(FeedParseError, match="5 of 6 entry lines are malformed"):
        parse_text(text)


def test_a_few_malformed_lines_among_many_valid_ones_are_tolerated() -> None:
    text = "1.2.3.4\n5.6.7.8\ngarbage\n"
    parsed = parse_text(text)
    assert parsed.entries == 2
    assert parsed.malformed == 1


def test_invalid_utf8_is_a_malformed_line_not_a_crash() -> None:
    data = b"1.2.3.4\n5.6.7.8\n\xff\xfe1.2.3.4\n"
    parsed = parse_feed(data, max_size=BIG)
    assert parsed.entries == 2
    assert parsed.malformed == 1
    assert "\ufffd" in parsed.malformed_samples[0]


# --- format detection and override -----------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("; Spamhaus DROP List\n1.2.3.0/24 ; SBL1\n", FeedFormat.SPAMHAUS),
        ("1.2.3.0/24 ; SBL123\n", FeedFormat.SPAMHAUS),
        ("# IPsum Threat Intelligence Feed\n1.2.3.4\t3\n", FeedFormat.IPSUM),
        ("1.2.3.4\t3\n5.6.7.8\t1\n9.9.9.9\t2\n", FeedFormat.IPSUM),
        ("#\n# firehol_level1\n#\n1.2.3.0/24\n", FeedFormat.NETSET),
        ("# some.netset\n1.2.3.4\n", FeedFormat.NETSET),
        ("1.2.3.4\n5.6.7.0/24\n", FeedFormat.PLAIN),
        ("# my list\n1.2.3.4\t3\n5.6.7.8\n9.9.9.9\n", FeedFormat.PLAIN),
        ("", FeedFormat.PLAIN),
    ],
)
def test_detect_format(text: str, expected: FeedFormat) -> None:
    assert detect_format(text) is expected


def test_explicit_format_overrides_detection() -> None:
    tabbed = "1.2.3.4\t3\n5.6.7.8\t9\n"
    assert parse_text(tabbed).format is FeedFormat.IPSUM
    with pytest.raises(FeedParseError, match="not a plain list"):
        parse_text(tabbed, FeedFormat.PLAIN)

    plain = "1.2.3.4\n"
    assert triples(parse_text(plain).v4) == [(0x01020304, 0x01020304, 0)]
    as_ipsum = parse_text(plain, FeedFormat.IPSUM)
    assert as_ipsum.format is FeedFormat.IPSUM
    assert triples(as_ipsum.v4) == [(0x01020304, 0x01020304, 1)]


def test_spamhaus_file_read_as_netset_gives_the_same_entries(shared_data: Path) -> None:
    data = (shared_data / "spamhaus" / "drop" / "drop-2025-01-17.txt").read_bytes()
    auto = parse_feed(data, max_size=BIG)
    forced = parse_feed(data, FeedFormat.NETSET, max_size=BIG)
    assert forced.format is FeedFormat.NETSET
    assert triples(forced.v4) == triples(auto.v4)


def test_ipsum_file_forced_as_spamhaus_is_refused(ipsum_bytes: bytes) -> None:
    with pytest.raises(FeedParseError):
        parse_feed(ipsum_bytes, FeedFormat.SPAMHAUS, max_size=BIG)


# --- gzip ------------------------------------------------------------------


def test_gzipped_feed_parses_like_the_plain_file(ipsum_bytes: bytes, ipsum_parsed: ParsedFeed) -> None:
    packed = gzip.compress(ipsum_bytes)
    assert len(packed) < len(ipsum_bytes)
    parsed = parse_feed(packed, max_size=BIG)
    assert parsed.format is ipsum_parsed.format
    assert triples(parsed.v4) == triples(ipsum_parsed.v4)
    assert parsed.malformed == 0


def test_non_gzip_data_is_passed_through_unchanged() -> None:
    data = b"1.2.3.4\n" * 10
    assert decompress_if_gzip(data, max_size=1) is data


def test_gzip_content_of_exactly_the_cap_is_accepted() -> None:
    content = b"1.2.3.4\n" * 128
    assert decompress_if_gzip(gzip.compress(content), max_size=len(content)) == content
    with pytest.raises(FeedParseError, match="size cap"):
        decompress_if_gzip(gzip.compress(content), max_size=len(content) - 1)


def test_multi_member_gzip_yields_every_member() -> None:
    """``cat a.gz b.gz`` is a valid gzip file; the second part must not be dropped silently."""
    first, second = b"1.1.1.1\n2.2.2.2\n", b"3.3.3.3\n"
    parsed = parse_feed(gzip.compress(first) + gzip.compress(second), max_size=BIG)
    assert list(parsed.v4.firsts) == [0x01010101, 0x02020202, 0x03030303]


def test_size_cap_counts_all_gzip_members() -> None:
    member = gzip.compress(b"1.1.1.1\n" * 100)
    with pytest.raises(FeedParseError, match="size cap"):
        decompress_if_gzip(member * 3, max_size=250 * 8)


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda d: d[:2], id="magic-only"),
        pytest.param(lambda d: d[:10], id="header-only"),
        pytest.param(lambda d: d[: len(d) // 2], id="half"),
        pytest.param(lambda d: d[:-4], id="no-size-trailer"),
        pytest.param(lambda d: d[:-1], id="one-byte-short"),
    ],
)
def test_truncated_gzip_is_refused(cut: Callable[[bytes], bytes]) -> None:
    data = gzip.compress(b"".join(f"10.0.{i}.{j}\n".encode() for i in range(50) for j in range(20)))
    with pytest.raises(FeedParseError, match="truncated"):
        parse_feed(cut(data), max_size=BIG)


def test_corrupt_gzip_body_is_refused() -> None:
    data = bytearray(gzip.compress(b"".join(f"10.0.{i}.1\n".encode() for i in range(2000))))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(FeedParseError, match="corrupt gzip data"):
        parse_feed(bytes(data), max_size=BIG)


def test_gzip_with_bad_crc_is_refused() -> None:
    data = bytearray(gzip.compress(b"1.2.3.4\n5.6.7.8\n"))
    data[-5] ^= 0xFF  # last byte of the CRC-32 trailer
    with pytest.raises(FeedParseError, match="corrupt"):
        parse_feed(bytes(data), max_size=BIG)


def test_gzip_bomb_is_cut_off_without_inflating_everything() -> None:
    bomb = gzip.compress(b"\0" * (50 * MiB), compresslevel=9)
    assert len(bomb) < MiB // 4
    tracemalloc.start()
    try:
        with pytest.raises(FeedParseError, match="size cap of 1048576 bytes"):
            parse_feed(bomb, max_size=MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * MiB, f"peak allocation {peak} bytes: the bomb was inflated"


def test_byte_order_mark_does_not_make_the_first_line_malformed() -> None:
    feed = parse_feed("\ufeff1.2.3.4\n5.6.7.8\n".encode(), FeedFormat.PLAIN, max_size=1 << 20)
    assert feed.entries == 2
    assert feed.malformed == 0
