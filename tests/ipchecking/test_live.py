"""Live lookups (``BLOCKLIST_LOOKUP=live``) against real redis-server
processes: same answers as local lookups, read from a replica, and a fast
503 with a reason when Redis fails or hangs."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import signal
import time
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from blocklist.settings import Settings
from blocklistupdater.redispublish import RedisPublisher
from ipchecking.app import create_app
from tests.ipchecking.apphelpers import running, wait_until_ready
from tests.redisserver import RedisServer, free_port, redis_server
from tests.versions import make_version

pytestmark = pytest.mark.integration

ENTRIES = ("1.2.3.4", "10.0.0.0/8", "192.0.2.0-192.0.2.9", "2001:db8::/32", "::ffff:203.0.113.0/120")


def live_settings(primary: RedisServer, replica: RedisServer | None = None, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "redis_url": primary.url,
        "redis_read_url": replica.url if replica else None,
        "lookup": "live",
        "version_poll_interval": 0.2,
        "redis_timeout": 0.5,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def probe_addresses(seed: int = 7) -> list[str]:
    """Edges and neighbours of every entry, random addresses, mapped forms."""
    rng = random.Random(seed)
    out = ["1.2.3.3", "1.2.3.4", "1.2.3.5", "9.255.255.255", "10.0.0.0", "10.255.255.255", "11.0.0.0"]
    out += ["192.0.2.9", "192.0.2.10", "::ffff:1.2.3.4", "::ffff:10.1.2.3", "203.0.113.5", "203.0.114.0"]
    out += ["2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db9::", "::", "0.0.0.0"]
    out += [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(200)]
    out += [str(ipaddress.IPv6Address(rng.getrandbits(128))) for _ in range(50)]
    return out


def test_live_answers_match_local_answers_and_come_from_the_replica(tmp_path: Path) -> None:
    with (
        redis_server(tmp_path / "primary") as primary,
        redis_server(tmp_path / "replica", replica_of=primary) as replica,
    ):

        async def scenario() -> None:
            writer = Redis.from_url(primary.url)
            await RedisPublisher(writer).publish(make_version(3, *ENTRIES))
            local = create_app(Settings(redis_url=primary.url, redis_read_url=replica.url))
            live = create_app(live_settings(primary, replica))
            async with running(local) as local_client, running(live) as live_client:
                for address in probe_addresses():
                    want = await local_client.get(f"/check_ip/{address}")
                    got = await live_client.get(f"/check_ip/{address}")
                    assert (got.status_code, got.json()) == (want.status_code, want.json()), address
                    assert got.headers["x-blocklist-version"] == "3"
                assert (await live_client.head("/check_ip/10.1.1.1")).status_code == 200
                # The documented FastAPI route (behind the fast path) asks Redis too.
                transport = httpx.ASGITransport(app=live.app)
                async with httpx.AsyncClient(transport=transport, base_url="http://test") as documented:
                    answer = await documented.get("/check_ip/10.1.1.1")
                    assert answer.json() == {"blocked": True}
                    assert answer.headers["x-blocklist-version"] == "3"
                status = (await live_client.get("/status")).json()
                assert status["lookup"] == "live"
                assert status["version"]["number"] == 3
                assert status["redis"]["url"] == replica.url
                assert status["ready"] is True
                assert status["degraded"] is False
                # The replica answered the lookups, not the primary.
                reader = Redis.from_url(replica.url)
                zranges = (await reader.info("commandstats"))["cmdstat_zrange"]["calls"]
                await reader.aclose()
                assert zranges >= len(probe_addresses())
                invalid = await live_client.get("/check_ip/1.2.3")
                assert invalid.status_code == 422
                assert invalid.json()["error"] == "invalid_address"
            await writer.aclose()

        asyncio.run(scenario())


def test_live_follows_each_publish_without_any_reload(tmp_path: Path) -> None:
    with redis_server(tmp_path / "primary") as primary:

        async def scenario() -> None:
            writer = Redis.from_url(primary.url)
            publisher = RedisPublisher(writer)
            async with running(create_app(live_settings(primary)), wait_ready=False) as client:
                empty = await client.get("/check_ip/1.2.3.4")
                assert empty.status_code == 503
                assert empty.json()["error"] == "no_data"
                assert (await client.get("/readyz")).status_code == 503

                await publisher.publish(make_version(1, "1.2.3.4"))
                answer = await client.get("/check_ip/1.2.3.4")
                assert answer.json() == {"blocked": True}
                assert answer.headers["x-blocklist-version"] == "1"
                await publisher.publish(make_version(2, "5.6.7.8"))
                assert (await client.get("/check_ip/1.2.3.4")).json() == {"blocked": False}
                assert (await client.get("/check_ip/5.6.7.8")).headers["x-blocklist-version"] == "2"
                await wait_until_ready(client)
            await writer.aclose()

        asyncio.run(scenario())


async def timed_get(client: httpx.AsyncClient, path: str) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    response = await client.get(path)
    return response, time.perf_counter() - start


def test_hung_redis_gives_503_within_the_deadline_and_recovers(tmp_path: Path) -> None:
    """SIGSTOP: Redis accepts nothing and answers nothing. No request waits past its deadline."""
    with redis_server(tmp_path / "primary") as primary:

        async def scenario() -> None:
            writer = Redis.from_url(primary.url)
            await RedisPublisher(writer).publish(make_version(1, "1.2.3.4"))
            await writer.aclose()
            settings = live_settings(primary, live_timeout=0.05, redis_max_connections=8)
            async with running(create_app(settings)) as client:
                os.kill(primary.proc.pid, signal.SIGSTOP)
                try:
                    # More concurrent requests than pooled connections: the
                    # ones waiting for a connection share the same deadline.
                    results = await asyncio.gather(
                        *(timed_get(client, "/check_ip/1.2.3.4") for _ in range(40))
                    )
                    for response, seconds in results:
                        assert response.status_code == 503
                        body = response.json()
                        assert body["error"] == "backend_unavailable"
                        assert "50 ms" in body["detail"] or "unavailable" in body["detail"]
                        assert seconds < 1.0, f"a request waited {seconds:.3f}s"
                    await asyncio.sleep(0.6)  # one failed metadata poll (0.5 s socket timeout)
                    status = (await client.get("/status")).json()
                    assert status["redis"]["reachable"] is False
                    assert status["degraded"] is True
                    assert (await client.get("/readyz")).status_code == 503
                    metrics = (await client.get("/metrics")).text
                    assert "blocklist_redis_up 0.0" in metrics
                finally:
                    os.kill(primary.proc.pid, signal.SIGCONT)

                async def recovered() -> bool:
                    response = await client.get("/check_ip/1.2.3.4")
                    return response.status_code == 200 and response.json() == {"blocked": True}

                deadline = time.monotonic() + 5
                while not await recovered():
                    assert time.monotonic() < deadline, "live lookups did not recover"
                    await asyncio.sleep(0.05)
                await wait_until_ready(client)
                assert "blocklist_redis_up 1.0" in (await client.get("/metrics")).text

        asyncio.run(scenario())


def test_dead_redis_gives_503_fast_with_a_reason(tmp_path: Path) -> None:
    with redis_server(tmp_path / "primary") as primary:

        async def scenario() -> None:
            writer = Redis.from_url(primary.url)
            await RedisPublisher(writer).publish(make_version(1, "1.2.3.4"))
            await writer.aclose()
            async with running(create_app(live_settings(primary))) as client:
                primary.proc.kill()
                primary.proc.wait()
                for _ in range(20):
                    response, seconds = await timed_get(client, "/check_ip/1.2.3.4")
                    assert response.status_code == 503, response.text
                    assert response.json()["error"] == "backend_unavailable"
                    assert response.headers["retry-after"] == "5"
                    assert seconds < 1.0

        asyncio.run(scenario())


def test_no_redis_at_start_is_not_ready_and_answers_503() -> None:
    port = free_port()

    async def scenario() -> None:
        settings = Settings(redis_url=f"redis://127.0.0.1:{port}/0", lookup="live", redis_timeout=0.3)
        async with running(create_app(settings), wait_ready=False) as client:
            response = await client.get("/check_ip/1.2.3.4")
            assert response.status_code == 503
            assert response.json()["error"] == "backend_unavailable"
            assert (await client.get("/readyz")).status_code == 503
            assert (await client.get("/healthz")).status_code == 200

    asyncio.run(scenario())
