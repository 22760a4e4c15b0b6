"""Reading the live snapshot from Redis (fakeredis): whole, or in pieces for a large one."""

from __future__ import annotations

import asyncio

import fakeredis
import pytest

from blocklist import redisclient
from blocklist import rediskeys as keys
from blocklist.redisclient import load_live_version, read_snapshot
from blocklist.snapshot import encode_version
from tests.versions import make_version


def read(data: bytes | None) -> tuple[bytes | None, object]:
    async def scenario() -> tuple[bytes | None, object]:
        client = fakeredis.FakeAsyncRedis()
        try:
            if data is not None:
                await client.set(keys.SNAPSHOT, data)
            raw = await read_snapshot(client)
            return (bytes(raw) if raw is not None else None), await load_live_version(client)
        finally:
            await client.aclose()

    return asyncio.run(scenario())


@pytest.mark.parametrize("piece", [64, 1000, 1 << 22], ids=["many-pieces", "few-pieces", "one-get"])
def test_a_snapshot_read_in_pieces_is_the_stored_one(monkeypatch: pytest.MonkeyPatch, piece: int) -> None:
    version = make_version(3, *[f"10.{i}.0.0/16" for i in range(200)], "2001:db8::/32", "2a00::/16")
    data = encode_version(version)
    monkeypatch.setattr(redisclient, "READ_PIECE", piece)
    raw, loaded = read(data)
    assert raw == data
    assert loaded == version


def test_no_snapshot_reads_as_none() -> None:
    assert read(None) == (None, None)


def test_a_corrupt_snapshot_loads_as_none(monkeypatch: pytest.MonkeyPatch) -> None:
    data = bytearray(encode_version(make_version(1, *[f"10.{i}.0.0/16" for i in range(50)])))
    data[-1] ^= 1
    monkeypatch.setattr(redisclient, "READ_PIECE", 100)
    raw, loaded = read(bytes(data))
    assert raw == bytes(data)
    assert loaded is None
