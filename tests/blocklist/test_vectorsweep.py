"""The numpy IPv4 compile gives exactly what the Python sweep gives, and what a
brute-force model of the feeds says, address by address."""

from __future__ import annotations

from array import array

from hypothesis import given, settings
from hypothesis import strategies as st

from blocklist.addresses import V4_MAX
from blocklist.feedparsers import FamilyEntries
from blocklist.index import _sweep, compile_index
from blocklist.vectorsweep import MAX_SCORE_PASSES, sweep_v4

# Ranges in a small window (so they overlap and touch often), plus the ends of the space.
EDGES = [0, 1, V4_MAX - 1, V4_MAX]
first_st = st.one_of(st.integers(1000, 1100), st.sampled_from(EDGES))


@st.composite
def feeds(draw: st.DrawFn) -> list[FamilyEntries]:
    out = []
    for _ in range(draw(st.integers(1, 4))):
        entries = FamilyEntries.for_family(4)
        for _ in range(draw(st.integers(0, 15))):
            first = draw(first_st)
            last = min(V4_MAX, first + draw(st.integers(0, 40)))
            entries.append(first, last, draw(st.integers(0, 5)))
        out.append(entries)
    return out


def python_sweep(per_feed: list[FamilyEntries], min_score: int) -> tuple[array[int], ...]:
    firsts, lasts, bits, scores = [], [], [], []
    for bit, entries in enumerate(per_feed):
        for first, last, score in zip(entries.firsts, entries.lasts, entries.scores, strict=True):
            if not 0 < score < min_score:
                firsts.append(first)
                lasts.append(last)
                bits.append(bit)
                scores.append(score)
    out_f, out_l, out_m, out_s = _sweep(firsts, lasts, bits, scores)
    return array("I", out_f), array("I", out_l), array("Q", out_m), array("H", out_s)


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
