"""The compiled range index: merging feeds into sorted, disjoint ranges and looking addresses up."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blocklist.addresses import V4, V4_MAX, V6, V6_MAX, parse_address, parse_network
from blocklist.errors import ConfigError
from blocklist.feedparsers import FamilyEntries, parse_feed
from blocklist.index import MAX_FEEDS, FamilyIndex, RangeIndex, RangeMatch, compile_index, empty_family

Entry = tuple[str, int]  # (network text, score)


def entries(*items: str | Entry) -> tuple[FamilyEntries, FamilyEntries]:
    """Build one feed's (v4, v6) entries from network texts, optionally with a score."""
    v4, v6 = FamilyEntries(), FamilyEntries()
    for item in items:
        text, score = (item, 0) if isinstance(item, str) else item
        family, first, last = parse_network(text)
        (v4 if family == V4 else v6).append(first, last, score)
    return v4, v6


def addr(text: str) -> tuple[int, int]:
    return parse_address(text)


def assert_well_formed(fam: FamilyIndex, max_value: int) -> None:
    """Sorted, disjoint, non-empty ranges; parallel arrays; adjacent equal ranges merged."""
    n = len(fam)
    assert len(fam.lasts) == len(fam.masks) == len(fam.scores) == n
    for i in range(n):
        assert 0 <= fam.firsts[i] <= fam.lasts[i] <= max_value
        assert fam.masks[i] != 0
    for i in range(1, n):
        assert fam.lasts[i - 1] < fam.firsts[i], "ranges overlap or are unsorted"
        if fam.lasts[i - 1] + 1 == fam.firsts[i]:
            assert (fam.masks[i - 1], fam.scores[i - 1]) != (fam.masks[i], fam.scores[i]), "not merged"


def assert_index_well_formed(index: RangeIndex) -> None:
    assert_well_formed(index.v4, V4_MAX)
    assert_well_formed(index.v6, V6_MAX)


def ranges_of(fam: FamilyIndex) -> list[tuple[int, int, int, int]]:
    return list(zip(fam.firsts, fam.lasts, fam.masks, fam.scores, strict=True))


# --- basic lookups ---------------------------------------------------------


def test_cidr_lookup_matches_first_and_last_address() -> None:
    index = compile_index({"f": entries("1.2.3.0/24")})
    assert index.contains(*addr("1.2.3.0"))
    assert index.contains(*addr("1.2.3.255"))
    assert index.contains(*addr("1.2.3.128"))


def test_addresses_just_outside_a_cidr_do_not_match() -> None:
    index = compile_index({"f": entries("1.2.3.0/24")})
    assert not index.contains(*addr("1.2.2.255"))
    assert not index.contains(*addr("1.2.4.0"))
    assert index.lookup(*addr("1.2.4.0")) is None


def test_lookup_reports_range_feeds_and_score() -> None:
    index = compile_index({"ipsum": entries(("1.2.3.4", 7))})
    assert index.lookup(*addr("1.2.3.4")) == RangeMatch(0x01020304, 0x01020304, ("ipsum",), 7)


def test_ipv6_cidr_bounds_match_and_neighbours_do_not() -> None:
    index = compile_index({"v6": entries("2001:db8::/32")})
    assert index.contains(*addr("2001:db8::"))
    assert index.contains(*addr("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"))
    assert not index.contains(*addr("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"))
    assert not index.contains(*addr("2001:db9::"))


def test_families_do_not_leak_into_each_other() -> None:
    """IPv4 1.2.3.4 and IPv6 ::1.2.3.4 share an integer value but not an index."""
    index = compile_index({"f": entries("1.2.3.4", "::1")})
    assert index.contains(V4, 0x01020304)
    assert not index.contains(V6, 0x01020304)
    assert index.contains(V6, 1)
    assert not index.contains(V4, 1)


def test_mapped_ipv6_client_address_matches_ipv4_entry() -> None:
    index = compile_index({"f": entries("1.2.3.0/24")})
    assert index.contains(*addr("::ffff:1.2.3.9"))


