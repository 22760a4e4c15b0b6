"""The version an API process serves, swapped whole with one assignment.

:class:`Served` bundles a :class:`~blocklist.snapshot.Version` with what the
hot path needs precomputed (the index arrays, a table narrowing each IPv4
search to one /16, the response header lists), so a request reads
``holder.served`` once and sees one consistent version.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from blocklist.decision import ControlView
from blocklist.slots import SLOT_SHIFT, v4_slots
from blocklist.snapshot import Version
from blocklist.u128 import U128Array

__all__ = ["SLOT_SHIFT", "Served", "VersionHolder", "v4_slots"]

JSON_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-type", b"application/json"),
    (b"x-content-type-options", b"nosniff"),
)
#: Up to this many IPv6 ranges, the hot path searches Python ints (see ``Served.v6_small``).
SMALL_V6 = 4096
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
    #: IPv6 bounds as 64-bit halves (``array('Q')``): starts' high and low, ends' high and low.
    v6_first_hi: Sequence[int]
    v6_first_lo: Sequence[int]
    v6_last_hi: Sequence[int]
    v6_last_lo: Sequence[int]
    #: As ``v4_slots``, by the top 16 bits of an IPv6 address.
    v6_slots: Sequence[int]
    #: Up to :data:`SMALL_V6` IPv6 ranges, also their bounds as Python ints (at
    #: most ~0.4 MiB): one plain bisect is then faster than the halves' steps.
    v6_small: tuple[list[int], list[int]] | None
    blocked_headers: list[tuple[bytes, bytes]]
    allowed_headers: list[tuple[bytes, bytes]]

    @classmethod
    def of(cls, version: Version, cache: bytes) -> Served:
        """Precompute the hot-path view of ``version``; ``cache`` is the Cache-Control value."""
        number = str(version.number).encode()

        def headers(body: bytes) -> list[tuple[bytes, bytes]]:
            return answer_headers(body, number, cache)

        index = version.index
        v6_firsts, v6_lasts = index.v6.firsts, index.v6.lasts
        # Compiled and decoded indexes always hold IPv6 bounds as halves.
        assert isinstance(v6_firsts, U128Array)
        assert isinstance(v6_lasts, U128Array)
        return cls(
            version,
            index.v4.firsts,
            index.v4.lasts,
            index.v4.slots,
            v6_firsts.hi,
            v6_firsts.lo,
            v6_lasts.hi,
            v6_lasts.lo,
            index.v6.slots,
            (list(v6_firsts), list(v6_lasts)) if len(v6_firsts) <= SMALL_V6 else None,
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
