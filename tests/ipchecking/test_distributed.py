"""Distributed local mode against real redis-server processes: the API reads
a replica, follows announcements, and keeps serving when Redis goes away."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from blocklist import rediskeys as keys
from blocklist.settings import Settings
from blocklistupdater.redispublish import RedisPublisher
from ipchecking.app import create_app
from tests.ipchecking.apphelpers import running
from tests.redisserver import free_port, redis_server
from tests.versions import make_version

pytestmark = pytest.mark.integration


async def until(predicate: Callable[[], object], limit: float = 10.0) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not await predicate():  # type: ignore[misc]
        assert loop.time() - start < limit, "condition not reached in time"
        await asyncio.sleep(0.01)
    return loop.time() - start


def test_replica_serves_published_versions_and_survives_redis_loss(tmp_path: Path) -> None:
    with (
        redis_server(tmp_path / "primary") as primary,
        redis_server(tmp_path / "replica", replica_of=primary) as replica,
    ):

        async def scenario() -> None:
            writer = Redis.from_url(primary.url)
            publisher = RedisPublisher(writer)
            await publisher.publish(make_version(1, "1.2.3.4", "10.0.0.0/8"))
            settings = Settings(
                redis_url=primary.url,
                redis_read_url=replica.url,
                version_poll_interval=0.5,
                redis_timeout=0.5,
            )
            async with running(create_app(settings)) as client:

                async def answer(address: str) -> object:
                    return (await client.get(f"/check_ip/{address}")).json()

                async def serves_v1() -> bool:
                    return await answer("10.9.9.9") == {"blocked": True}

                await until(serves_v1)
                status = (await client.get("/status")).json()
                assert status["mode"] == "distributed"
                assert status["redis"]["reachable"] is True
                metrics = (await client.get("/metrics")).text
                assert "blocklist_redis_up 1.0" in metrics
                assert "process_cpu_seconds_total" in metrics
                # The sync pipeline's metrics belong to the worker, not to API replicas.
                assert "blocklist_published_version" not in metrics
                assert "blocklist_feed_syncs" not in metrics

                await publisher.publish(make_version(2, "9.9.9.9"))

                async def serves_v2() -> bool:
                    response = await client.get("/check_ip/9.9.9.9")
                    return response.headers.get("x-blocklist-version") == "2"

                delay = await until(serves_v2, limit=5)
                print(f"new version served after {delay:.3f}s")
                assert await answer("10.9.9.9") == {"blocked": False}

                replica.proc.kill()
                replica.proc.wait()

                async def degraded() -> bool:
                    return (await client.get("/status")).json()["redis"]["reachable"] is False

                await until(degraded)
                assert await answer("9.9.9.9") == {"blocked": True}
                assert (await client.get("/readyz")).status_code == 200
            await writer.aclose()

        asyncio.run(scenario())


def test_no_redis_at_start_answers_503_with_a_reason() -> None:
    """Started before any Redis answers: a clear 503, never a guess or a hang."""
    port = free_port()

    async def scenario() -> None:
        settings = Settings(
            redis_url=f"redis://127.0.0.1:{port}/0", version_poll_interval=0.2, redis_timeout=0.3
        )
        async with running(create_app(settings), wait_ready=False) as client:
            response = await client.get("/check_ip/1.2.3.4")
            assert response.status_code == 503
            assert response.json()["error"] == "no_data"
            assert (await client.get("/status")).json()["redis"]["reachable"] is False

    asyncio.run(scenario())


def test_a_version_published_without_its_announcement_is_found_by_the_poll(tmp_path: Path) -> None:
    """The updater died after the swap, before announcing: replicas still get the version."""
    with redis_server(tmp_path / "primary") as primary:

        async def scenario() -> None:
            writer = Redis.from_url(primary.url)
            await RedisPublisher(writer).publish(make_version(1, "1.2.3.4"))
            settings = Settings(redis_url=primary.url, version_poll_interval=0.3, redis_timeout=0.5)
            async with running(create_app(settings)) as client:

                async def never_announced(channel: str, message: str) -> int:
                    raise RedisConnectionError("updater died before announcing")

                listener = Redis.from_url(primary.url).pubsub()
                await listener.subscribe(keys.ANNOUNCE)
                writer.publish = never_announced  # type: ignore[method-assign]
                await RedisPublisher(writer).publish(make_version(2, "9.9.9.9"))

                async def serves_v2() -> bool:
                    response = await client.get("/check_ip/9.9.9.9")
                    return response.headers.get("x-blocklist-version") == "2"

                delay = await until(serves_v2, limit=3)
                assert (await client.get("/check_ip/9.9.9.9")).json() == {"blocked": True}
                print(f"found by the poll after {delay:.3f}s")
                # Nothing was announced: only the poll can have delivered it.
                message = await listener.get_message(ignore_subscribe_messages=True, timeout=0.5)
                assert message is None
                await listener.aclose()
            await writer.aclose()

        asyncio.run(scenario())
