"""Live lookups coalesced into one transaction, against a real redis-server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from blocklist.addresses import parse_address
from blocklist.rediskeys import member_contains
from blocklistupdater.redispublish import RedisPublisher
from ipchecking.livebatch import LookupBatcher
from tests.redisserver import redis_server
from tests.versions import make_version

pytestmark = pytest.mark.integration

LISTED = ("1.2.3.4", "10.0.0.0/8", "2001:db8::/32")
PROBES = {"1.2.3.4": True, "1.2.3.5": False, "10.200.1.1": True, "11.0.0.0": False,
          "2001:db8::42": True, "2001:db9::": False}  # fmt: skip


async def blocked(batcher: LookupBatcher, address: str) -> tuple[bool, int | None]:
    family, value = parse_address(address)
    members, number = await batcher.lookup(family, value)
    return bool(members) and member_contains(members[0], value), number


def exec_calls(info: dict[str, dict[str, int]]) -> int:
    return int(info.get("cmdstat_exec", {}).get("calls", 0))


def test_concurrent_lookups_share_one_transaction_and_answer_right(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as server:

        async def scenario() -> None:
            client = Redis.from_url(server.url)
            await RedisPublisher(client).publish(make_version(7, *LISTED))
            batcher = LookupBatcher(lambda: client, orphan_deadline=1.0)
            before = exec_calls(await client.info("commandstats"))
            addresses = list(PROBES) * 10
            answers = await asyncio.gather(*(blocked(batcher, a) for a in addresses))
            after = exec_calls(await client.info("commandstats"))
            assert answers == [(PROBES[a], 7) for a in addresses]
            assert after - before == 1, "60 concurrent lookups, one MULTI/EXEC"
            # Sequential lookups each lead their own batch.
            assert await blocked(batcher, "10.0.0.1") == (True, 7)
            assert await blocked(batcher, "9.9.9.9") == (False, 7)
            await client.aclose()

        asyncio.run(scenario())


def test_followers_are_answered_when_the_leader_gives_up_before_sending(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as server:

        async def scenario() -> None:
            client = Redis.from_url(server.url)
            await RedisPublisher(client).publish(make_version(3, *LISTED))
            batcher = LookupBatcher(lambda: client, orphan_deadline=1.0)
            leader = asyncio.create_task(blocked(batcher, "1.2.3.4"))
            await asyncio.sleep(0)  # the leader is now collecting its batch
            followers = [asyncio.create_task(blocked(batcher, a)) for a in PROBES]
            leader.cancel()
            assert await asyncio.gather(*followers) == [(v, 3) for v in PROBES.values()]
            with pytest.raises(asyncio.CancelledError):
                await leader
            await batcher.aclose()
            await client.aclose()

        asyncio.run(scenario())


def test_a_failed_batch_fails_every_lookup_with_the_redis_error(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as server:
        url = server.url

    async def scenario() -> None:
        client = Redis.from_url(url, socket_connect_timeout=0.5)  # the server is gone
        batcher = LookupBatcher(lambda: client, orphan_deadline=1.0)
        results = await asyncio.gather(*(blocked(batcher, a) for a in PROBES), return_exceptions=True)
        assert all(isinstance(r, RedisConnectionError) for r in results), results
        await client.aclose()

    asyncio.run(scenario())