def test_zero_prefix_covers_the_whole_family() -> None:
    index = compile_index({"all4": entries("0.0.0.0/0"), "all6": entries("::/0")})
    # ::/0 includes ::ffff:0:0/96, so it lists every IPv4 client too.
    assert ranges_of(index.v4) == [(0, V4_MAX, 0b11, 0)]
    assert ranges_of(index.v6) == [(0, V6_MAX, 0b10, 0)]
    for text in ("0.0.0.0", "255.255.255.255", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"):
        assert index.contains(*addr(text))
    assert_index_well_formed(index)


def test_host_prefixes_match_only_their_address() -> None:
    index = compile_index({"f": entries("1.2.3.4/32", "2001:db8::1/128")})
    assert index.contains(*addr("1.2.3.4"))
    assert not index.contains(*addr("1.2.3.3"))
    assert not index.contains(*addr("1.2.3.5"))
    assert index.contains(*addr("2001:db8::1"))
    assert not index.contains(*addr("2001:db8::"))
    assert not index.contains(*addr("2001:db8::2"))


def test_extreme_addresses_at_both_ends_of_the_space() -> None:
    index = compile_index(
        {"f": entries("0.0.0.0", "255.255.255.255", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")}
    )
    assert index.contains(V4, 0)
    assert index.contains(V4, V4_MAX)
    assert not index.contains(V4, 1)
    assert not index.contains(V4, V4_MAX - 1)
    assert index.contains(V6, 0)
    assert index.contains(V6, V6_MAX)
    assert not index.contains(V6, V6_MAX - 1)
    assert_index_well_formed(index)


def test_a_slash_8_costs_one_range() -> None:
    index = compile_index({"f": entries("10.0.0.0/8")})
    assert len(index.v4) == 1
    assert index.ranges == 1
    assert ranges_of(index.v4) == [(0x0A000000, 0x0AFFFFFF, 1, 0)]


def test_empty_index_answers_nothing() -> None:
    index = compile_index({})
    assert index.ranges == 0
    assert index.feed_names == ()
    assert not index.contains(*addr("1.2.3.4"))
    assert index.lookup(*addr("::1")) is None


def test_feeds_without_entries_still_name_their_bits() -> None:
    index = compile_index({"empty": entries(), "full": entries("1.2.3.4")})
    assert index.feed_names == ("empty", "full")
    match = index.lookup(*addr("1.2.3.4"))
    assert match is not None
    assert match.feeds == ("full",)


def test_empty_family_has_no_ranges() -> None:
    for family in (V4, V6):
        fam = empty_family(family)
        assert len(fam) == 0
        assert fam.find(0) == -1


# --- merging ---------------------------------------------------------------


def test_adjacent_ranges_of_one_feed_merge_into_one() -> None:
    index = compile_index({"f": entries("10.0.0.0/25", "10.0.0.128/25", "10.0.1.0-10.0.1.9")})
    assert ranges_of(index.v4) == [(0x0A000000, 0x0A000109, 1, 0)]


def test_adjacent_ranges_with_different_scores_stay_apart() -> None:
    index = compile_index({"f": entries(("1.2.3.4", 2), ("1.2.3.5", 3))})
    assert ranges_of(index.v4) == [(0x01020304, 0x01020304, 1, 2), (0x01020305, 0x01020305, 1, 3)]


def test_adjacent_ranges_of_different_feeds_stay_apart() -> None:
    index = compile_index({"a": entries("10.0.0.0/25"), "b": entries("10.0.0.128/25")})
    assert ranges_of(index.v4) == [
        (0x0A000000, 0x0A00007F, 0b01, 0),
        (0x0A000080, 0x0A0000FF, 0b10, 0),
    ]


def test_overlapping_ranges_from_different_feeds_split_into_disjoint_parts() -> None:
    index = compile_index(
        {
            "a": entries(("10.0.0.0-10.0.0.199", 2)),
            "b": entries(("10.0.0.100-10.0.0.255", 5)),
        }
    )
    assert ranges_of(index.v4) == [
        (0x0A000000, 0x0A000063, 0b01, 2),
        (0x0A000064, 0x0A0000C7, 0b11, 5),
        (0x0A0000C8, 0x0A0000FF, 0b10, 5),
    ]
    both = index.lookup(*addr("10.0.0.150"))
    assert both == RangeMatch(0x0A000064, 0x0A0000C7, ("a", "b"), 5)
    assert_index_well_formed(index)


def test_nested_ranges_split_the_outer_one() -> None:
    index = compile_index({"outer": entries("10.0.0.0/8"), "inner": entries(("10.1.2.0/24", 4))})
    assert ranges_of(index.v4) == [
        (0x0A000000, 0x0A0101FF, 0b01, 0),
        (0x0A010200, 0x0A0102FF, 0b11, 4),
        (0x0A010300, 0x0AFFFFFF, 0b01, 0),
    ]
    inner = index.lookup(*addr("10.1.2.77"))
    assert inner is not None
    assert inner.feeds == ("outer", "inner")
    assert inner.score == 4


def test_nested_range_of_the_same_feed_and_score_disappears_into_the_outer() -> None:
    index = compile_index({"f": entries("10.0.0.0/8", "10.1.2.0/24", "10.1.2.3")})
    assert ranges_of(index.v4) == [(0x0A000000, 0x0AFFFFFF, 1, 0)]


def test_duplicate_entries_are_counted_once() -> None:
    index = compile_index({"f": entries(("1.2.3.4", 3), ("1.2.3.4", 3), ("1.2.3.4", 1))})
    assert ranges_of(index.v4) == [(0x01020304, 0x01020304, 1, 3)]


def test_score_is_the_highest_of_the_covering_entries() -> None:
    index = compile_index(
        {
            "a": entries(("1.2.3.0/24", 0)),
            "b": entries(("1.2.3.0/28", 9)),
            "c": entries(("1.2.3.4", 3)),
        }
    )
    match = index.lookup(*addr("1.2.3.4"))
    assert match is not None
    assert match.feeds == ("a", "b", "c")
    assert match.score == 9
    tail = index.lookup(*addr("1.2.3.200"))
    assert tail is not None
    assert (tail.feeds, tail.score) == (("a",), 0)


def test_unsorted_input_gives_sorted_output() -> None:
    index = compile_index({"f": entries("9.9.9.9", "1.1.1.1", "5.5.5.0/24", "::2", "::1:0")})
    assert list(index.v4.firsts) == sorted(index.v4.firsts)
    assert list(index.v6.firsts) == [2, 0x10000]
    assert_index_well_formed(index)


def test_ipv4_and_ipv6_are_indexed_side_by_side() -> None:
    index = compile_index({"a": entries("1.2.3.0/24", "2001:db8::/48"), "b": entries("2001:db8::/64")})
    assert len(index.v4) == 1
    assert len(index.v6) == 2
    v6_match = index.lookup(*addr("2001:db8::5"))
    assert v6_match is not None
    assert v6_match.feeds == ("a", "b")


# --- min_score -------------------------------------------------------------


def test_min_score_drops_low_scored_entries_but_keeps_unscored_ones() -> None:
    feeds = {
        "ipsum": entries(("1.1.1.1", 1), ("2.2.2.2", 2), ("3.3.3.3", 3)),
        "drop": entries("4.4.4.0/24"),
    }
    index = compile_index(feeds, min_score=2)
    assert not index.contains(*addr("1.1.1.1"))
    assert index.contains(*addr("2.2.2.2"))
    assert index.contains(*addr("3.3.3.3"))
    assert index.contains(*addr("4.4.4.4"))
    assert compile_index(feeds, min_score=0).contains(*addr("1.1.1.1"))


def test_min_score_above_every_score_leaves_only_unscored_entries() -> None:
    index = compile_index({"f": entries(("1.1.1.1", 5), "2.2.2.2", ("::1", 3))}, min_score=100)
    assert ranges_of(index.v4) == [(0x02020202, 0x02020202, 1, 0)]
    assert len(index.v6) == 0


def test_dropped_entry_does_not_raise_the_score_of_an_overlapping_one() -> None:
    index = compile_index({"a": entries("1.2.3.0/24"), "b": entries(("1.2.3.4", 1))}, min_score=2)
    match = index.lookup(*addr("1.2.3.4"))
    assert match is not None
    assert (match.feeds, match.score) == (("a",), 0)


# --- limits ----------------------------------------------------------------


def test_at_most_max_feeds_can_be_merged() -> None:
    many = {f"feed{i}": entries(f"10.0.{i}.0/24") for i in range(MAX_FEEDS)}
    index = compile_index(many)
    top = index.lookup(*addr(f"10.0.{MAX_FEEDS - 1}.1"))
    assert top is not None
    assert top.feeds == (f"feed{MAX_FEEDS - 1}",)
    many["one-too-many"] = entries("1.1.1.1")
    with pytest.raises(ConfigError, match=str(MAX_FEEDS)):
        compile_index(many)


def test_all_64_feeds_listing_one_address() -> None:
    index = compile_index({f"feed{i}": entries("1.2.3.4") for i in range(MAX_FEEDS)})
    match = index.lookup(*addr("1.2.3.4"))
    assert match is not None
    assert len(match.feeds) == MAX_FEEDS
    assert index.v4.masks[0] == (1 << MAX_FEEDS) - 1


# --- real feeds ------------------------------------------------------------


def test_real_feeds_compile_into_a_well_formed_index(shared_data: Path) -> None:
    files = {
        "ipsum": shared_data / "ipsum" / "ipsum-2026-08-22.txt",
        "firehol": shared_data / "firehol" / "firehol_level1-2020-08-19.netset",
        "drop": shared_data / "spamhaus" / "drop" / "drop-2025-01-17.txt",
        "dropv6": shared_data / "spamhaus" / "dropv6" / "dropv6-2025-01-15.txt",
    }
    parsed = {name: parse_feed(path.read_bytes(), max_size=1 << 28) for name, path in files.items()}
    index = compile_index({name: (p.v4, p.v6) for name, p in parsed.items()})
    assert_index_well_formed(index)
    assert 0 < index.ranges <= sum(p.entries for p in parsed.values())
    assert index.contains(*addr("10.1.2.3"))  # firehol lists 10.0.0.0/8
    assert index.contains(*addr("2001:678:6c4::1"))  # first dropv6 network
    top = parsed["ipsum"].v4.firsts[0]
    match = index.lookup(V4, top)
    assert match is not None
    assert "ipsum" in match.feeds
    assert match.score == parsed["ipsum"].v4.scores[0]
    for name, p in parsed.items():
        for family, fam in ((V4, p.v4), (V6, p.v6)):
            for first, last in zip(fam.firsts[::97], fam.lasts[::97], strict=True):
                for value in (first, last):
                    hit = index.lookup(family, value)
                    assert hit is not None
                    assert name in hit.feeds


# --- property tests against a brute-force model ----------------------------

V4_BASE = int(ipaddress.IPv4Address("10.0.0.0"))
V6_BASE = int(ipaddress.IPv6Address("2001:db8::"))
SPAN = 1 << 12
FEED_NAMES = ("a", "b", "c", "d")

raw_range = st.tuples(
    st.integers(min_value=0, max_value=SPAN - 1),
    st.integers(min_value=0, max_value=64),
    st.sampled_from([0, 0, 1, 2, 3, 7]),
)
feed_ranges = st.lists(raw_range, max_size=12)
all_feeds = st.fixed_dictionaries({name: st.tuples(feed_ranges, feed_ranges) for name in FEED_NAMES})

RawFeeds = dict[str, tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]]


def build(raw: RawFeeds) -> dict[str, tuple[FamilyEntries, FamilyEntries]]:
    out = {}
    for name, (r4, r6) in raw.items():
        v4, v6 = FamilyEntries(), FamilyEntries()
        for fam, base, ranges in ((v4, V4_BASE, r4), (v6, V6_BASE, r6)):
            for start, length, score in ranges:
                fam.append(base + start, base + min(start + length, SPAN - 1), score)
        out[name] = (v4, v6)
    return out


def brute_force(raw: RawFeeds, family: int, value: int, min_score: int) -> tuple[tuple[str, ...], int] | None:
    base = V4_BASE if family == V4 else V6_BASE
    hits: list[tuple[str, int]] = []
    for name, (r4, r6) in raw.items():
        for start, length, score in r4 if family == V4 else r6:
            if 0 < score < min_score:
                continue
            if base + start <= value <= base + min(start + length, SPAN - 1):
                hits.append((name, score))
    if not hits:
        return None
    names = tuple(n for n in raw if any(h == n for h, _ in hits))
    return names, max(s for _, s in hits)


def probes(index_fam: FamilyIndex, base: int, extra: Iterable[int]) -> set[int]:
    """Every range bound and its neighbours, plus random probes."""
    values = {base - 1, base, base + SPAN, *(base + e for e in extra)}
    for first, last in zip(index_fam.firsts, index_fam.lasts, strict=True):
        values.update((first - 1, first, last, last + 1))
    return values


@settings(max_examples=300, deadline=None)
@given(
    raw=all_feeds,
    min_score=st.sampled_from([0, 0, 2, 4]),
    extra=st.lists(st.integers(min_value=0, max_value=SPAN - 1), max_size=40),
)
def test_compiled_index_agrees_with_brute_force(raw: RawFeeds, min_score: int, extra: list[int]) -> None:
    index = compile_index(build(raw), min_score=min_score)
    assert_index_well_formed(index)
    for family, fam, base in ((V4, index.v4, V4_BASE), (V6, index.v6, V6_BASE)):
        for value in probes(fam, base, extra):
            expected = brute_force(raw, family, value, min_score)
            match = index.lookup(family, value)
            assert index.contains(family, value) is (expected is not None)
            if expected is None:
                assert match is None
            else:
                assert match is not None
                assert (match.feeds, match.score) == expected
                assert match.first <= value <= match.last


@settings(max_examples=200, deadline=None)
@given(raw=all_feeds)
def test_every_matched_range_is_uniform(raw: RawFeeds) -> None:
    """Each output range has one answer throughout: its first and last address agree with the model."""
    index = compile_index(build(raw))
    for family, fam in ((V4, index.v4), (V6, index.v6)):
        for first, last, mask, score in ranges_of(fam):
            feeds = tuple(name for bit, name in enumerate(index.feed_names) if mask >> bit & 1)
            assert brute_force(raw, family, first, 0) == (feeds, score)
            assert brute_force(raw, family, last, 0) == (feeds, score)
            assert brute_force(raw, family, (first + last) // 2, 0) == (feeds, score)


@settings(max_examples=200, deadline=None)
@given(raw=all_feeds)
def test_covered_address_count_is_preserved(raw: RawFeeds) -> None:
    """The index covers exactly the union of all entries, no more and no less."""
    index = compile_index(build(raw))
    for fam, base, pick in ((index.v4, V4_BASE, 0), (index.v6, V6_BASE, 1)):
        covered: set[int] = set()
        for r4_r6 in raw.values():
            for start, length, _ in r4_r6[pick]:
                covered.update(range(base + start, base + min(start + length, SPAN - 1) + 1))
        assert sum(last - first + 1 for first, last in zip(fam.firsts, fam.lasts, strict=True)) == len(
            covered
        )


def test_ipv6_range_covering_mapped_space_also_covers_ipv4() -> None:
    """A client's ::ffff:a.b.c.d is looked up as IPv4, so ::/0 must list it there too."""
    v6 = FamilyEntries()
    v6.append(0, (1 << 128) - 1, 0)
    index = compile_index({"all6": (FamilyEntries(), v6)})
    assert index.contains(*parse_address("::ffff:8.8.8.8"))
    assert index.contains(*parse_address("8.8.8.8"))
    assert index.contains(*parse_address("2001:db8::1"))


def test_ipv6_range_outside_mapped_space_does_not_touch_ipv4() -> None:
    v6 = FamilyEntries()
    v6.append(0x20010DB8 << 96, (0x20010DB8 << 96) | ((1 << 96) - 1), 0)
    index = compile_index({"doc": (FamilyEntries(), v6)})
    assert len(index.v4) == 0
