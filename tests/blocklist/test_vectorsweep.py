"""The numpy compile (IPv4 and IPv6) gives exactly what the Python sweep gives,
and what a brute-force model of the feeds says, address by address."""

from __future__ import annotations

from array import array

from hypothesis import given, settings
from hypothesis import strategies as st

from blocklist.addresses import V4_MAX
from blocklist.feedparsers import FamilyEntries
from blocklist.index import _sweep, compile_index
from blocklist.u128 import U128Array
from blocklist.vectorsweep import MAX_SCORE_PASSES, sweep_v4, sweep_v6

# Ranges in a small window (so they overlap and touch often), plus the ends of the space.
EDGES = [0, 1, V4_MAX - 1, V4_MAX]
first_st = st.one_of(st.integers(1000, 1100), st.sampled_from(EDGES))


V6_MAX = (1 << 128) - 1
# IPv6: the same window at the ends of the space and across the carry between the 64-bit halves.
V6_EDGES = [0, 1, (1 << 64) - 2, (1 << 64) - 1, 1 << 64, V6_MAX - 1, V6_MAX]
first6_st = st.one_of(
    st.integers(1000, 1100), st.integers((1 << 64) - 30, (1 << 64) + 10), st.sampled_from(V6_EDGES)
)


@st.composite
def feeds(
    draw: st.DrawFn,
    family: int = 4,
    most_feeds: int = 4,
    most_entries: int = 15,
    top_score: int = 5,
    firsts: st.SearchStrategy[int] = first_st,
) -> list[FamilyEntries]:
    top = V4_MAX if family == 4 else V6_MAX
    out = []
    for _ in range(draw(st.integers(1, most_feeds))):
        entries = FamilyEntries.for_family(family)
        for _ in range(draw(st.integers(0, most_entries))):
            first = draw(firsts)
            last = min(top, first + draw(st.integers(0, 40)))
            entries.append(first, last, draw(st.integers(0, top_score)))
        out.append(entries)
    return out


def kept(per_feed: list[FamilyEntries], min_score: int) -> tuple[list[int], ...]:
    firsts, lasts, bits, scores = [], [], [], []
    for bit, entries in enumerate(per_feed):
        for first, last, score in zip(entries.firsts, entries.lasts, entries.scores, strict=True):
            if not 0 < score < min_score:
                firsts.append(first)
                lasts.append(last)
                bits.append(bit)
                scores.append(score)
    return firsts, lasts, bits, scores


def python_sweep(per_feed: list[FamilyEntries], min_score: int) -> tuple[array[int], ...]:
    out_f, out_l, out_m, out_s = _sweep(*kept(per_feed, min_score))
    return array("I", out_f), array("I", out_l), array("Q", out_m), array("H", out_s)


def python_sweep_v6(
    per_feed: list[FamilyEntries], min_score: int
) -> tuple[U128Array, U128Array, array[int], array[int]]:
    out_f, out_l, out_m, out_s = _sweep(*kept(per_feed, min_score))
    return U128Array.of(out_f), U128Array.of(out_l), array("Q", out_m), array("H", out_s)


@settings(max_examples=400, deadline=None)
@given(feeds(), st.integers(0, 4))
def test_numpy_and_python_sweeps_are_identical(per_feed: list[FamilyEntries], min_score: int) -> None:
    assert sweep_v4(per_feed, min_score) == python_sweep(per_feed, min_score)


@settings(max_examples=200, deadline=None)
@given(feeds(), st.integers(0, 4))
def test_every_address_gets_the_feeds_and_best_score_that_list_it(
    per_feed: list[FamilyEntries], min_score: int
) -> None:
    names = [f"f{i}" for i in range(len(per_feed))]
    index = compile_index(
        {n: (e, FamilyEntries.for_family(6)) for n, e in zip(names, per_feed, strict=True)},
        min_score=min_score,
    )
    probes = set(EDGES) | set(range(995, 1150))
    for value in probes:
        listing = [
            (name, score)
            for name, entries in zip(names, per_feed, strict=True)
            for first, last, score in zip(entries.firsts, entries.lasts, entries.scores, strict=True)
            if first <= value <= last and not 0 < score < min_score
        ]
        hit = index.lookup(4, value)
        if not listing:
            assert hit is None, value
            continue
        assert hit is not None, value
        assert set(hit.feeds) == {name for name, _ in listing}
        assert hit.score == max(score for _, score in listing)


def test_too_many_distinct_scores_fall_back_to_python() -> None:
    entries = FamilyEntries.for_family(4)
    for i in range(MAX_SCORE_PASSES + 1):
        entries.append(i * 10, i * 10 + 5, i + 1)
    assert sweep_v4([entries], 0) is None
    index = compile_index({"f": (entries, FamilyEntries.for_family(6))})
    assert index.lookup(4, 12) is not None
    assert len(index.v4) == MAX_SCORE_PASSES + 1


