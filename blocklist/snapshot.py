"""Published versions and their compact binary serialization.

A :class:`Version` is immutable: a number that only grows, when it was built,
what each feed contributed (counts and source validators) and the compiled
:class:`~blocklist.index.RangeIndex`. :func:`encode_version` /
:func:`decode_version` turn it into one byte string (used for the embedded
state file and, in distributed mode, for the snapshot a replica loads in one
read), protected by a SHA-256 checksum of the index payload.

Layout: ``MAGIC``, a 4-byte big-endian header length, the JSON header, then
the IPv4 arrays (starts, ends as u32; masks as wide as the header's
``mask_code`` says: u8, u16, u32 or u64; scores u16) and the IPv6 arrays
(starts' high halves, starts' low halves, ends' high and low halves as u64;
masks; scores), all little-endian: decoding is a copy per array, no per-range
work. Version 1 files (IPv6 bounds as big-endian 16-byte integers, masks u64)
are still read.
"""

from __future__ import annotations

import hashlib
import json
import sys
from array import array
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from blocklist.errors import SnapshotError
from blocklist.index import FamilyIndex, RangeIndex
from blocklist.u128 import U128Array

if TYPE_CHECKING:
    from collections.abc import Mapping

    from blocklist.history import FeedContent

MAGIC = b"BLOCKLIST-SNAPSHOT\x00v2\n"
MAGIC_V1 = b"BLOCKLIST-SNAPSHOT\x00v1\n"
_SIZES = {"B": 1, "H": 2, "I": 4, "Q": 8}
#: Bytes copied per step when decoding an array (a multiple of every item size).
_COPY_PIECE = 1 << 20
_LITTLE = sys.byteorder == "little"


@dataclass(frozen=True, slots=True)
class FeedInfo:
    """What one feed contributed to a version, and where it came from.

    ``fetched_at`` is when this content was last downloaded (epoch seconds);
    ``data_date`` is the publisher's own date for the data when known (the
    bundled snapshot sets it). Validators (``etag``, ``last_modified``,
    ``sha256``) identify the exact source bytes.
    """

    name: str
    source: str
    format: str
    entries: int
    v4_entries: int
    v6_entries: int
    malformed: int = 0
    etag: str | None = None
    last_modified: str | None = None
    sha256: str | None = None
    fetched_at: float | None = None
    data_date: str | None = None
    bootstrap: bool = False


@dataclass(frozen=True, slots=True)
class Version:
    """One immutable, published blocklist version.

    ``checksum`` is the SHA-256 of the encoded index payload; two versions
    with the same checksum answer every lookup identically. ``min_score``
    is the build setting the index was compiled with.
    """

    number: int
    built_at: float
    feeds: tuple[FeedInfo, ...]
    index: RangeIndex
    checksum: str = field(default="")
    min_score: int = 0
    #: What history records of this version, per feed (set by the updater
    #: for its publisher; never encoded, dropped before serving).
    history: Mapping[str, FeedContent] | None = field(default=None, compare=False, repr=False)

    @property
    def bootstrap(self) -> bool:
        """True if any feed's data is the bundled snapshot, not a sync."""
        return any(f.bootstrap for f in self.feeds)


def index_payload(index: RangeIndex) -> bytes:
    """The index's arrays as bytes, in the documented order."""
    v4, v6 = index.v4, index.v6
    code = _mask_code(index)
    firsts6, lasts6 = v6.firsts, v6.lasts
    assert isinstance(firsts6, U128Array)
    assert isinstance(lasts6, U128Array)
    parts = [
        _le(array("I", v4.firsts)),
        _le(array("I", v4.lasts)),
        _le(_as(code, v4.masks)),
        _le(v4.scores),
        _le(firsts6.hi),
        _le(firsts6.lo),
        _le(lasts6.hi),
        _le(lasts6.lo),
        _le(_as(code, v6.masks)),
        _le(v6.scores),
    ]
    return b"".join(parts)


def _mask_code(index: RangeIndex) -> str:
    """The typecode masks are encoded with: the wider of the two families'."""
    return max(index.v4.masks.typecode, index.v6.masks.typecode, key=_SIZES.__getitem__)


def _as(code: str, values: array[int]) -> array[int]:
    return values if values.typecode == code else array(code, values)


def checksum_of(index: RangeIndex) -> str:
    """SHA-256 hex digest of the index payload."""
    return hashlib.sha256(index_payload(index)).hexdigest()


