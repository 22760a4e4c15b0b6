"""StateStore: round trips, tamper and corruption detection, atomic writes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from blocklist.addresses import parse_address
from blocklist.feedparsers import parse_feed
from blocklist.index import compile_index
from blocklist.snapshot import FeedInfo, Version, checksum_of
from blocklistupdater import statestore
from blocklistupdater.statestore import StateStore, StoredFeed

FEED_BODY = b"# plain\n203.0.113.0/24\n198.51.100.7\n2001:db8::/32\n"


def make_version(number: int = 7) -> Version:
    parsed = parse_feed(FEED_BODY, max_size=1 << 20)
    index = compile_index({"local": (parsed.v4, parsed.v6)})
    info = FeedInfo(
        name="local",
        source="/srv/feed.txt",
        format=str(parsed.format),
        entries=parsed.entries,
        v4_entries=len(parsed.v4),
        v6_entries=len(parsed.v6),
        etag='"e"',
        sha256=hashlib.sha256(FEED_BODY).hexdigest(),
        fetched_at=1_800_000_000.5,
    )
    return Version(number, 1_800_000_001.25, (info,), index, checksum_of(index))


def make_feed(body: bytes = FEED_BODY, name: str = "local") -> StoredFeed:
    return StoredFeed(
        name=name,
        source="https://feeds.test/feed.txt",
        format="plain",
        etag='"e1"',
        last_modified="Sat, 22 Aug 2026 01:00:29 GMT",
        sha256=hashlib.sha256(body).hexdigest(),
        fetched_at=1_800_000_000.0,
        body=body,
    )


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_version_round_trip(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    version = make_version()
    store.save_version(version)
    loaded = store.load_version()
    assert loaded is not None
    assert loaded.number == 7
    assert loaded.built_at == version.built_at
    assert loaded.feeds == version.feeds
    assert loaded.checksum == version.checksum
    for address, expected in [("203.0.113.9", True), ("2001:db8::1", True), ("192.0.2.1", False)]:
        assert loaded.index.contains(*parse_address(address)) is expected


def test_saving_a_version_replaces_the_previous_one(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save_version(make_version(1))
    store.save_version(make_version(2))
    loaded = store.load_version()
    assert loaded is not None
    assert loaded.number == 2


def test_missing_version_file_loads_as_none(tmp_path: Path) -> None:
    assert StateStore(tmp_path / "nowhere").load_version() is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: b"",
        lambda data: b"not a snapshot at all",
        lambda data: data[: len(data) - 5],
        lambda data: data[:-1] + bytes([data[-1] ^ 0x01]),
        lambda data: data[:30] + b"{" + data[31:],
    ],
    ids=["empty", "garbage", "truncated", "payload-bit-flip", "corrupt-header"],
)
def test_corrupt_version_file_loads_as_none(tmp_path: Path, damage) -> None:  # type: ignore[no-untyped-def]
    store = StateStore(tmp_path)
    store.save_version(make_version())
    store.version_path.write_bytes(damage(store.version_path.read_bytes()))
    assert store.load_version() is None


def test_unreadable_version_path_loads_as_none(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.version_path.mkdir()
    assert store.load_version() is None


def test_feed_round_trip(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    feed = make_feed()
    store.save_feed(feed)
    assert store.load_feed("local") == feed


def test_feed_layout_is_body_plus_json_metadata(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save_feed(make_feed())
    assert (tmp_path / "feeds" / "local.body").read_bytes() == FEED_BODY
    meta = json.loads((tmp_path / "feeds" / "local.json").read_text())
    assert "body" not in meta
    assert meta["sha256"] == hashlib.sha256(FEED_BODY).hexdigest()


def test_feeds_are_kept_apart_by_name(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save_feed(make_feed(b"1.2.3.4\n", name="a"))
    store.save_feed(make_feed(b"5.6.7.8\n", name="b"))
    a, b = store.load_feed("a"), store.load_feed("b")
    assert a is not None
    assert b is not None
    assert (a.body, b.body) == (b"1.2.3.4\n", b"5.6.7.8\n")


def test_missing_feed_loads_as_none(tmp_path: Path) -> None:
    assert StateStore(tmp_path).load_feed("local") is None


def test_tampered_feed_body_loads_as_none(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save_feed(make_feed())
    (tmp_path / "feeds" / "local.body").write_bytes(FEED_BODY + b"192.0.2.1\n")
    assert store.load_feed("local") is None


def test_body_without_metadata_loads_as_none(tmp_path: Path) -> None:
    """What a crash between the two renames of a first save leaves behind."""
    store = StateStore(tmp_path)
    store.save_feed(make_feed())
    (tmp_path / "feeds" / "local.json").unlink()
    assert store.load_feed("local") is None


@pytest.mark.parametrize(
    "meta",
    [
        "{not json",
        "[1, 2]",
        '{"name": "local"}',
        '{"unexpected": 1}',
    ],
    ids=["invalid-json", "not-an-object", "missing-keys", "unknown-key"],
)
def test_corrupt_feed_metadata_loads_as_none(tmp_path: Path, meta: str) -> None:
    store = StateStore(tmp_path)
    store.save_feed(make_feed())
    (tmp_path / "feeds" / "local.json").write_text(meta)
    assert store.load_feed("local") is None


def test_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    for number in range(3):
        store.save_version(make_version(number))
        store.save_feed(make_feed(FEED_BODY + b"192.0.2.%d\n" % number))
    assert all_files(tmp_path) == ["feeds/local.body", "feeds/local.json", "version.bin"]


def test_failed_write_keeps_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = StateStore(tmp_path)
    store.save_version(make_version(1))

    def no_rename(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(statestore.os, "replace", no_rename)
    with pytest.raises(OSError, match="No space left"):
        store.save_version(make_version(2))
    monkeypatch.setattr(statestore.os, "replace", os.replace)
    loaded = store.load_version()
    assert loaded is not None
    assert loaded.number == 1
    assert all_files(tmp_path) == ["version.bin"]
