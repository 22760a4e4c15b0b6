"""Manual blocks and allows (overrides), and their compiled lookup form.

An :class:`Override` names one network (an address, a CIDR or a
``first-last`` range), an action and an optional expiry. For lookups,
overrides of one action and family are compiled (:func:`compile_overrides`)
into sorted, disjoint ranges, each carrying the latest expiry of the
overrides covering it: a range applies while ``now`` is before that moment,
so an override stops applying exactly when it expires, whatever the time of
the next sync or clean-up.
"""

from __future__ import annotations

import heapq
import json
import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from blocklist.addresses import MAX_BITS, V4, format_address, parse_network
from blocklist.errors import InvalidAddress
from blocklist.slots import SLOT_SHIFT, v4_slots

Action = Literal["block", "allow"]
ACTIONS: tuple[Action, ...] = ("block", "allow")
REASON_WIDTH = 500
FOREVER = math.inf


@dataclass(frozen=True, slots=True)
class Override:
    """One stored override; moments are seconds since the epoch."""

    id: int
    network: str
    action: Action
    reason: str
    created_at: float
    expires_at: float | None
    created_by: str

    @property
    def bounds(self) -> tuple[int, int, int]:
        """``(family, first, last)`` of the network."""
        return parse_network(self.network)

    def active(self, now: float) -> bool:
        """True while the override applies."""
        return self.expires_at is None or now < self.expires_at

    def encode(self) -> str:
        """The stored JSON document."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def decode(cls, doc: str | bytes) -> Override:
        """Inverse of :meth:`encode`."""
        data: dict[str, Any] = json.loads(doc)
        return cls(**data)


def normalize_network(text: str) -> tuple[str, tuple[int, int, int]]:
    """The canonical text and bounds of an override's network; raises :class:`InvalidAddress`.

    A CIDR with host bits set is refused (``203.0.113.7/24`` is more likely
    a typo than a wish to cover the /24); a single address becomes a /32 or
    /128.
    """
    text = text.strip()
    family, first, last = parse_network(text)
    bits = MAX_BITS[family]
    if "/" in text:
        prefix = bits - (last - first + 1).bit_length() + 1
        given = text.partition("/")[0]
        if parse_network(given)[1] != first:
            raise InvalidAddress(
                f"host bits are set; the network is {format_address(family, first)}/{prefix}"
            )
        return f"{format_address(family, first)}/{prefix}", (family, first, last)
    if first == last:
        return f"{format_address(family, first)}/{bits}", (family, first, last)
    return f"{format_address(family, first)}-{format_address(family, last)}", (family, first, last)


def prefix_len(family: int, first: int, last: int) -> int:
    """The prefix length of the smallest CIDR holding ``first..last`` (for breadth checks)."""
    return MAX_BITS[family] - (first ^ last).bit_length()


@dataclass(frozen=True, slots=True)
class Overlay:
    """Sorted, disjoint ranges of one family that some override covers.

    ``allows[i]`` / ``blocks[i]``: until when an allow / a block covers range
    i (the latest expiry among the overrides of that action covering it; 0:
    none). One binary search answers both.
    """

    firsts: Sequence[int]
    lasts: Sequence[int]
    allows: Sequence[float]
    blocks: Sequence[float]
    #: IPv4 only: :func:`~blocklist.slots.v4_slots` of ``firsts``, narrowing each search to a /16.
    slots: Sequence[int] = ()

    def find(self, value: int) -> int:
        """Position of the range holding ``value``, or -1. O(log n), a few steps with ``slots``."""
        if self.slots:
            slot = value >> SLOT_SHIFT
            i = bisect_right(self.firsts, value, self.slots[slot], self.slots[slot + 1]) - 1
        else:
            i = bisect_right(self.firsts, value) - 1
        return i if i >= 0 and value <= self.lasts[i] else -1

    def __len__(self) -> int:
        return len(self.firsts)


EMPTY = Overlay((), (), (), ())


@dataclass(frozen=True, slots=True)
class CompiledOverrides:
    """The overlay of each family, for the hot path."""

    v4: Overlay = EMPTY
    v6: Overlay = EMPTY

    def __len__(self) -> int:
        return len(self.v4) + len(self.v6)


def compile_overrides(overrides: Iterable[Override], now: float) -> CompiledOverrides:
    """Compile the overrides still active at ``now``. O(n log n)."""
    per_family: dict[int, list[tuple[int, int, float, int]]] = {V4: [], 6: []}
    for item in overrides:
        if not item.active(now):
            continue
        family, first, last = item.bounds
        until = FOREVER if item.expires_at is None else item.expires_at
        per_family[family].append((first, last, until, ACTIONS.index(item.action)))
    v4 = _sweep(per_family[V4])
    if v4.firsts:
        v4 = replace(v4, slots=v4_slots(v4.firsts))
    return CompiledOverrides(v4, _sweep(per_family[6]))


def _sweep(entries: list[tuple[int, int, float, int]]) -> Overlay:
    """Disjoint ranges with, per action, the latest expiry of the entries covering each.

    Entries are ``(first, last, until, action index)``; neighbours with equal
    expiries are joined.
    """
    if not entries:
        return EMPTY
    events: list[tuple[int, int, int]] = []  # (position, 0 start / 1 end, entry index)
    for i, (first, last, _, _) in enumerate(entries):
        events.append((first, 0, i))
        events.append((last + 1, 1, i))
    events.sort()
    firsts: list[int] = []
    lasts: list[int] = []
    untils: list[list[float]] = [[], []]  # per action index (block, allow)
    heaps: list[list[tuple[float, int]]] = [[], []]  # (-until, entry index), lazily pruned
    ended: set[int] = set()
    position = events[0][0]
    for at, kind, i in events:
        for heap in heaps:
            while heap and heap[0][1] in ended:
                heapq.heappop(heap)
        if at > position and (heaps[0] or heaps[1]):
            block, allow = (-heap[0][0] if heap else 0.0 for heap in heaps)
            if firsts and lasts[-1] == position - 1 and untils[0][-1] == block and untils[1][-1] == allow:
                lasts[-1] = at - 1
            else:
                firsts.append(position)
                lasts.append(at - 1)
                untils[0].append(block)
                untils[1].append(allow)
        position = at
        if kind == 0:
            heapq.heappush(heaps[entries[i][3]], (-entries[i][2], i))
        else:
            ended.add(i)
    return Overlay(firsts, lasts, untils[1], untils[0])
