"""Binary snapshots of a version: round trip and rejection of damaged data."""

from __future__ import annotations

import hashlib
import json
from array import array
from pathlib import Path

import pytest

from blocklist.addresses import V4, V6, parse_address, parse_network
from blocklist.errors import SnapshotError
from blocklist.feedparsers import FamilyEntries, parse_feed
from blocklist.index import RangeIndex, compile_index
from blocklist.snapshot import (
    MAGIC,
    MAGIC_V1,
    FeedInfo,
    Version,
    checksum_of,
    decode_header,
    decode_version,
    encode_version,
)


def feed(*texts: tuple[str, int]) -> tuple[FamilyEntries, FamilyEntries]:
    v4, v6 = FamilyEntries(), FamilyEntries()
    for text, score in texts:
        family, first, last = parse_network(text)
        (v4 if family == V4 else v6).append(first, last, score)
    return v4, v6


def small_index() -> RangeIndex:
    return compile_index(
        {
            "ipsum": feed(("1.2.3.4", 7), ("255.255.255.255", 2)),
            "drop": feed(("1.2.3.0/24", 0), ("0.0.0.0/8", 0), ("2001:db8::/32", 0)),
            "dropv6": feed(("2001:db8:1::/48", 0), ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120", 0)),
        }
    )


FEEDS = (
    FeedInfo(
        name="ipsum",
        source="https://example.invalid/ipsum.txt",
        format="ipsum",
        entries=2,
        v4_entries=2,
        v6_entries=0,
        malformed=1,
        etag='"abc"',
        last_modified="Sat, 22 Aug 2026 01:00:00 GMT",
        sha256="0" * 64,
        fetched_at=1_787_000_000.5,
        data_date="2026-08-22",
        bootstrap=True,
    ),
    FeedInfo(name="drop", source="/srv/drop.txt", format="spamhaus", entries=3, v4_entries=2, v6_entries=1),
    FeedInfo(
        name="dropv6", source="file:///srv/v6", format="spamhaus", entries=2, v4_entries=0, v6_entries=2
    ),
)

PROBES = [
    "1.2.3.4",
    "1.2.3.5",
    "1.2.4.0",
    "0.0.0.0",
    "0.255.255.255",
    "255.255.255.255",
    "8.8.8.8",
    "2001:db8::1",
    "2001:db8:1::1",
    "2001:db9::",
    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
]


@pytest.fixture
def version() -> Version:
    return Version(number=42, built_at=1_787_000_123.25, feeds=FEEDS, index=small_index())


def test_round_trip_keeps_lookups_feeds_and_metadata(version: Version) -> None:
    decoded = decode_version(encode_version(version))
    assert decoded.number == 42
    assert decoded.built_at == 1_787_000_123.25
    assert decoded.feeds == FEEDS
    assert decoded.bootstrap is True
    assert decoded.index.feed_names == version.index.feed_names
    assert decoded.index.ranges == version.index.ranges
    for text in PROBES:
        family, value = parse_address(text)
        assert decoded.index.lookup(family, value) == version.index.lookup(family, value), text


def test_round_trip_keeps_every_range_exactly(version: Version) -> None:
    decoded = decode_version(encode_version(version)).index
    for got, want in ((decoded.v4, version.index.v4), (decoded.v6, version.index.v6)):
        assert list(got.firsts) == list(want.firsts)
        assert list(got.lasts) == list(want.lasts)
        assert list(got.masks) == list(want.masks)
        assert list(got.scores) == list(want.scores)


def test_checksum_is_stable_across_round_trips(version: Version) -> None:
    encoded = encode_version(version)
    decoded = decode_version(encoded)
    assert decoded.checksum == checksum_of(version.index)
    assert len(decoded.checksum) == 64
    assert encode_version(decoded) == encoded
    assert checksum_of(decoded.index) == decoded.checksum


def test_equal_indexes_have_equal_checksums_and_different_ones_do_not() -> None:
    assert checksum_of(small_index()) == checksum_of(small_index())
    other = compile_index({"ipsum": feed(("1.2.3.4", 8))})
    assert checksum_of(other) != checksum_of(small_index())


def test_empty_index_round_trips() -> None:
    empty = Version(number=1, built_at=0.0, feeds=(), index=compile_index({}))
    decoded = decode_version(encode_version(empty))
    assert decoded.index.ranges == 0
    assert decoded.feeds == ()
    assert decoded.bootstrap is False
    assert decoded.index.lookup(*parse_address("1.2.3.4")) is None


def test_real_feed_round_trips(shared_data: Path) -> None:
    parsed = {
        "ipsum": parse_feed((shared_data / "ipsum" / "ipsum-2026-08-22.txt").read_bytes(), max_size=1 << 28),
        "dropv6": parse_feed(
            (shared_data / "spamhaus" / "dropv6" / "dropv6-2025-01-15.txt").read_bytes(), max_size=1 << 28
        ),
    }
    index = compile_index({name: (p.v4, p.v6) for name, p in parsed.items()})
    decoded = decode_version(encode_version(Version(7, 1.0, (), index))).index
    assert list(decoded.v4.firsts) == list(index.v4.firsts)
    assert list(decoded.v4.scores) == list(index.v4.scores)
    assert list(decoded.v6.lasts) == list(index.v6.lasts)
    assert decoded.lookup(V6, parsed["dropv6"].v6.firsts[0]) == index.lookup(
        V6, parsed["dropv6"].v6.firsts[0]
    )


def test_header_is_readable_alone(version: Version) -> None:
    header = decode_header(encode_version(version))
    assert header["number"] == 42
    assert header["feed_names"] == ["ipsum", "drop", "dropv6"]
    assert header["v4_ranges"] == len(version.index.v4)
    assert header["v6_ranges"] == len(version.index.v6)
    assert header["checksum"] == checksum_of(version.index)


# --- damaged data ----------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"PK\x03\x04 not a snapshot", id="zip"),
        pytest.param(b"BLOCKLIST-SNAPSHOT\x00v3\n\x00\x00\x00\x02{}", id="future-version"),
        pytest.param(MAGIC, id="magic-only"),
        pytest.param(MAGIC + b"\x00\x00", id="short-length"),
    ],
)
def test_decode_rejects_bad_magic(data: bytes) -> None:
    with pytest.raises(SnapshotError, match="bad magic"):
        decode_version(data)


