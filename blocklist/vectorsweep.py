"""The compile, vectorised with numpy: the same disjoint ranges as the
pure-Python sweep of :mod:`blocklist.index`, in C loops.

Every range is two events: its start, and the address after its end. Each
event carries ``class << 1 | is_end``, where the class numbers the range's
(feed, score) pair. IPv4 events are one 64-bit key each, ``bound << shift |
payload`` (33 bits of bound, at most 13 of payload), so a plain ``sort`` of
the keys orders them by address with their payload attached: no
``argsort``, no gathers. IPv6 bounds are two 64-bit halves and a carry (the
address after ``ffff:...:ffff``), ordered by ``lexsort``. The last event at
an address opens the segment that runs up to the next address.

A cumulative sum of +1 / -1 over the sorted events is how many ranges cover
each segment; segments with none are dropped. The feeds and the score of a
segment come from one more cumulative sum each: every feed (or distinct
score) is a field of ``k`` bits in a 64-bit word, ``k`` the bits of the
deepest coverage, each event adding or taking ``1 << k * field``, so the
sum holds every field's count at once (unsigned, wrapping: only the exact
values at segment openings are read). A feed's bit of the mask is its
field being non-zero; the best score is the highest non-zero score field,
read from the float64 exponent of the word (score fields are kept below bit
53, where float64 is exact). Fields that do not fit one word are split over
several; a single feed or a single score needs no sum at all. Neighbours
with the same mask and score are joined, exactly as the Python sweep does.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Any, NamedTuple, TypeVar

import numpy as np
from numpy.typing import NDArray

from blocklist.feedparsers import FamilyEntries
from blocklist.u128 import LOW, U128Array

#: Past this many distinct scores the caller sweeps in Python (a 53-bit word holds few score fields).
MAX_SCORE_PASSES = 64

Bools = NDArray[np.bool_]
U32 = NDArray[np.uint32]
U64 = NDArray[np.uint64]
I64 = NDArray[np.int64]
_MASK_DTYPES = {"B": np.uint8, "H": np.uint16, "I": np.uint32, "Q": np.uint64}
#: float64 holds every integer below 2**53: the score fields of a word stay below this bit.
_EXACT_BITS = 53
_FLOAT_BIAS = 1023
_MANTISSA_BITS = np.uint64(52)
_ONE = np.uint64(1)
_G = TypeVar("_G", bound=np.generic)


class _Ranges(NamedTuple):
    """The entries kept, feed by feed, and the class of each (in that order)."""

    feeds: list[tuple[int, FamilyEntries, Bools | None]]  # bit, entries, kept (None: all)
    distinct: I64  # the distinct scores, ascending
    classes: U64  # per kept range: feed position * len(distinct) + rank of its score

    @property
    def class_count(self) -> int:
        return len(self.feeds) * len(self.distinct)


class _Segments(NamedTuple):
    """Covered segments, in address order: each one's opening event, mask and score (None: constant)."""

    at: I64
    masks: NDArray[np.unsignedinteger[Any]] | None
    scores: NDArray[np.uint16] | None


