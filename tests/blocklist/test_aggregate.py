"""Aggregation for exports, against brute-force sets of addresses and ``ipaddress``."""

from __future__ import annotations

import ipaddress
import itertools

from hypothesis import given
from hypothesis import strategies as st

from blocklist.aggregate import cidrs, merged, subtract, union

BITS = 8
SPAN = 1 << BITS

ranges_st = st.lists(
    st.tuples(st.integers(0, SPAN - 1), st.integers(0, 40)).map(lambda t: (t[0], min(SPAN - 1, t[0] + t[1]))),
    max_size=12,
)


def members(ranges: list[tuple[int, int]]) -> set[int]:
    return {a for first, last in ranges for a in range(first, last + 1)}


@given(ranges_st, ranges_st, ranges_st)
def test_exported_cidrs_cover_exactly_the_union_minus_the_holes(
    a: list[tuple[int, int]], b: list[tuple[int, int]], holes: list[tuple[int, int]]
) -> None:
    joined = list(union(sorted(a), sorted(b)))
    assert members(joined) == members(a) | members(b)
    assert all(x[1] + 1 < y[0] for x, y in itertools.pairwise(joined)), "merged and not adjacent"
    left = list(subtract(joined, merged(sorted(holes))))
    assert members(left) == (members(a) | members(b)) - members(holes)
    blocks = list(cidrs(left, BITS))
    covered: set[int] = set()
    for network, prefix in blocks:
        size = 1 << (BITS - prefix)
        assert network % size == 0, "aligned"
        block = set(range(network, network + size))
        assert not covered & block, "disjoint"
        covered |= block
    assert covered == members(left)


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**20))
def test_a_range_splits_into_as_few_cidrs_as_ipaddress_finds(first: int, length: int) -> None:
    last = min(2**32 - 1, first + length)
    ours = [f"{ipaddress.IPv4Address(n)}/{p}" for n, p in cidrs([(first, last)], 32)]
    reference = ipaddress.summarize_address_range(ipaddress.IPv4Address(first), ipaddress.IPv4Address(last))
    assert ours == [str(n) for n in reference]


def test_whole_spaces_and_edges() -> None:
    assert list(cidrs([(0, 2**32 - 1)], 32)) == [(0, 0)]
    assert list(cidrs([(0, 2**128 - 1)], 128)) == [(0, 0)]
    assert list(cidrs([(2**128 - 1, 2**128 - 1)], 128)) == [(2**128 - 1, 128)]
    assert list(merged([])) == []
    assert list(subtract([(0, 10)], [(0, 10)])) == []
    assert list(subtract([(0, 10)], [(3, 4), (6, 6)])) == [(0, 2), (5, 5), (7, 10)]
