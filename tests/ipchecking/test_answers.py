"""The hot-path answer against a brute-force model, /16 slot edges included."""

from __future__ import annotations

from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blocklist import slots as slots_module
from blocklist.addresses import V4_MAX, format_address
from blocklist.feedparsers import FamilyEntries
from blocklist.index import compile_index
from blocklist.snapshot import Version, checksum_of
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


def test_both_ways_of_building_the_slot_table_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    firsts = array("I", sorted({(i * 2654435761) % (1 << 32) for i in range(5000)} | {0, SLOT - 1, SLOT}))
    counted = v4_slots(firsts)
    monkeypatch.setattr(slots_module, "_COUNT_BELOW", 0)
    assert v4_slots(firsts) == counted
    assert counted[0] == 0
    assert counted[-1] == len(firsts)
