"""History in distributed mode, against real redis-server processes (a primary and a
replica): archives imported by the command, a live publish recorded in the same swap,
answers read by an API replica from the Redis replica, and purging every trace."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from blocklist import rediskeys as keys
from blocklist.history import network_key, parse_moment
from blocklist.settings import Settings
from blocklistupdater.redishistory import purge_redis
from ipchecking.app import create_app
from tests.archives import ARCHIVE_FEEDS, ArchiveModel, archive_files, check_point_in_time
from tests.blocklistupdater.support import run_module
from tests.changecheck import check_every_version
from tests.ipchecking.apphelpers import running
from tests.redisserver import RedisServer

pytestmark = pytest.mark.integration


def feeds_spec(shared_data: Path) -> str:
    return ",".join(f"{feed}=spamhaus:{archive_files(shared_data, feed)[-1]}" for feed in ARCHIVE_FEEDS)


def env_for(tmp_path: Path, primary: RedisServer, shared_data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BLOCKLIST_", "REDIS_"))}
    return env | {
        "REDIS_URL": primary.url,
        "BLOCKLIST_FEEDS": feeds_spec(shared_data),
        "BLOCKLIST_STATE_DIR": str(tmp_path / "worker-state"),
        "BLOCKLIST_BOOTSTRAP": "false",
        "BLOCKLIST_HISTORY_RETENTION": "0",
    }


def import_archive(env: dict[str, str], shared_data: Path) -> None:
    for feed in ARCHIVE_FEEDS:
        proc = run_module(env, "import", "--feed", feed, *map(str, archive_files(shared_data, feed)))
        assert proc.returncode == 0, proc.stderr
        assert [line.split()[0] for line in proc.stdout.splitlines()] == ["recorded"] * len(
            archive_files(shared_data, feed)
        )


def test_replicas_answer_history_like_the_archive(
    tmp_path: Path, shared_data: Path, primary_and_replica: tuple[RedisServer, RedisServer]
) -> None:
    primary, replica = primary_and_replica
    env = env_for(tmp_path, primary, shared_data)
    import_archive(env, shared_data)
    once = run_module(env, "--once")
    assert once.returncode == 0, once.stderr
    with redis.Redis.from_url(primary.url) as client:
        live = int(client.hget(keys.META, "number") or 0)
    assert live == 36  # numbered above the 35 imports, in the same sequence
    files = {feed: archive_files(shared_data, feed) for feed in ARCHIVE_FEEDS}
    model = ArchiveModel.load(files)
    rng = random.Random(7)
    addresses = model.sample_addresses(rng, 15)
    settings = Settings(
        redis_url=primary.url,
        redis_read_url=replica.url,
        feeds=feeds_spec(shared_data),
        bootstrap=False,
        history_retention="0",
    )

    async def check() -> None:
        async with running(create_app(settings)) as client:
            listing = (await client.get("/v1/versions")).json()
            assert listing["total"] == 36
            assert listing["versions"][0]["kind"] == "sync"
            await check_point_in_time(client, model, addresses, rng.sample(model.sample_moments(), 25))
            # Now: the live version (the newest files), with labels and the archive's listed_since.
            for address in addresses:
                body = (await client.get(f"/v1/ip/{address}")).json()
                check_ip = (await client.get(f"/check_ip/{address}")).json()
                assert body["blocked"] == check_ip["blocked"]
                expected = model.listed(address, time.time())
                assert {m["feed"] for m in body["matches"]} == set(expected)
                for match in body["matches"]:
                    assert parse_moment(match["listed_since"]) <= parse_moment("2025-01-17")
            # The change feed from the replica: since any version, applied to it, gives the latest.
            assert await check_every_version(client, model) == 36

    asyncio.run(check())
    again = run_module(env, "import", "--feed", "drop", *map(str, files["drop"]))
    assert again.returncode == 0
    assert {line.split()[0] for line in again.stdout.splitlines()} == {"unchanged"}


def test_a_purge_leaves_no_trace_in_any_redis_key(
    tmp_path: Path, shared_data: Path, primary_and_replica: tuple[RedisServer, RedisServer]
) -> None:
    primary, _ = primary_and_replica
    env = env_for(tmp_path, primary, shared_data)
    import_archive(env, shared_data)
    model = ArchiveModel.load({"drop": archive_files(shared_data, "drop")})
    contents = model.contents["drop"]
    gone = sorted({n for c in contents[:16] for n in c} - set(contents[16]) - set(contents[17]), key=str)
    purged = gone[0]
    needles = [
        str(purged).encode(),
        network_key(purged.version, purged.prefixlen, int(purged.network_address)),
    ]
    assert any(n in blob for blob in all_values(primary) for n in needles)
    horizon = parse_moment("2021-01-01")
    settings = Settings(
        redis_url=primary.url,
        feeds=feeds_spec(shared_data),
        bootstrap=False,
        history_retention=f"{round(time.time() - horizon)}s",
    )

    async def purge() -> int:
        client = redis.asyncio.Redis.from_url(primary.url)
        try:
            return await purge_redis(client, settings, time.time())
        finally:
            await client.aclose()

    assert asyncio.run(purge()) > 0
    for blob in all_values(primary):
        for needle in needles:
            assert needle not in blob
    with redis.Redis.from_url(primary.url) as client:
        numbers = sorted(int(n) for n in client.hkeys(keys.TIMELINE_VERSIONS))
    assert 1 not in numbers
    assert len(numbers) < 35


def all_values(server: RedisServer) -> Iterator[bytes]:
    """Every key name and every byte of every value in the server."""
    with redis.Redis.from_url(server.url) as client:
        for key in client.scan_iter(count=1000):
            yield key
            kind = client.type(key)
            if kind == b"string":
                yield client.get(key) or b""
            elif kind == b"hash":
                for field, value in client.hgetall(key).items():
                    yield field + b"\0" + value
            elif kind == b"zset":
                yield b"\0".join(m for m, _ in client.zrange(key, 0, -1, withscores=True))
            elif kind == b"set":
                yield b"\0".join(client.smembers(key))
            elif kind == b"list":
                yield b"\0".join(client.lrange(key, 0, -1))