def sweep_v4(
    per_feed: Sequence[FamilyEntries], min_score: int, masks_code: str = "Q"
) -> tuple[array[int], ...] | None:
    """``(firsts, lasts, masks, scores)`` arrays of the merged IPv4 ranges (feed i is bit i).

    Masks are ``array(masks_code)``: ``B``, ``H``, ``I`` or ``Q``, wide enough for the feeds.
    Entries with ``0 < score < min_score`` are left out. None when the
    scores are too many distinct values for this method (the caller then
    sweeps in Python). O(n log n) for the sort, O(n) for the rest.
    """
    ranges = _ranges(per_feed, min_score)
    if ranges is None:
        return None
    if not ranges.feeds:
        return array("I"), array("I"), array(masks_code), array("H")
    firsts = np.concatenate([_kept(np.asarray(e.firsts, dtype=np.uint32), k) for _, e, k in ranges.feeds])
    lasts = np.concatenate([_kept(np.asarray(e.lasts, dtype=np.uint32), k) for _, e, k in ranges.feeds])
    total = len(firsts)
    shift = (2 * ranges.class_count - 1).bit_length()
    payload = ranges.classes << _ONE
    keys = np.empty(2 * total, dtype=np.uint64)
    opening, closing = keys[:total], keys[total:]
    opening[:] = firsts
    opening <<= np.uint64(shift)
    opening |= payload
    closing[:] = lasts
    closing += _ONE
    closing <<= np.uint64(shift)
    payload |= _ONE
    closing |= payload
    del firsts, lasts, payload
    keys.sort()
    last_at_bound = np.empty(len(keys), dtype=np.bool_)
    np.greater_equal(keys[1:] ^ keys[:-1], 1 << shift, out=last_at_bound[:-1])
    last_at_bound[-1] = True
    segments = _segments(
        (keys & np.uint64((1 << shift) - 1)).view(np.int64), last_at_bound, ranges, _MASK_DTYPES[masks_code]
    )
    seg_firsts = (keys.take(segments.at) >> np.uint64(shift)).astype(np.uint32)
    seg_lasts = ((keys[1:].take(segments.at) >> np.uint64(shift)) - _ONE).astype(np.uint32)
    del keys
    # Only the last segment can end at 255.255.255.255: the others' end + 1 fits 32 bits.
    new_run = _new_runs(seg_firsts[1:] == seg_lasts[:-1] + np.uint32(1), segments)
    run_ends = _run_ends(new_run)
    masks, scores = _run_values(new_run, segments, ranges, masks_code)
    return _as_array("I", seg_firsts[new_run]), _as_array("I", seg_lasts[run_ends]), masks, scores


def sweep_v6(
    per_feed: Sequence[FamilyEntries], min_score: int, masks_code: str = "Q"
) -> tuple[U128Array, U128Array, array[int], array[int]] | None:
    """As :func:`sweep_v4` for IPv6 entries (128-bit bounds): ``(firsts, lasts, masks, scores)``.

    Bounds are :class:`U128Array`; None when the scores are too many
    distinct values (the caller then sweeps in Python).
    """
    ranges = _ranges(per_feed, min_score)
    if ranges is None:
        return None
    if not ranges.feeds:
        return U128Array(), U128Array(), array(masks_code), array("H")
    first_hi, first_lo = _halves_of(ranges, "firsts")
    last_hi, last_lo = _halves_of(ranges, "lasts")
    end_lo = last_lo + _ONE
    carry = end_lo == 0
    end_hi = last_hi + carry
    carry &= end_hi == 0  # past ffff:...:ffff
    hi = np.concatenate([first_hi, end_hi])
    lo = np.concatenate([first_lo, end_lo])
    beyond = np.concatenate([np.zeros(len(first_hi), dtype=np.bool_), carry])
    order = np.lexsort((lo, hi, beyond))
    hi, lo, beyond = hi.take(order), lo.take(order), beyond.take(order)
    payload = np.concatenate([ranges.classes << _ONE, (ranges.classes << _ONE) | _ONE]).view(np.int64)
    last_at_bound = np.empty(len(hi), dtype=np.bool_)
    np.not_equal(hi[1:], hi[:-1], out=last_at_bound[:-1])
    last_at_bound[:-1] |= lo[1:] != lo[:-1]
    last_at_bound[:-1] |= beyond[1:] != beyond[:-1]
    last_at_bound[-1] = True
    segments = _segments(payload.take(order), last_at_bound, ranges, _MASK_DTYPES[masks_code])
    at = segments.at
    seg_first_hi, seg_first_lo = hi.take(at), lo.take(at)
    # A segment ends before the next bound (which may be the carry, 2**128: hi and lo are then 0).
    next_hi, next_lo = hi[1:].take(at), lo[1:].take(at)
    borrow = next_lo == 0
    seg_last_lo = next_lo - _ONE
    seg_last_hi = next_hi - borrow
    adjacent = (seg_first_hi[1:] == next_hi[:-1]) & (seg_first_lo[1:] == next_lo[:-1])
    new_run = _new_runs(adjacent, segments)
    run_ends = _run_ends(new_run)
    masks, scores = _run_values(new_run, segments, ranges, masks_code)
    return (
        U128Array(_as_array("Q", seg_first_hi[new_run]), _as_array("Q", seg_first_lo[new_run])),
        U128Array(_as_array("Q", seg_last_hi[run_ends]), _as_array("Q", seg_last_lo[run_ends])),
        masks,
        scores,
    )


