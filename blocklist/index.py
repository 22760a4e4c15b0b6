"""The compiled range index: every feed merged into sorted, disjoint ranges.

Each family is held as parallel sorted arrays: range starts, range ends, a
bitmask of the feeds that listed the range and the highest score any of them
gave it. A lookup is one ``bisect`` over the starts: O(log n), and a /8 costs
one range, not 16 million addresses.

IPv4 uses ``array('I')`` (4 bytes per bound); IPv6 bounds are 128-bit,
held as two 64-bit halves (:class:`~blocklist.u128.U128Array`, 16 bytes per
bound). Both are compiled with numpy (:mod:`blocklist.vectorsweep`); the
Python sweep here takes inputs with too many distinct scores. Masks are as
wide as the number of feeds needs (1 byte up to 8 feeds), so an IPv4 range
costs 11 bytes and an IPv6 range 35 with up to 8 feeds. Each family carries
a /16 slot table (:mod:`blocklist.slots`) that narrows every search.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from blocklist.addresses import V4, V4_MAX
from blocklist.errors import ConfigError
from blocklist.feedparsers import FamilyEntries
from blocklist.slots import SLOT_SHIFT, v4_slots, v6_slots
from blocklist.u128 import U128Array, find_u128
from blocklist.vectorsweep import sweep_v4, sweep_v6

#: Feed membership is a 64-bit mask, so one index merges at most 64 feeds.
MAX_FEEDS = 64
_MAPPED_FIRST = 0xFFFF << 32
_MAPPED_LAST = _MAPPED_FIRST | V4_MAX


@dataclass(frozen=True, slots=True)
class RangeMatch:
    """The range an address fell in: its bounds, listing feeds and score."""

    first: int
    last: int
    feeds: tuple[str, ...]
    score: int


def mask_code(feeds: int) -> str:
    """The ``array`` typecode of masks for ``feeds`` feeds: the narrowest that holds a bit per feed."""
    for code, bits in (("B", 8), ("H", 16), ("I", 32), ("Q", 64)):
        if feeds <= bits:
            return code
    raise ConfigError(f"at most {MAX_FEEDS} feeds can be merged, got {feeds}")


@dataclass(frozen=True, slots=True)
class FamilyIndex:
    """Sorted, disjoint ranges of one family; parallel sequences, same length.

    IPv4 bounds are ``array('I')``, IPv6 bounds :class:`U128Array`. ``slots``
    (computed when not given) is the family's /16 slot table.
    """

    firsts: Sequence[int]
    lasts: Sequence[int]
    masks: array[int]
    scores: array[int]
    slots: array[int] = field(default_factory=lambda: array("I"), compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.slots:
            firsts = self.firsts
            table = v6_slots(firsts) if isinstance(firsts, U128Array) else v4_slots(firsts)
            object.__setattr__(self, "slots", table)

    def __len__(self) -> int:
        return len(self.firsts)

    def find(self, value: int) -> int:
        """Position of the range holding ``value``, or -1. O(log n), a few steps with the slots."""
        firsts = self.firsts
        if isinstance(firsts, U128Array):
            assert isinstance(self.lasts, U128Array)
            return find_u128(firsts, self.lasts, self.slots, value)
        slot = value >> SLOT_SHIFT
        i = bisect_right(firsts, value, self.slots[slot], self.slots[slot + 1]) - 1
        if i >= 0 and value <= self.lasts[i]:
            return i
        return -1


@dataclass(frozen=True, slots=True)
class RangeIndex:
    """An immutable index of both families; safe to share between threads."""

    feed_names: tuple[str, ...]
    v4: FamilyIndex
    v6: FamilyIndex

    def contains(self, family: int, value: int) -> bool:
        """True if the address ``(family, value)`` is in any range."""
        return (self.v4 if family == V4 else self.v6).find(value) >= 0

    def lookup(self, family: int, value: int) -> RangeMatch | None:
        """The range holding the address with its feeds and score, or None."""
        fam = self.v4 if family == V4 else self.v6
        i = fam.find(value)
        if i < 0:
            return None
        mask = fam.masks[i]
        feeds = tuple(name for bit, name in enumerate(self.feed_names) if mask >> bit & 1)
        return RangeMatch(fam.firsts[i], fam.lasts[i], feeds, fam.scores[i])

    @property
    def ranges(self) -> int:
        """Number of disjoint ranges, both families."""
        return len(self.v4) + len(self.v6)


def empty_family(family: int) -> FamilyIndex:
    """A family index with no ranges."""
    bounds: Sequence[int] = array("I") if family == V4 else U128Array()
    return FamilyIndex(bounds, bounds, array("B"), array("H"))


def compile_index(
    feeds: Mapping[str, tuple[FamilyEntries, FamilyEntries]], *, min_score: int = 0
) -> RangeIndex:
    """Merge feeds (name -> (v4 entries, v6 entries)) into one index.

    Overlapping and adjacent entries are merged into disjoint ranges; adjacent
    ranges with the same feeds and score are joined. Entries with a score
    below ``min_score`` are left out (score 0, "unscored", is always kept).
    Cost: O(n log n) in the number of entries.
    """
    names = tuple(feeds)
    if len(names) > MAX_FEEDS:
        raise ConfigError(f"at most {MAX_FEEDS} feeds can be merged, got {len(names)}")
    code = mask_code(len(names))
    v4 = _compile_family(V4, [_with_mapped(*feeds[n]) for n in names], min_score, code)
    v6 = _compile_family(6, [feeds[n][1] for n in names], min_score, code)
    return RangeIndex(names, v4, v6)


def mapped_ipv4(v6: FamilyEntries) -> FamilyEntries:
    """The IPv4 part (with scores) of the IPv6 entries overlapping ``::ffff:0:0/96``.

    Clients' IPv4-mapped addresses are looked up as IPv4, so an IPv6 entry
    such as ``::/0`` covers those IPv4 addresses too.
    """
    mapped = FamilyEntries()
    for first, last, score in zip(v6.firsts, v6.lasts, v6.scores, strict=True):
        if first <= _MAPPED_LAST and last >= _MAPPED_FIRST:
            mapped.append(
                max(first, _MAPPED_FIRST) - _MAPPED_FIRST, min(last, _MAPPED_LAST) - _MAPPED_FIRST, score
            )
    return mapped


def _with_mapped(v4: FamilyEntries, v6: FamilyEntries) -> FamilyEntries:
    """``v4`` plus :func:`mapped_ipv4` of ``v6``."""
    extra = mapped_ipv4(v6)
    if not len(extra):
        return v4
    merged = FamilyEntries(list(v4.firsts), list(v4.lasts), list(v4.scores))
    for first, last, score in zip(extra.firsts, extra.lasts, extra.scores, strict=True):
        merged.append(first, last, score)
    return merged


def _compile_family(
    family: int, per_feed: list[FamilyEntries], min_score: int, masks_code: str = "Q"
) -> FamilyIndex:
    if family == V4:
        swept = sweep_v4(per_feed, min_score, masks_code)
        if swept is not None:
            return FamilyIndex(*swept)
    else:
        swept6 = sweep_v6(per_feed, min_score, masks_code)
        if swept6 is not None:
            return FamilyIndex(*swept6)
    firsts: list[int] = []
    lasts: list[int] = []
    bits: list[int] = []
    scores: list[int] = []
    for bit, entries in enumerate(per_feed):
        for first, last, score in zip(entries.firsts, entries.lasts, entries.scores, strict=True):
            if 0 < score < min_score:
                continue
            firsts.append(first)
            lasts.append(last)
            bits.append(bit)
            scores.append(score)
    out_f, out_l, out_m, out_s = _sweep(firsts, lasts, bits, scores)
    if family == V4:
        return FamilyIndex(array("I", out_f), array("I", out_l), array(masks_code, out_m), array("H", out_s))
    return FamilyIndex(U128Array.of(out_f), U128Array.of(out_l), array(masks_code, out_m), array("H", out_s))


def _sweep(
    firsts: list[int], lasts: list[int], bits: list[int], scores: list[int]
) -> tuple[list[int], list[int], list[int], list[int]]:
    """Cut possibly overlapping ranges into disjoint, merged segments.

    Walks every boundary (a range start or the address after a range end) in
    order, keeping per-feed counts and a score multiset of the ranges that
    cover the current segment.
    """
    n = len(firsts)
    by_start = sorted(range(n), key=firsts.__getitem__)
    by_end = sorted(range(n), key=lasts.__getitem__)
    points = sorted(set(firsts).union(last + 1 for last in lasts))
    out_f: list[int] = []
    out_l: list[int] = []
    out_m: list[int] = []
    out_s: list[int] = []
    feed_counts = [0] * MAX_FEEDS
    score_counts: dict[int, int] = {}
    mask = 0
    active = 0
    si = ei = 0
    for k, point in enumerate(points[:-1]):
        while ei < n and lasts[by_end[ei]] + 1 == point:
            j = by_end[ei]
            ei += 1
            active -= 1
            feed_counts[bits[j]] -= 1
            if not feed_counts[bits[j]]:
                mask &= ~(1 << bits[j])
            score_counts[scores[j]] -= 1
            if not score_counts[scores[j]]:
                del score_counts[scores[j]]
        while si < n and firsts[by_start[si]] == point:
            j = by_start[si]
            si += 1
            active += 1
            if not feed_counts[bits[j]]:
                mask |= 1 << bits[j]
            feed_counts[bits[j]] += 1
            score_counts[scores[j]] = score_counts.get(scores[j], 0) + 1
        if not active:
            continue
        end = points[k + 1] - 1
        score = max(score_counts)
        if out_f and out_l[-1] + 1 == point and out_m[-1] == mask and out_s[-1] == score:
            out_l[-1] = end
        else:
            out_f.append(point)
            out_l.append(end)
            out_m.append(mask)
            out_s.append(score)
    return out_f, out_l, out_m, out_s
