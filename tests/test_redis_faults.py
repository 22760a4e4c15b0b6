"""Redis killed (SIGKILL) under sustained load, real processes throughout: API
replicas with local lookups keep answering every request right; live ones
answer 503 with a reason, fast; both recover by themselves once Redis is back."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
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


def publish(url: str) -> None:
    async def run() -> None:
        client = Redis.from_url(url)
        try:
            await RedisPublisher(client).publish(make_version(1, LISTED))
        finally:
            await client.aclose()

    asyncio.run(run())


def wait_for(predicate: Callable[[], bool], limit: float) -> float:
    begin = time.monotonic()
    while not predicate():
        assert time.monotonic() - begin < limit, "condition not reached in time"
        time.sleep(0.02)
    return time.monotonic() - begin


def test_redis_killed_under_load_then_back(tmp_path: Path) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    common = {"REDIS_URL": url, "BLOCKLIST_REDIS_TIMEOUT": "0.5", "BLOCKLIST_VERSION_POLL_INTERVAL": "0.3",
              "BLOCKLIST_STATE_DIR": str(tmp_path / "unused"), "BLOCKLIST_BOOTSTRAP": "false"}  # fmt: skip
    local_env = {**common, "BLOCKLIST_LOOKUP": "local"}
    live_env = {**common, "BLOCKLIST_LOOKUP": "live", "BLOCKLIST_LIVE_TIMEOUT": "0.05"}
    tallies = {"local": Tally(), "live": Tally()}
    stop = threading.Event()
    with redis_server(tmp_path / "redis-1", port=port) as first:
        publish(first.url)
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
                first.proc.kill()  # SIGKILL: no goodbye to anyone
                first.proc.wait()
                killed_at = time.monotonic()
                wait_for(lambda: any(w > killed_at for w, _ in tallies["live"].unavailable), limit=5)
                time.sleep(1.0)  # sustained load against a dead Redis
                with redis_server(tmp_path / "redis-2", port=port) as second:
                    back_at = time.monotonic()
                    publish(second.url)  # an empty Redis: the updater's next run publishes again
                    live_recovery = wait_for(
                        lambda: bool(tallies["live"].right) and tallies["live"].right[-1] > back_at, limit=10
                    )
                    local_recovery = wait_for(
                        lambda: httpx.get(f"{local_base}/status").json()["redis"]["reachable"] is True,
                        limit=10,
                    )
                    time.sleep(0.5)
            finally:
                stop.set()
                for thread in threads:
                    thread.join(timeout=10)
    local, live = tallies["local"], tallies["live"]
    print(
        f"local: {len(local.right)} right, {len(local.unavailable)} 503; live: {len(live.right)} right, "
        f"{len(live.unavailable)} 503; recovery after Redis returned: live {live_recovery:.2f} s, "
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
    assert "Traceback" not in (tmp_path / "local.log").read_text()
    assert "Traceback" not in (tmp_path / "live.log").read_text()