def _ranges(per_feed: Sequence[FamilyEntries], min_score: int) -> _Ranges | None:
    """The entries kept (``0 < score < min_score`` left out) and their classes; None past the score limit."""
    feeds: list[tuple[int, FamilyEntries, Bools | None]] = []
    scores_parts: list[NDArray[np.int32]] = []
    for bit, entries in enumerate(per_feed):
        if not len(entries):
            continue
        scores = np.asarray(entries.scores, dtype=np.int32)
        keep: Bools | None = None
        if min_score > 1:
            keep = (scores == 0) | (scores >= min(min_score, 1 << 16))
            if keep.all():
                keep = None
            else:
                scores = scores[keep]
        if len(scores):
            feeds.append((bit, entries, keep))
            scores_parts.append(scores)
    # Scores are 16-bit: counting finds the distinct ones (numpy's unique sorts).
    seen = np.zeros(1 << 16, dtype=np.bool_)
    for scores in scores_parts:
        seen[np.flatnonzero(np.bincount(scores))] = True
    distinct = np.flatnonzero(seen)
    if len(distinct) > MAX_SCORE_PASSES:
        return None
    rank_of_score = np.zeros(1 << 16, dtype=np.uint64)
    rank_of_score[distinct] = np.arange(len(distinct), dtype=np.uint64)
    parts = []
    for pos, scores in enumerate(scores_parts):
        part = rank_of_score.take(scores) if len(distinct) > 1 else np.zeros(len(scores), dtype=np.uint64)
        if pos:
            part += np.uint64(pos * len(distinct))
        parts.append(part)
    classes = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    return _Ranges(feeds, distinct, classes)


def _kept(values: NDArray[_G], keep: Bools | None) -> NDArray[_G]:
    return values if keep is None else values[keep]


def _halves_of(ranges: _Ranges, side: str) -> tuple[U64, U64]:
    """High and low 64-bit halves of the kept entries' ``firsts`` or ``lasts`` (Python ints)."""
    his: list[U64] = []
    los: list[U64] = []
    for _, entries, keep in ranges.feeds:
        values: Sequence[int] = getattr(entries, side)
        his.append(_kept(np.fromiter((v >> 64 for v in values), np.uint64, len(values)), keep))
        los.append(_kept(np.fromiter((v & LOW for v in values), np.uint64, len(values)), keep))
    return np.concatenate(his), np.concatenate(los)


