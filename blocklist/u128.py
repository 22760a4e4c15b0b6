"""128-bit bounds (IPv6) held as two 64-bit halves: 16 bytes per bound.

A Python ``int`` of 128 bits costs about 44 bytes plus an 8-byte list slot;
:class:`U128Array` keeps the high and low halves in two ``array('Q')``
instead. It is a read-only ``Sequence[int]`` (items, slices and iteration
give plain ints), so code off the hot path treats it like a list; lookups
use :func:`find_u128` on the halves directly, narrowed by a slot table on the
top 16 bits as IPv4 is (:func:`blocklist.slots.v6_slots`).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

LOW = (1 << 64) - 1
#: IPv6 searches are narrowed to the ranges starting in the address's /16.
V6_SLOT_SHIFT = 112
#: The same slot from the high half alone.
V6_SLOT_LOW_SHIFT = V6_SLOT_SHIFT - 64


class U128Array(Sequence[int]):
    """Unsigned 128-bit integers, immutable, as ``hi`` and ``lo`` halves (``array('Q')``)."""

    __slots__ = ("hi", "lo")

    def __init__(self, hi: array[int] | None = None, lo: array[int] | None = None) -> None:
        self.hi = hi if hi is not None else array("Q")
        self.lo = lo if lo is not None else array("Q")
        if len(self.hi) != len(self.lo):
            raise ValueError("halves of different lengths")

    @classmethod
    def of(cls, values: Iterable[int]) -> U128Array:
        """The array of ``values`` (each in 0 .. 2**128 - 1)."""
        items = values if isinstance(values, list) else list(values)
        return cls(array("Q", [v >> 64 for v in items]), array("Q", [v & LOW for v in items]))

    def __len__(self) -> int:
        return len(self.hi)

    @overload
    def __getitem__(self, index: int) -> int: ...

    @overload
    def __getitem__(self, index: slice) -> U128Array: ...

    def __getitem__(self, index: int | slice) -> int | U128Array:
        if isinstance(index, slice):
            return U128Array(self.hi[index], self.lo[index])
        return self.hi[index] << 64 | self.lo[index]

    def __iter__(self) -> Iterator[int]:
        for hi, lo in zip(self.hi, self.lo, strict=True):
            yield hi << 64 | lo

    def __eq__(self, other: object) -> bool:
        if isinstance(other, U128Array):
            return self.hi == other.hi and self.lo == other.lo
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable halves, like list

    def __repr__(self) -> str:
        return f"U128Array({list(self)!r})"


def find_u128(firsts: U128Array, lasts: U128Array, slots: Sequence[int], value: int) -> int:
    """Position of the range (``firsts[i] <= value <= lasts[i]``) holding ``value``, or -1.

    ``firsts`` is sorted and the ranges disjoint; ``slots`` is
    :func:`blocklist.slots.v6_slots` of ``firsts``. The same steps are inlined
    in the ``/check_ip`` answer.
    """
    hi, lo = value >> 64, value & LOW
    top = value >> V6_SLOT_SHIFT
    his = firsts.hi
    i = bisect_right(his, hi, slots[top], slots[top + 1]) - 1
    if i >= 0 and his[i] == hi and firsts.lo[i] > lo:
        # Several ranges share this high half: search their low halves.
        i = bisect_right(firsts.lo, lo, bisect_left(his, hi, 0, i), i) - 1
    if i < 0:
        return -1
    last_hi = lasts.hi[i]
    return i if last_hi > hi or (last_hi == hi and lasts.lo[i] >= lo) else -1
