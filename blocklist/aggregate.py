"""Networks for export: sorted ranges merged, holes cut out, and split into the fewest CIDRs.

Every function takes and yields ranges of one family as inclusive
``(first, last)`` integer pairs, sorted by ``first``, and is a generator:
10M ranges stream through in constant memory. Pure (no I/O).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator

Range = tuple[int, int]


def merged(ranges: Iterable[Range]) -> Iterator[Range]:
    """``ranges`` (sorted by first) with overlapping and adjacent ones joined. O(n)."""
    it = iter(ranges)
    head = next(it, None)
    if head is None:
        return
    first, last = head
    for nfirst, nlast in it:
        if nfirst <= last + 1:
            last = max(last, nlast)
            continue
        yield first, last
        first, last = nfirst, nlast
    yield first, last


def union(*sources: Iterable[Range]) -> Iterator[Range]:
    """The merged union of several sorted sources. O(n log k) for k sources."""
    return merged(heapq.merge(*sources))


def subtract(ranges: Iterable[Range], holes: Iterable[Range]) -> Iterator[Range]:
    """What of ``ranges`` no hole covers; both sorted, and ``holes`` disjoint. O(n + h)."""
    hole_iter = iter(holes)
    hole = next(hole_iter, None)
    for start, last in ranges:
        first = start
        while hole is not None and hole[1] < first:
            hole = next(hole_iter, None)
        while hole is not None and hole[0] <= last:
            if hole[0] > first:
                yield first, hole[0] - 1
            if hole[1] >= last:
                first = last + 1
                break
            first = hole[1] + 1
            hole = next(hole_iter, None)
        if first <= last:
            yield first, last


def cidrs(ranges: Iterable[Range], bits: int) -> Iterator[tuple[int, int]]:
    """Each range split into the fewest aligned CIDR blocks, as ``(network, prefix length)``.

    ``bits`` is 32 or 128. The blocks of one range are the greedy largest
    aligned ones, which is the minimum; merged input gives the fewest for
    the whole set. O(number of blocks).
    """
    for start, last in ranges:
        first = start
        while first <= last:
            # Largest block aligned at ``first``: its lowest set bit (all bits for 0)...
            size = (first & -first).bit_length() - 1 if first else bits
            # ...no longer than what is left of the range.
            span = (last - first + 1).bit_length() - 1
            k = size if size < span else span
            yield first, bits - k
            first += 1 << k