def test_decode_rejects_every_truncation(version: Version) -> None:
    encoded = encode_version(version)
    for size in range(len(encoded)):
        with pytest.raises(SnapshotError):
            decode_version(encoded[:size])


def test_decode_rejects_truncated_payload_with_its_size(version: Version) -> None:
    encoded = encode_version(version)
    with pytest.raises(SnapshotError, match="payload is"):
        decode_version(encoded[:-1])


def test_decode_rejects_trailing_bytes(version: Version) -> None:
    with pytest.raises(SnapshotError, match="payload is"):
        decode_version(encode_version(version) + b"\x00")


def test_decode_rejects_a_flipped_payload_byte(version: Version) -> None:
    encoded = encode_version(version)
    offset = decode_header(encoded)["_payload_offset"]
    for position in (offset, (offset + len(encoded)) // 2, len(encoded) - 1):
        damaged = bytearray(encoded)
        damaged[position] ^= 0x01
        with pytest.raises(SnapshotError, match="checksum mismatch"):
            decode_version(bytes(damaged))


def test_decode_rejects_a_header_that_is_not_json(version: Version) -> None:
    encoded = bytearray(encode_version(version))
    encoded[len(MAGIC) + 4] = ord("X")
    with pytest.raises(SnapshotError, match="corrupt snapshot header"):
        decode_version(bytes(encoded))


def test_decode_rejects_a_header_that_is_not_an_object() -> None:
    head = b"[1, 2]"
    with pytest.raises(SnapshotError, match="not an object"):
        decode_version(MAGIC + len(head).to_bytes(4, "big") + head)


def _with_header(encoded: bytes, **changes: object) -> bytes:
    header = decode_header(encoded)
    payload = encoded[header.pop("_payload_offset") :]
    header.update(changes)
    head = json.dumps(header).encode()
    return MAGIC + len(head).to_bytes(4, "big") + head + payload


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"v4_ranges": 0}, id="wrong-count"),
        pytest.param({"checksum": "0" * 64}, id="wrong-checksum"),
        pytest.param({"v4_ranges": "many"}, id="count-not-a-number"),
        pytest.param({"feeds": [{"name": "x"}]}, id="incomplete-feed-info"),
        pytest.param({"feeds": [{"nonsense": 1}]}, id="unknown-feed-field"),
        pytest.param({"number": None}, id="number-missing"),
    ],
)
def test_decode_rejects_inconsistent_headers(version: Version, changes: dict[str, object]) -> None:
    with pytest.raises(SnapshotError):
        decode_version(_with_header(encode_version(version), **changes))


