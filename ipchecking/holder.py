"""The version an API process serves, swapped whole with one assignment.

:class:`Served` bundles a :class:`~blocklist.snapshot.Version` with what the
hot path needs precomputed (the index arrays, a table narrowing each IPv4
search to one /16, the response header lists), so a request reads
``holder.served`` once and sees one consistent version.
"""

from __future__ import annotations

import asyncio
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

from blocklist.decision import ControlView
from blocklist.snapshot import Version

JSON_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-type", b"application/json"),
    (b"x-content-type-options", b"nosniff"),
)
BLOCKED_BODY = b'{"blocked": true}'
ALLOWED_BODY = b'{"blocked": false}'


@dataclass(frozen=True, slots=True)
class Served:
    """A version plus its precomputed hot-path data."""

    version: Version
    v4_firsts: Sequence[int]
    v4_lasts: Sequence[int]
    #: ``v4_slots[b]``: how many IPv4 ranges start below ``b << 16``, for b in 0..65536.
    v4_slots: Sequence[int]
    v6_firsts: Sequence[int]
    v6_lasts: Sequence[int]
    blocked_headers: list[tuple[bytes, bytes]]
    allowed_headers: list[tuple[bytes, bytes]]

    @classmethod
    def of(cls, version: Version, cache: bytes) -> Served:
        """Precompute the hot-path view of ``version``; ``cache`` is the Cache-Control value."""
        number = str(version.number).encode()

        def headers(body: bytes) -> list[tuple[bytes, bytes]]:
            return answer_headers(body, number, cache)

        index = version.index
        return cls(
            version,
            index.v4.firsts,
            index.v4.lasts,
            v4_slots(index.v4.firsts),
            index.v6.firsts,
            index.v6.lasts,
            headers(BLOCKED_BODY),
            headers(ALLOWED_BODY),
        )


def cache_control(max_age: int) -> bytes:
    """The Cache-Control value of answers: ``max-age=N``, or ``no-cache`` for 0."""
    return b"max-age=%d" % max_age if max_age > 0 else b"no-cache"


def answer_headers(body: bytes, number: bytes, cache: bytes) -> list[tuple[bytes, bytes]]:
    """Response headers of a 200 answer from version ``number``."""
    return [
        *JSON_HEADERS,
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", cache),
        (b"x-blocklist-version", number),
    ]


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


class VersionHolder:
    """Holds the served version (``served`` is None until one is loaded) and the
    process's view of overrides and reputation (``control``), which lookups
    consult first."""

    __slots__ = ("cache", "control", "served")

    def __init__(self, cache_max_age: int = 300, control: ControlView | None = None) -> None:
        self.served: Served | None = None
        self.cache = cache_control(cache_max_age)
        self.control = control or ControlView()

    @property
    def version(self) -> Version | None:
        """The served version, if any."""
        served = self.served
        return served.version if served else None

    def swap(self, version: Version) -> None:
        """Serve ``version`` from now on (one reference assignment)."""
        self.served = Served.of(version, self.cache)

    async def swap_prepared(self, version: Version) -> None:
        """:meth:`swap`, with the precomputation done in a thread, off the event loop."""
        self.served = await asyncio.to_thread(Served.of, version, self.cache)