def _segments(payload: I64, last_at_bound: Bools, ranges: _Ranges, mask_dtype: type) -> _Segments:
    """The covered segments of the events sorted by bound (their payloads, and which end a bound)."""
    count = ranges.class_count
    steps = np.ones(2 * count, dtype=np.int32 if len(payload) < 2**31 else np.int64)
    steps[1::2] = -1
    covering = np.cumsum(steps.take(payload))
    last_at_bound &= covering > 0
    at = np.flatnonzero(last_at_bound)
    bits = int(covering.take(at).max()).bit_length()
    del covering
    feeds, distinct = ranges.feeds, ranges.distinct
    masks: NDArray[np.unsignedinteger[Any]] | None = None
    if len(feeds) > 1:
        masks = np.zeros(len(at), dtype=mask_dtype)
        field = np.uint64((1 << bits) - 1)
        per_word = 64 // bits
        feed_of_class = np.arange(count) // len(distinct)
        for low in range(0, len(feeds), per_word):
            high = min(len(feeds), low + per_word)
            packed = _packed_counts(payload, at, feed_of_class - low, high - low, bits)
            for pos in range(low, high):
                covered = ((packed >> np.uint64(bits * (pos - low))) & field) != 0
                masks |= covered.astype(mask_dtype) << mask_dtype(feeds[pos][0])
    scores = None
    if len(distinct) > 1:
        per_word = _EXACT_BITS // bits
        rank_of_class = np.arange(count) % len(distinct)
        for low in range(0, len(distinct), per_word):
            high = min(len(distinct), low + per_word)
            packed = _packed_counts(payload, at, rank_of_class - low, high - low, bits)
            # The biased exponent of a non-zero word is its highest bit + 1023; 0 for 0.
            exponent = (packed.astype(np.float64).view(np.uint64) >> _MANTISSA_BITS).view(np.int64)
            score_of_exponent = np.zeros(_FLOAT_BIAS + _EXACT_BITS, dtype=np.uint16)
            top_bits = np.arange(bits * (high - low))
            score_of_exponent[_FLOAT_BIAS + top_bits] = distinct[low + top_bits // bits]
            best = score_of_exponent.take(exponent)
            # Ascending words: a higher one's score, where it has any, beats a lower one's.
            scores = best if scores is None else np.maximum(scores, best, out=scores)
    return _Segments(at, masks, scores)


def _packed_counts(payload: I64, at: I64, field_of_class: I64, fields: int, bits: int) -> U64:
    """Per segment opened at ``at``: the counts of covering ranges per field, ``bits`` each, in one word.

    Field ``f`` (``0 <= f < fields``) counts the ranges whose class has
    ``field_of_class == f``; other classes are not counted. The running sum
    wraps modulo 2**64 between bounds; at a segment's opening event every
    count is exact and below ``2**bits``, so the word is exact.
    """
    counted = (field_of_class >= 0) & (field_of_class < fields)
    offset = (bits * np.clip(field_of_class, 0, fields - 1)).astype(np.uint64)
    value = np.left_shift(_ONE, offset) * counted
    steps = np.empty(2 * len(field_of_class), dtype=np.uint64)
    steps[0::2] = value
    np.subtract(np.uint64(0), value, out=steps[1::2])
    running = steps.take(payload)
    np.cumsum(running, out=running)
    return running.take(at)


def _new_runs(adjacent: Bools, segments: _Segments) -> Bools:
    """Which segments start a run: not adjacent to the previous one, or another mask or score."""
    new_run = np.empty(len(adjacent) + 1, dtype=np.bool_)
    new_run[0] = True
    np.logical_not(adjacent, out=new_run[1:])
    for values in (segments.masks, segments.scores):
        if values is not None:
            new_run[1:] |= values[1:] != values[:-1]
    return new_run


def _run_ends(new_run: Bools) -> Bools:
    run_ends = np.empty_like(new_run)
    run_ends[:-1] = new_run[1:]
    run_ends[-1] = True
    return run_ends


def _run_values(
    new_run: Bools, segments: _Segments, ranges: _Ranges, masks_code: str
) -> tuple[array[int], array[int]]:
    """The masks and scores of the runs."""
    runs = int(np.count_nonzero(new_run))
    mask_dtype = _MASK_DTYPES[masks_code]
    if segments.masks is not None:
        masks = segments.masks[new_run]
    else:
        masks = np.full(runs, 1 << ranges.feeds[0][0], dtype=mask_dtype)
    if segments.scores is not None:
        scores = segments.scores[new_run]
    else:
        scores = np.full(runs, ranges.distinct[0], dtype=np.uint16)
    return _as_array(masks_code, masks), _as_array("H", scores)


def _as_array(code: str, values: NDArray[np.generic]) -> array[int]:
    out = array(code)
    out.frombytes(np.ascontiguousarray(values).data.cast("B"))
    return out
