"""A table narrowing each IPv4 binary search to the ranges starting in the address's /16."""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from itertools import accumulate

#: IPv4 searches are narrowed to the ranges starting in the address's /16.
SLOT_SHIFT = 16


def v4_slots(firsts: Sequence[int]) -> array[int]:
    """Per /16, the position of its first range start (65,537 entries, 256 KiB).

    A lookup of ``value`` then searches only ``firsts[slots[value >> 16] :
    slots[(value >> 16) + 1]]`` (plus the range just before, which may reach
    into the /16): a few steps at any list size, where a plain binary search
    over ten million ranges takes 23, each one a cache miss. Built by
    counting starts per /16 (small lists) or one binary search per /16
    (large ones), whichever is cheaper: a few ms at 100k ranges, about
    0.1 s at ten million. Run it off the event loop.
    """
    slots = 1 << (32 - SLOT_SHIFT)
    if len(firsts) > _COUNT_BELOW:
        return array("I", [bisect_left(firsts, slot << SLOT_SHIFT) for slot in range(slots + 1)])
    per_slot = Counter(first >> SLOT_SHIFT for first in firsts)
    return array("I", accumulate((per_slot.get(slot, 0) for slot in range(slots)), initial=0))


#: Up to this many ranges, counting starts per /16 is faster than 65,537 binary searches.
_COUNT_BELOW = 500_000
