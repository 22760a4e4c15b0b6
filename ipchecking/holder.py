"""The version an API process serves, swapped whole with one assignment.

:class:`Served` bundles a :class:`~blocklist.snapshot.Version` with what the
hot path needs precomputed (the index arrays, the response header lists), so
a request reads ``holder.served`` once and sees one consistent version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
    v6_firsts: Sequence[int]
    v6_lasts: Sequence[int]
    blocked_headers: list[tuple[bytes, bytes]]
    allowed_headers: list[tuple[bytes, bytes]]

    @classmethod
    def of(cls, version: Version) -> Served:
        """Precompute the hot-path view of ``version``."""
        number = str(version.number).encode()

        def headers(body: bytes) -> list[tuple[bytes, bytes]]:
            return [
                *JSON_HEADERS,
                (b"content-length", str(len(body)).encode()),
                (b"x-blocklist-version", number),
            ]

        index = version.index
        return cls(
            version,
            index.v4.firsts,
            index.v4.lasts,
            index.v6.firsts,
            index.v6.lasts,
            headers(BLOCKED_BODY),
            headers(ALLOWED_BODY),
        )


class VersionHolder:
    """Holds the served version; ``served`` is None until one is loaded."""

    __slots__ = ("served",)

    def __init__(self) -> None:
        self.served: Served | None = None

    @property
    def version(self) -> Version | None:
        """The served version, if any."""
        served = self.served
        return served.version if served else None

    def swap(self, version: Version) -> None:
        """Serve ``version`` from now on (one reference assignment)."""
        self.served = Served.of(version)
