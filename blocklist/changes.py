"""The change feed: what the union of every feed gained and lost between two versions.

History holds networks per feed (:mod:`blocklist.history`). Between an
older version ``N`` and the latest one, each feed's networks at ``N`` are
its networks now, less those added since, plus those removed since (exact
as sets of networks). The union of every feed at each end is merged into
address ranges, and each side is subtracted from the other: what is left
is split into the fewest CIDRs. Pure (no I/O).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from blocklist.addresses import MAX_BITS, V4, V6
from blocklist.aggregate import Range, cidrs, subtract, union

FAMILIES = (V4, V6)


def key_range(key: bytes) -> tuple[int, Range]:
    """``(family, (first, last))`` of a history network key."""
    family, prefix = key[0], key[1]
    start = int.from_bytes(key[2:], "big")
    return family, (start, start + (1 << (MAX_BITS[family] - prefix)) - 1)


def covered(keys: Iterable[bytes]) -> dict[int, list[Range]]:
    """The merged address ranges the networks ``keys`` cover, per family."""
    per: dict[int, list[Range]] = {f: [] for f in FAMILIES}
    for key in keys:
        family, span = key_range(key)
        per[family].append(span)
    return {f: list(union(sorted(spans))) for f, spans in per.items()}


@dataclass(frozen=True, slots=True)
class FeedChange:
    """One feed: its networks now, and those added and removed since the older version."""

    now: list[bytes]
    added: list[bytes]
    removed: list[bytes]

    def then(self) -> set[bytes]:
        """Its networks at the older version."""
        return (set(self.now) - set(self.added)) | set(self.removed)


def changes(feeds: Mapping[str, FeedChange]) -> dict[str, dict[int, list[tuple[int, int]]]]:
    """``{"added": {family: CIDRs}, "removed": {...}}`` of the union of ``feeds``.

    CIDRs are ``(network, prefix)`` pairs in address order. An address
    listed at both ends (by any feed) is in neither list, whichever feed
    listed it.
    """
    now = covered(k for change in feeds.values() for k in change.now)
    then = covered(k for change in feeds.values() for k in change.then())
    return {
        "added": {f: list(cidrs(subtract(now[f], then[f]), MAX_BITS[f])) for f in FAMILIES},
        "removed": {f: list(cidrs(subtract(then[f], now[f]), MAX_BITS[f])) for f in FAMILIES},
    }
