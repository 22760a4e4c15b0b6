"""Redis killed (SIGKILL) under sustained load, real processes throughout: API
replicas with local lookups keep answering every request right; live ones
answer 503 with a reason, fast; both recover by themselves once Redis is back."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from blocklistupdater.redispublish import RedisPublisher
from tests.apiprocess import server, wait_ready
from tests.redisserver import free_port, redis_server
from tests.versions import make_version

pytestmark = pytest.mark.integration

LISTED, UNLISTED = "198.51.100.7", "192.0.2.1"
EXPECTED = {LISTED: {"blocked": True}, UNLISTED: {"blocked": False}}


@dataclass
class Tally:
    """What one replica's clients saw, with the time of each answer."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    right: list[float] = field(default_factory=list)
    unavailable: list[tuple[float, float]] = field(default_factory=list)  # (when, seconds taken)
    other: list[str] = field(default_factory=list)


def load(base: str, stop: threading.Event, tally: Tally) -> None:
    with httpx.Client(base_url=base, timeout=5) as client:
        while not stop.is_set():
            for address, want in EXPECTED.items():
                begin = time.monotonic()
                try:
                    response = client.get(f"/check_ip/{address}")
                except httpx.TransportError as exc:
                    with tally.lock:
                        tally.other.append(f"transport: {exc!r}")
                    continue
                took = time.monotonic() - begin
                with tally.lock:
                    if response.status_code == 200 and response.json() == want:
                        tally.right.append(time.monotonic())
                    elif response.status_code == 503 and response.json()["error"] in {
                        "backend_unavailable", "no_data"
                    }:  # fmt: skip
                        tally.unavailable.append((time.monotonic(), took))
                    else:
                        tally.other.append(f"{response.status_code} {response.text}")


def publish_to(url: str) -> str:
    """Publish the test version to the Redis at ``url``; return ``url``."""

    async def run() -> None:
        client = Redis.from_url(url)
        try:
            await RedisPublisher(client).publish(make_version(1, LISTED))
        finally:
            await client.aclose()

    asyncio.run(run())
    return url


def wait_for(predicate: Callable[[], bool], limit: float) -> float:
    begin = time.monotonic()
    while not predicate():
        assert time.monotonic() - begin < limit, "condition not reached in time"
        time.sleep(0.02)
    return time.monotonic() - begin


@contextmanager
def replicas_under_load(tmp_path: Path, redis_url: str) -> Iterator[tuple[dict[str, str], dict[str, Tally]]]:
    """A local-lookup and a live-lookup API replica on ``redis_url``, three
    keep-alive clients each; yields their base URLs and tallies once every
    replica has answered 300 lookups right. The clients stop at exit."""
    common = {
        "REDIS_URL": redis_url,
        "BLOCKLIST_REDIS_TIMEOUT": "0.5",
        "BLOCKLIST_VERSION_POLL_INTERVAL": "0.3",
        "BLOCKLIST_STATE_DIR": str(tmp_path / "unused"),
        "BLOCKLIST_BOOTSTRAP": "false",
    }
    local_env = {**common, "BLOCKLIST_LOOKUP": "local"}
    live_env = {**common, "BLOCKLIST_LOOKUP": "live", "BLOCKLIST_LIVE_TIMEOUT": "0.05"}
    tallies = {"local": Tally(), "live": Tally()}
    stop = threading.Event()
    with (
        server(local_env, tmp_path / "local.log") as (local_base, local_proc),
        server(live_env, tmp_path / "live.log") as (live_base, live_proc),
    ):
        wait_ready(local_base, local_proc)
        wait_ready(live_base, live_proc)
        bases = {"local": local_base, "live": live_base}
        threads = [
            threading.Thread(target=load, args=(bases[name], stop, tallies[name]))
            for name in ("local", "live")
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        try:
            wait_for(lambda: all(len(t.right) > 300 for t in tallies.values()), limit=20)
            yield bases, tallies
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
    for name in ("local", "live"):
        assert "Traceback" not in (tmp_path / f"{name}.log").read_text()


def test_redis_killed_under_load_then_back(tmp_path: Path) -> None:
    port = free_port()
    with (
        redis_server(tmp_path / "redis-1", port=port) as first,
        replicas_under_load(tmp_path, publish_to(first.url)) as (bases, tallies),
    ):
        first.proc.kill()  # SIGKILL: no goodbye to anyone
        first.proc.wait()
        killed_at = time.monotonic()
        wait_for(lambda: any(w > killed_at for w, _ in tallies["live"].unavailable), limit=5)
        time.sleep(1.0)  # sustained load against a dead Redis
        with redis_server(tmp_path / "redis-2", port=port) as second:
            back_at = time.monotonic()
            publish_to(second.url)  # an empty Redis: the updater's next run publishes again
            live = tallies["live"]
            live_recovery = wait_for(lambda: bool(live.right) and live.right[-1] > back_at, limit=10)
            status_url = f"{bases['local']}/status"
            local_recovery = wait_for(
                lambda: httpx.get(status_url).json()["redis"]["reachable"] is True, limit=10
            )
            time.sleep(0.5)
    local, live = tallies["local"], tallies["live"]
    print(
        f"local: {len(local.right)} right, {len(local.unavailable)} 503; live: {len(live.right)} right, "
        f"{len(live.unavailable)} 503; serving again after Redis returned: live {live_recovery:.2f} s, "
        f"local {local_recovery:.2f} s"
    )
    # Local lookups: every single request answered 200 and right, throughout.
    assert local.other == []
    assert local.unavailable == []
    assert any(w > killed_at for w in local.right)
    # Live lookups: only right answers or a fast 503 with a reason; never anything else.
    assert live.other == []
    assert live.unavailable, "the live replica never noticed Redis was gone"
    assert max(took for _, took in live.unavailable) < 1.0
    assert live_recovery < 5.0
    assert local_recovery < 5.0


def test_redis_hung_under_load_blocks_no_worker(tmp_path: Path) -> None:
    """SIGSTOP: Redis accepts connections and answers nothing. Local lookups keep
    answering, live ones answer 503 within their deadline, /status says why."""
    with (
        redis_server(tmp_path / "redis") as primary,
        replicas_under_load(tmp_path, publish_to(primary.url)) as (bases, tallies),
    ):
        os.kill(primary.proc.pid, signal.SIGSTOP)
        try:
            stopped_at = time.monotonic()
            status_url = f"{bases['local']}/status"
            wait_for(lambda: httpx.get(status_url).json()["redis"]["reachable"] is False, limit=10)
            status = httpx.get(status_url).json()
            time.sleep(1.0)  # sustained load against a hung Redis
            served_while_hung = sum(w > stopped_at for w in tallies["local"].right)
        finally:
            os.kill(primary.proc.pid, signal.SIGCONT)
        resumed_at = time.monotonic()
        wait_for(lambda: tallies["live"].right[-1] > resumed_at, limit=10)
    local, live = tallies["local"], tallies["live"]
    assert local.other == []
    assert local.unavailable == []
    assert served_while_hung > 100, "local lookups stalled while Redis hung"
    assert status["degraded"] is True
    assert status["redis"]["last_error"]
    assert live.other == []
    assert live.unavailable, "the live replica never noticed Redis hung"
    assert max(took for _, took in live.unavailable) < 1.0
