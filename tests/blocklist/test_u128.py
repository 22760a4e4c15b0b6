"""128-bit bounds as two 64-bit halves: a sequence of ints, and its lookup."""

from __future__ import annotations

import sys
from array import array

from hypothesis import given
from hypothesis import strategies as st

from blocklist.slots import v6_slots
from blocklist.u128 import U128Array, find_u128

U128 = st.integers(0, (1 << 128) - 1)


@given(st.lists(U128, max_size=50))
def test_items_slices_and_iteration_give_back_the_ints(values: list[int]) -> None:
    packed = U128Array.of(values)
    assert len(packed) == len(values)
    assert list(packed) == values
    assert [packed[i] for i in range(len(values))] == values
    assert list(packed[1:-1:2]) == values[1:-1:2]
    assert packed == values
    assert packed == U128Array.of(values)


def test_halves_must_have_the_same_length() -> None:
    try:
        U128Array(array("Q", [1]), array("Q"))
    except ValueError:
        return
    raise AssertionError("accepted halves of different lengths")


def test_a_bound_costs_sixteen_bytes() -> None:
    packed = U128Array.of(range(1 << 100, (1 << 100) + 100_000))
    per_bound = (sys.getsizeof(packed.hi) + sys.getsizeof(packed.lo)) / len(packed)
    assert per_bound < 16.1


@given(st.lists(st.tuples(U128, st.integers(0, 1 << 70)), max_size=30), st.lists(U128, max_size=30))
def test_find_matches_a_scan(ranges: list[tuple[int, int]], probes: list[int]) -> None:
    # Disjoint, sorted ranges built from the drawn ones.
    spans: list[tuple[int, int]] = []
    for first, length in sorted(ranges):
        last = min(first + length, (1 << 128) - 1)
        if spans and first <= spans[-1][1] + 1:
            continue
        spans.append((first, last))
    firsts, lasts = U128Array.of([a for a, _ in spans]), U128Array.of([b for _, b in spans])
    slots = v6_slots(firsts)
    points = set(probes) | {p + d for a, b in spans for p in (a, b) for d in (-1, 0, 1)}
    for value in points:
        if not 0 <= value < 1 << 128:
            continue
        expected = next((i for i, (a, b) in enumerate(spans) if a <= value <= b), -1)
        assert find_u128(firsts, lasts, slots, value) == expected