def test_decode_rejects_a_header_missing_a_field(version: Version) -> None:
    encoded = encode_version(version)
    header = decode_header(encoded)
    payload = encoded[header.pop("_payload_offset") :]
    del header["feed_names"]
    head = json.dumps(header).encode()
    with pytest.raises(SnapshotError, match="feed_names"):
        decode_version(MAGIC + len(head).to_bytes(4, "big") + head + payload)


def test_unmodified_header_rewrite_still_decodes(version: Version) -> None:
    """Guards the damaged-header tests above: the rewriting itself is harmless."""
    decoded = decode_version(_with_header(encode_version(version)))
    assert decoded.index.lookup(V6, parse_address("2001:db8:1::1")[1]) == version.index.lookup(
        V6, parse_address("2001:db8:1::1")[1]
    )


def _v1_encoding(version: Version) -> bytes:
    """``version`` in the first snapshot format: u64 masks, IPv6 bounds as big-endian 16-byte ints."""
    index = version.index

    def le(code: str, values: object) -> bytes:
        return array(code, values).tobytes()  # type: ignore[arg-type]

    payload = b"".join(
        [
            le("I", index.v4.firsts),
            le("I", index.v4.lasts),
            le("Q", index.v4.masks),
            le("H", index.v4.scores),
            b"".join(v.to_bytes(16, "big") for v in index.v6.firsts),
            b"".join(v.to_bytes(16, "big") for v in index.v6.lasts),
            le("Q", index.v6.masks),
            le("H", index.v6.scores),
        ]
    )
    header = decode_header(encode_version(version))
    for internal in ("_payload_offset", "_format", "mask_code"):
        header.pop(internal)
    header["checksum"] = hashlib.sha256(payload).hexdigest()
    head = json.dumps(header).encode()
    return MAGIC_V1 + len(head).to_bytes(4, "big") + head + payload


def test_first_format_snapshots_still_decode(version: Version) -> None:
    decoded = decode_version(_v1_encoding(version))
    assert decoded.number == version.number
    for family in (V4, V6):
        address = "2001:db8:1::5" if family == V6 else "1.2.3.4"
        assert decoded.index.lookup(*parse_address(address)) == version.index.lookup(*parse_address(address))
    for got, want in ((decoded.index.v4, version.index.v4), (decoded.index.v6, version.index.v6)):
        assert list(got.firsts) == list(want.firsts)
        assert list(got.lasts) == list(want.lasts)
        assert list(got.masks) == list(want.masks)


def test_masks_are_as_narrow_as_the_feeds_allow(version: Version) -> None:
    assert version.index.v4.masks.typecode == "B"
    header = decode_header(encode_version(version))
    assert header["mask_code"] == "B"
    assert decode_version(encode_version(version)).index.v6.masks.typecode == "B"


def test_decode_rejects_an_unknown_mask_width(version: Version) -> None:
    with pytest.raises(SnapshotError, match="mask code"):
        decode_version(_with_header(encode_version(version), mask_code="d"))
