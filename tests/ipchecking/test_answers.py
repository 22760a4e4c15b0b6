"""The hot-path answer against a brute-force model, /16 slot edges included."""

from __future__ import annotations

from array import array
from bisect import bisect_left

from hypothesis import given, settings
from hypothesis import strategies as st

from blocklist.addresses import V4_MAX, format_address
from blocklist.feedparsers import FamilyEntries
from blocklist.index import compile_index
from blocklist.snapshot import Version, checksum_of
from ipchecking import holder as holder_module
from ipchecking.answers import check_ip
from ipchecking.holder import BLOCKED_BODY, VersionHolder, v4_slots

SLOT = 1 << 16
# Ranges near a few /16 edges (and the ends of the space) hit the slot table's corner cases.
EDGES = [0, SLOT, 7 * SLOT, 0x0A000000, 0xC0A80000, V4_MAX - SLOT, V4_MAX]
near_edge = st.builds(
    lambda edge, offset: min(max(edge + offset, 0), V4_MAX),
    st.sampled_from(EDGES),
    st.integers(-3 * SLOT, 3 * SLOT),
)
v4_range = st.tuples(st.one_of(near_edge, st.integers(0, V4_MAX)), st.integers(0, 5 * SLOT))


def holder_of(ranges: list[tuple[int, int]]) -> VersionHolder:
    entries = FamilyEntries()
    for first, length in ranges:
        entries.append(first, min(first + length, V4_MAX), 1)
    index = compile_index({"f": (entries, FamilyEntries())})
    holder = VersionHolder()
    holder.swap(Version(1, 1.0, (), index, checksum_of(index)))
    return holder


@settings(max_examples=150, deadline=None)
@given(st.lists(v4_range, max_size=40), st.lists(st.integers(0, V4_MAX), max_size=20))
def test_ipv4_answers_match_brute_force_at_every_slot_edge(
    ranges: list[tuple[int, int]], extra: list[int]
) -> None:
    holder = holder_of(ranges)
    spans = [(first, min(first + length, V4_MAX)) for first, length in ranges]
    probes = set(extra)
    for first, last in spans:
        probes.update({first - 1, first, last, last + 1})
    for edge in EDGES:
        probes.update({edge - 1, edge, edge + 1})
    for value in probes:
        if not 0 <= value <= V4_MAX:
            continue
        status, _, body, _ = check_ip(holder, format_address(4, value))
        assert status == 200
        assert (body == BLOCKED_BODY) == any(a <= value <= b for a, b in spans), format_address(4, value)


def test_slot_table_counts_ranges_starting_below_each_slot() -> None:
    holder = holder_of([(5, 0), (SLOT - 1, 2), (3 * SLOT, 0)])
    served = holder.served
    assert served is not None
    slots = served.v4_slots
    assert len(slots) == SLOT + 1
    assert list(slots[:5]) == [0, 2, 2, 2, 3]
    assert slots[-1] == len(served.v4_firsts)


def test_slot_table_matches_its_definition() -> None:
    firsts = array("I", sorted({(i * 2654435761) % (1 << 32) for i in range(5000)} | {0, SLOT - 1, SLOT}))
    table = v4_slots(firsts)
    assert list(table) == [bisect_left(firsts, s * SLOT) for s in range(SLOT)] + [len(firsts)]


V6_MAX = (1 << 128) - 1
# IPv6 corner cases: ranges sharing a high half (several inside one /64),
# ranges crossing /16 slot edges, and the ends of the space.
V6_EDGES = [
    0,
    1 << 64,
    0x2001 << 112,
    (0x2001 << 112) | (5 << 64),
    (0x2A00 << 112) - 1,
    V6_MAX - (1 << 70),
    V6_MAX,
]
near_v6_edge = st.builds(
    lambda edge, offset: min(max(edge + offset, 0), V6_MAX),
    st.sampled_from(V6_EDGES),
    st.integers(-(1 << 66), 1 << 66) | st.integers(-300, 300),
)
v6_range = st.tuples(
    st.one_of(near_v6_edge, st.integers(0, V6_MAX)), st.integers(0, 200) | st.integers(0, 1 << 114)
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(v6_range, max_size=30),
    st.lists(st.integers(0, V6_MAX), max_size=20),
    st.sampled_from([holder_module.SMALL_V6, 0]),
)
def test_ipv6_answers_match_brute_force(ranges: list[tuple[int, int]], extra: list[int], small: int) -> None:
    """Both IPv6 layouts of the hot path: Python ints (small lists) and 64-bit halves."""
    entries = FamilyEntries()
    spans = [(first, min(first + length, V6_MAX)) for first, length in ranges]
    for first, last in spans:
        entries.append(first, last, 1)
    index = compile_index({"f": (FamilyEntries(), entries)})
    holder = VersionHolder()
    default, holder_module.SMALL_V6 = holder_module.SMALL_V6, small
    try:
        holder.swap(Version(1, 1.0, (), index, checksum_of(index)))
    finally:
        holder_module.SMALL_V6 = default
    served = holder.served
    assert served is not None
    assert (served.v6_small is None) == (small == 0 and len(index.v6) > 0)
    probes = set(extra)
    for first, last in spans:
        probes.update({first - 1, first, first + 1, last - 1, last, last + 1})
    for edge in V6_EDGES:
        probes.update({edge - 1, edge, edge + 1})
    for value in probes:
        # IPv4-mapped addresses are answered as IPv4 (tested elsewhere).
        if not 0 <= value <= V6_MAX or value >> 32 == 0xFFFF:
            continue
        expected = any(a <= value <= b for a, b in spans)
        _, _, body, _ = check_ip(holder, format_address(6, value))
        assert (body == BLOCKED_BODY) == expected, format_address(6, value)
        assert (index.v6.find(value) >= 0) == expected