def encode_version(version: Version) -> bytes:
    """Serialize a version to bytes; the inverse of :func:`decode_version`."""
    payload = index_payload(version.index)
    header = {
        "number": version.number,
        "built_at": version.built_at,
        "feeds": [asdict(f) for f in version.feeds],
        "feed_names": list(version.index.feed_names),
        "v4_ranges": len(version.index.v4),
        "v6_ranges": len(version.index.v6),
        "checksum": hashlib.sha256(payload).hexdigest(),
        "min_score": version.min_score,
        "mask_code": _mask_code(version.index),
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    return MAGIC + len(head).to_bytes(4, "big") + head + payload


def decode_header(data: bytes | bytearray) -> dict[str, Any]:
    """Read only the JSON header of an encoded version (cheap)."""
    if not data.startswith((MAGIC, MAGIC_V1)) or len(data) < len(MAGIC) + 4:
        raise SnapshotError("not a blocklist snapshot (bad magic)")
    start = len(MAGIC) + 4
    size = int.from_bytes(data[len(MAGIC) : start], "big")
    try:
        header = json.loads(data[start : start + size])
    except ValueError as exc:
        raise SnapshotError(f"corrupt snapshot header: {exc}") from None
    if not isinstance(header, dict):
        raise SnapshotError("corrupt snapshot header: not an object")
    header["_payload_offset"] = start + size
    header["_format"] = 1 if data.startswith(MAGIC_V1) else 2
    return header


def decode_version(data: bytes | bytearray) -> Version:
    """Rebuild a version from :func:`encode_version` output.

    Raises :class:`SnapshotError` if the data is truncated, corrupt or fails
    its checksum. Cost: O(ranges), a few milliseconds for ~100k ranges.
    """
    header = decode_header(data)
    payload = memoryview(data)[header["_payload_offset"] :]
    try:
        n4, n6 = int(header["v4_ranges"]), int(header["v6_ranges"])
        old = header["_format"] == 1
        code = "Q" if old else str(header["mask_code"])
        if code not in _SIZES:
            raise SnapshotError(f"corrupt snapshot: mask code {code!r}")
        per_range = 4 + 4 + _SIZES[code] + 2, 16 + 16 + _SIZES[code] + 2
        expected = n4 * per_range[0] + n6 * per_range[1]
        if len(payload) != expected:
            raise SnapshotError(f"snapshot payload is {len(payload)} bytes, expected {expected}")
        if hashlib.sha256(payload).hexdigest() != header["checksum"]:
            raise SnapshotError("snapshot checksum mismatch")
        reader = _Reader(payload)
        v4 = FamilyIndex(
            reader.array("I", n4), reader.array("I", n4), reader.array(code, n4), reader.array("H", n4)
        )
        if old:
            firsts6, lasts6 = reader.ints128(n6), reader.ints128(n6)
        else:
            firsts6 = U128Array(reader.array("Q", n6), reader.array("Q", n6))
            lasts6 = U128Array(reader.array("Q", n6), reader.array("Q", n6))
        v6 = FamilyIndex(firsts6, lasts6, reader.array(code, n6), reader.array("H", n6))
        feeds = tuple(FeedInfo(**f) for f in header["feeds"])
        index = RangeIndex(tuple(header["feed_names"]), v4, v6)
        return Version(
            int(header["number"]),
            float(header["built_at"]),
            feeds,
            index,
            header["checksum"],
            int(header.get("min_score", 0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"corrupt snapshot: {exc!r}") from None


def _le(values: array[int]) -> bytes:
    if _LITTLE:
        return values.tobytes()
    swapped = array(values.typecode, values)
    swapped.byteswap()
    return swapped.tobytes()


class _Reader:
    def __init__(self, data: memoryview) -> None:
        self._data = data
        self._pos = 0

    def _take(self, size: int) -> memoryview:
        chunk = self._data[self._pos : self._pos + size]
        self._pos += size
        return chunk

    def array(self, typecode: str, count: int) -> array[int]:
        values = array(typecode)
        chunk = self._take(values.itemsize * count)
        # In pieces: a thread decoding a large version lets the event loop
        # run between them (one copy of 40 MB would hold it for ~10 ms).
        for start in range(0, len(chunk), _COPY_PIECE):
            values.frombytes(chunk[start : start + _COPY_PIECE])
        if not _LITTLE:
            values.byteswap()
        return values

    def ints128(self, count: int) -> U128Array:
        """Version 1's big-endian 16-byte integers."""
        chunk = bytes(self._take(16 * count))
        return U128Array.of([int.from_bytes(chunk[i : i + 16], "big") for i in range(0, 16 * count, 16)])
