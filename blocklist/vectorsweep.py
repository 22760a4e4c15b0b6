"""The IPv4 compile, vectorised with numpy: the same disjoint ranges as the
pure-Python sweep of :mod:`blocklist.index`, in C loops.

Boundaries are every range start and every address after a range end,
sorted and made unique; the segments between consecutive boundaries are
what a range can cover. Per feed, a range adds +1 at its start boundary and
-1 at its end one, and a cumulative sum gives how many of the feed's ranges
cover each segment: the feed's bit of the mask. The score of a segment is
the highest score whose ranges cover it, one pass per distinct score (feeds
have a handful: ipsum's counts, or none). Segments no range covers are
dropped, and neighbours with the same mask and score are joined, exactly as
the Python sweep does. IPv6 bounds (128-bit) stay on the Python path.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from blocklist.feedparsers import FamilyEntries

#: Past this many distinct scores, one pass per score costs more than the Python sweep saves.
MAX_SCORE_PASSES = 64

U64 = NDArray[np.uint64]
_MASK_DTYPES = {"B": np.uint8, "H": np.uint16, "I": np.uint32, "Q": np.uint64}


def sweep_v4(
    per_feed: Sequence[FamilyEntries], min_score: int, masks_code: str = "Q"
) -> tuple[array[int], ...] | None:
    """``(firsts, lasts, masks, scores)`` arrays of the merged IPv4 ranges (feed i is bit i).

    Masks are ``array(masks_code)``: ``B``, ``H``, ``I`` or ``Q``, wide enough for the feeds.
    Entries with ``0 < score < min_score`` are left out. None when the
    scores are too many distinct values for this method (the caller then
    sweeps in Python). O(n log n) for the sort, O(n) per feed and score.
    """
    firsts_parts: list[U64] = []
    lasts_parts: list[U64] = []
    bits_parts: list[NDArray[np.int64]] = []
    scores_parts: list[NDArray[np.int64]] = []
    for bit, entries in enumerate(per_feed):
        if not len(entries):
            continue
        scores = np.asarray(entries.scores, dtype=np.int64)
        keep = ~((scores > 0) & (scores < min_score))
        firsts_parts.append(np.asarray(entries.firsts, dtype=np.uint64)[keep])
        lasts_parts.append(np.asarray(entries.lasts, dtype=np.uint64)[keep])
        scores_parts.append(scores[keep])
        bits_parts.append(np.full(int(keep.sum()), bit, dtype=np.int64))
    if not firsts_parts or not sum(len(p) for p in firsts_parts):
        return array("I"), array("I"), array(masks_code), array("H")
    firsts = np.concatenate(firsts_parts)
    ends = np.concatenate(lasts_parts) + np.uint64(1)
    bits = np.concatenate(bits_parts)
    scores = np.concatenate(scores_parts)
    # Scores are 16-bit and bits below 64: counting finds the distinct ones
    # (numpy's hash-based unique is far slower on millions of values).
    distinct_scores = np.flatnonzero(np.bincount(scores))
    if len(distinct_scores) > MAX_SCORE_PASSES:
        return None
    # Every boundary, sorted and unique, and each range's start and end
    # position among them, from one sort (no binary searches).
    bounds = np.concatenate([firsts, ends])
    order = np.argsort(bounds)
    ordered = bounds[order]
    fresh = np.empty(len(ordered), dtype=np.bool_)
    fresh[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=fresh[1:])
    points = ordered[fresh]
    rank = np.empty(len(bounds), dtype=np.int32 if len(bounds) < 2**31 else np.int64)
    rank[order] = np.cumsum(fresh, dtype=rank.dtype) - 1
    starts_at, ends_at = rank[: len(firsts)], rank[len(firsts) :]
    size = len(points)

    def covered(selected: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """Per segment: is it covered by a selected range?"""
        delta = np.bincount(starts_at[selected], minlength=size) - np.bincount(
            ends_at[selected], minlength=size
        )
        result: NDArray[np.bool_] = np.cumsum(delta)[:-1] > 0
        return result

    masks = np.zeros(size - 1, dtype=np.uint64)
    for feed_bit in np.flatnonzero(np.bincount(bits)):
        masks |= covered(bits == feed_bit).astype(np.uint64) << np.uint64(feed_bit)
    best = np.zeros(size - 1, dtype=np.int64)
    for score in distinct_scores:  # ascending: a higher score overwrites a lower one
        best[covered(scores == score)] = score
    active = masks != 0
    seg_firsts = points[:-1][active]
    seg_lasts = points[1:][active] - np.uint64(1)
    seg_masks = masks[active]
    seg_scores = best[active]
    new_run = np.ones(len(seg_firsts), dtype=np.bool_)
    new_run[1:] = (
        (seg_firsts[1:] != seg_lasts[:-1] + np.uint64(1))
        | (seg_masks[1:] != seg_masks[:-1])
        | (seg_scores[1:] != seg_scores[:-1])
    )
    run_starts = np.flatnonzero(new_run)
    run_ends = np.append(run_starts[1:] - 1, len(seg_firsts) - 1)
    return (
        _as_array("I", seg_firsts[run_starts].astype(np.uint32)),
        _as_array("I", seg_lasts[run_ends].astype(np.uint32)),
        _as_array(masks_code, seg_masks[run_starts].astype(_MASK_DTYPES[masks_code])),
        _as_array("H", seg_scores[run_starts].astype(np.uint16)),
    )


def _as_array(code: str, values: NDArray[np.generic]) -> array[int]:
    out = array(code)
    out.frombytes(values.tobytes())
    return out
