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
from dataclasses import asdict, dataclass
from typing import Any, Literal

from blocklist.addresses import MAX_BITS, V4, format_address, parse_network
from blocklist.errors import InvalidAddress

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
class Ranges:
    """Sorted, disjoint ranges of one action and family; ``untils[i]``: when range i stops applying."""

    firsts: Sequence[int]
    lasts: Sequence[int]
    untils: Sequence[float]

    def until(self, value: int) -> float:
        """When the range holding ``value`` stops applying; 0 if none holds it. O(log n)."""
        i = bisect_right(self.firsts, value) - 1
        if i >= 0 and value <= self.lasts[i]:
            return self.untils[i]
        return 0.0

    def __len__(self) -> int:
        return len(self.firsts)


EMPTY = Ranges((), (), ())


@dataclass(frozen=True, slots=True)
class CompiledOverrides:
    """Allow and block ranges per family, for the hot path."""

    allow4: Ranges = EMPTY
    allow6: Ranges = EMPTY
    block4: Ranges = EMPTY
    block6: Ranges = EMPTY

    def __len__(self) -> int:
        return len(self.allow4) + len(self.allow6) + len(self.block4) + len(self.block6)


def compile_overrides(overrides: Iterable[Override], now: float) -> CompiledOverrides:
    """Compile the overrides still active at ``now``. O(n log n)."""
    groups: dict[tuple[str, int], list[tuple[int, int, float]]] = {}
    for item in overrides:
        if not item.active(now):
            continue
        family, first, last = item.bounds
        until = FOREVER if item.expires_at is None else item.expires_at
        groups.setdefault((item.action, family), []).append((first, last, until))
    return CompiledOverrides(
        *(
            _sweep(groups.get((action, family), []))
            for action, family in (("allow", V4), ("allow", 6), ("block", V4), ("block", 6))
        )
    )


def _sweep(entries: list[tuple[int, int, float]]) -> Ranges:
    """Disjoint ranges with the latest expiry of the entries covering each; equal neighbours joined."""
    if not entries:
        return EMPTY
    events: list[tuple[int, int, int]] = []  # (position, 0 start / 1 end, entry index)
    for i, (first, last, _) in enumerate(entries):
        events.append((first, 0, i))
        events.append((last + 1, 1, i))
    events.sort()
    firsts: list[int] = []
    lasts: list[int] = []
    untils: list[float] = []
    heap: list[tuple[float, int]] = []  # (-until, entry index), lazily pruned
    ended: set[int] = set()
    position = events[0][0]
    for at, kind, i in events:
        while heap and heap[0][1] in ended:
            heapq.heappop(heap)
        if at > position and heap:
            until = -heap[0][0]
            if firsts and lasts[-1] == position - 1 and untils[-1] == until:
                lasts[-1] = at - 1
            else:
                firsts.append(position)
                lasts.append(at - 1)
                untils.append(until)
        position = at
        if kind == 0:
            heapq.heappush(heap, (-entries[i][2], i))
        else:
            ended.add(i)
    return Ranges(firsts, lasts, untils)