@settings(max_examples=150, deadline=None)
@given(feeds(most_feeds=10, most_entries=40, top_score=70), st.integers(0, 4))
def test_deep_overlaps_of_many_feeds_and_scores_span_several_words(
    per_feed: list[FamilyEntries], min_score: int
) -> None:
    # Up to 400 ranges in a window of 140 addresses: coverage deep enough
    # that the feed and score fields need more than one 64-bit word.
    result = sweep_v4(per_feed, min_score)
    if result is None:
        assert len({s for e in per_feed for s in e.scores if not 0 < s < min_score}) > MAX_SCORE_PASSES
        return
    assert result == python_sweep(per_feed, min_score)


def test_fields_split_over_several_words() -> None:
    # 20 feeds and 64 scores, 256 ranges deep at 5000: 9 bits per field,
    # 7 feeds and 5 scores per word.
    per_feed = [FamilyEntries.for_family(4) for _ in range(20)]
    for i in range(255):
        per_feed[i % 20].append(5000 - i, 5000, (255 - i) // 4)
    per_feed[3].append(0, V4_MAX, 0)
    result = sweep_v4(per_feed, 0)
    assert result == python_sweep(per_feed, 0)
    assert result is not None
    assert set(result[3]) == set(range(64))
    assert len(set(result[2])) == 20


def test_a_range_ending_at_the_last_address_ends_the_last_segment() -> None:
    entries = FamilyEntries.for_family(4)
    entries.append(V4_MAX - 10, V4_MAX, 2)
    entries.append(V4_MAX - 3, V4_MAX, 3)
    assert sweep_v4([entries], 0) == (
        array("I", [V4_MAX - 10, V4_MAX - 3]),
        array("I", [V4_MAX - 4, V4_MAX]),
        array("Q", [1, 1]),
        array("H", [2, 3]),
    )


@settings(max_examples=400, deadline=None)
@given(feeds(family=6, firsts=first6_st), st.integers(0, 4))
def test_numpy_and_python_ipv6_sweeps_are_identical(per_feed: list[FamilyEntries], min_score: int) -> None:
    result = sweep_v6(per_feed, min_score)
    expected = python_sweep_v6(per_feed, min_score)
    assert result is not None
    assert [(a.hi, a.lo) for a in result[:2]] == [(a.hi, a.lo) for a in expected[:2]]
    assert result[2:] == expected[2:]


@settings(max_examples=100, deadline=None)
@given(feeds(family=6, most_feeds=10, most_entries=40, top_score=70, firsts=first6_st), st.integers(0, 4))
def test_deep_ipv6_overlaps_are_identical(per_feed: list[FamilyEntries], min_score: int) -> None:
    result = sweep_v6(per_feed, min_score)
    if result is None:
        assert len({s for e in per_feed for s in e.scores if not 0 < s < min_score}) > MAX_SCORE_PASSES
        return
    assert result == python_sweep_v6(per_feed, min_score)


def test_an_ipv6_range_ending_at_the_last_address_ends_the_last_segment() -> None:
    entries = FamilyEntries.for_family(6)
    entries.append(0, V6_MAX, 0)
    entries.append(V6_MAX - 5, V6_MAX, 4)
    entries.append((1 << 64) - 1, 1 << 64, 4)
    result = sweep_v6([entries], 0)
    assert result is not None
    firsts, lasts, masks, scores = result
    assert list(firsts) == [0, (1 << 64) - 1, (1 << 64) + 1, V6_MAX - 5]
    assert list(lasts) == [(1 << 64) - 2, 1 << 64, V6_MAX - 6, V6_MAX]
    assert list(masks) == [1, 1, 1, 1]
    assert list(scores) == [0, 4, 0, 4]


def test_too_many_distinct_ipv6_scores_fall_back_to_python() -> None:
    entries = FamilyEntries.for_family(6)
    for i in range(MAX_SCORE_PASSES + 1):
        entries.append(i << 100, (i << 100) + 5, i + 1)
    assert sweep_v6([entries], 0) is None
    index = compile_index({"f": (FamilyEntries.for_family(4), entries)})
    assert index.lookup(6, (3 << 100) + 2) is not None
    assert len(index.v6) == MAX_SCORE_PASSES + 1


def test_no_entries_give_empty_arrays() -> None:
    assert sweep_v4([FamilyEntries.for_family(4)], 0) == (array("I"), array("I"), array("Q"), array("H"))
    assert sweep_v6([FamilyEntries.for_family(6)], 0, "B") == (
        U128Array(),
        U128Array(),
        array("B"),
        array("H"),
    )
