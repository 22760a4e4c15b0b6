"""Redis Sentinel with real processes: a primary, one replica and three
sentinels on free ports; the connector, the updater worker and an API
replica find the servers through the sentinels alone (no ``REDIS_URL``),
and keep working when the primary is killed and the replica promoted."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from redis.exceptions import ReadOnlyError

from blocklist import rediskeys as keys
from blocklist.redisclient import RedisConnector
from blocklist.settings import Settings, parse_host_ports
from ipchecking.auth import key_digest
from tests.apiprocess import server, wait_ready
from tests.redisserver import RedisServer, SentinelServer, redis_server, three_sentinels

pytestmark = pytest.mark.integration

#: Not the default ``mymaster``: proves the service name reaches every client.
SERVICE = "blocklist"
#: Added to the feed by the second publish; listed nowhere else.
ADDED = "198.51.100.77"
UNLISTED = "192.0.2.1"


@dataclass
class Topology:
    primary: RedisServer
    replica: RedisServer
    sentinels: list[SentinelServer]

    @property
    def addresses(self) -> str:
        """The ``BLOCKLIST_REDIS_SENTINELS`` value."""
        return ",".join(s.address for s in self.sentinels)

    def master_ports(self) -> set[int]:
        """The primary's port as each sentinel names it now."""
        ports = set()
        for sentinel in self.sentinels:
            with redis.Redis(port=sentinel.port, socket_timeout=2) as client:
                _, port = client.sentinel_get_master_addr_by_name(SERVICE)
                ports.add(int(port))
        return ports


def wait_for(predicate: Callable[[], object], limit: float, what: str) -> float:
    """Seconds until ``predicate()`` is true; fails after ``limit``."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < limit, f"{what}: not reached within {limit}s"
        time.sleep(0.02)
    return time.monotonic() - start


def info(port: int, section: str) -> dict[str, object]:
    with redis.Redis(port=port, socket_timeout=2) as client:
        result: dict[str, object] = client.info(section)
        return result


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    with ExitStack() as stack:
        primary = stack.enter_context(redis_server(tmp_path / "primary"))
        with redis.Redis(port=primary.port) as client:  # full sync at once, not after 5 s
            client.config_set("repl-diskless-sync-delay", 0)
        replica = stack.enter_context(redis_server(tmp_path / "replica", replica_of=primary))
        wait_for(lambda: info(replica.port, "replication")["master_link_status"] == "up", 10, "replica sync")
        sentinels = stack.enter_context(three_sentinels(tmp_path, primary, service=SERVICE, replicas=1))
        yield Topology(primary, replica, sentinels)


def test_connector_writes_to_the_primary_and_reads_from_the_replica(topology: Topology) -> None:
    sentinels = parse_host_ports(topology.addresses)
    settings = Settings(redis_sentinels=sentinels, redis_sentinel_service=SERVICE)

    async def scenario() -> None:
        connector = RedisConnector(settings, timeout=2)
        try:
            assert connector.describe("primary") == f"sentinel://{topology.addresses}/{SERVICE} (primary)"
            primary = connector.primary()
            assert await primary.set("sentinel-test", "written")
            assert (await primary.info("replication"))["role"] == "master"
            assert (await primary.info("server"))["tcp_port"] == topology.primary.port
            assert await primary.wait(1, 5000) == 1  # the replica has the write

            reader = connector.reader()
            assert await reader.get("sentinel-test") == b"written"
            assert (await reader.info("replication"))["role"] == "slave"
            assert (await reader.info("server"))["tcp_port"] == topology.replica.port
            with pytest.raises(ReadOnlyError):
                await reader.set("sentinel-test", "refused")
        finally:
            await connector.aclose()

    asyncio.run(scenario())


def worker_env(tmp_path: Path, topology: Topology, feed: Path) -> dict[str, str]:
    """Worker settings naming the sentinels only: no direct Redis URL at all."""
    env = {k: v for k, v in os.environ.items() if "REDIS" not in k}
    return {
        **env,
        "BLOCKLIST_REDIS_SENTINELS": topology.addresses,
        "BLOCKLIST_REDIS_SENTINEL_SERVICE": SERVICE,
        "BLOCKLIST_FEEDS": f"ipsum=ipsum:{feed}",
        "BLOCKLIST_STATE_DIR": str(tmp_path / "worker-state"),
        "BLOCKLIST_BOOTSTRAP": "false",
        "BLOCKLIST_RETRY_ATTEMPTS": "1",
    }


def run_once(env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "blocklistupdater", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def api_env(tmp_path: Path, topology: Topology) -> dict[str, str]:
    """An API replica with local lookups; the 30 s poll leaves pub/sub to carry news."""
    return {
        "BLOCKLIST_REDIS_SENTINELS": topology.addresses,
        "BLOCKLIST_REDIS_SENTINEL_SERVICE": SERVICE,
        "BLOCKLIST_STATE_DIR": str(tmp_path / "api-state"),
        "BLOCKLIST_BOOTSTRAP": "false",
        "BLOCKLIST_VERSION_POLL_INTERVAL": "30",
    }


def answer(base: str, address: str) -> tuple[int, object, str | None]:
    response = httpx.get(f"{base}/check_ip/{address}", timeout=2)
    return response.status_code, response.json(), response.headers.get("x-blocklist-version")


def live_number(port: int) -> int | None:
    with redis.Redis(port=port, socket_timeout=2) as client:
        raw = client.hget(keys.META, "number")
        return int(raw) if raw is not None else None


def subscribers(port: int) -> int:
    """Clients of the server at ``port`` subscribed to a channel, sentinels aside."""
    with redis.Redis(port=port, socket_timeout=2) as client:
        clients = client.client_list()
    return sum(int(c["sub"]) > 0 and not c["name"].startswith("sentinel-") for c in clients)


@pytest.fixture
def feed(tmp_path: Path, shared_data: Path) -> tuple[Path, str]:
    """A copy of the real ipsum feed, and one address it lists."""
    path = tmp_path / "feeds" / "ipsum.txt"
    path.parent.mkdir()
    shutil.copy(shared_data / "ipsum" / "ipsum-2026-08-22.txt", path)
    listed = next(line.split()[0] for line in path.read_text().splitlines() if line[:1].isdigit())
    return path, listed


def test_worker_publishes_and_the_api_serves_through_sentinels(
    tmp_path: Path, topology: Topology, feed: tuple[Path, str]
) -> None:
    path, listed = feed
    run_once(worker_env(tmp_path, topology, path))
    assert live_number(topology.primary.port) == 1
    with server(api_env(tmp_path, topology), tmp_path / "api.log") as (base, proc):
        wait_ready(base, proc)
        assert answer(base, listed) == (200, {"blocked": True}, "1")
        assert answer(base, UNLISTED) == (200, {"blocked": False}, "1")
        redis_status = httpx.get(f"{base}/status", timeout=2).json()["redis"]
        assert redis_status["reachable"] is True
        assert redis_status["version"] == 1
        assert redis_status["url"] == f"sentinel://{topology.addresses}/{SERVICE} (replica)"
        # The API follows announcements on the replica, not on the primary
        # (it subscribes in the background, once ready).
        deadline = time.monotonic() + 5
        while subscribers(topology.replica.port) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert subscribers(topology.replica.port) == 1
        assert subscribers(topology.primary.port) == 0


class Poller:
    """Asks the API, in a thread, about a listed and an unlisted address and
    whether it is ready, over and over; keeps every unexpected answer."""

    def __init__(self, base: str, listed: str) -> None:
        self.base = base
        self.probes: list[tuple[str, object]] = [
            (f"/check_ip/{listed}", {"blocked": True}),
            (f"/check_ip/{UNLISTED}", {"blocked": False}),
            ("/readyz", None),  # 200 is enough: its body names the version
        ]
        self.count = 0
        self.wrong: list[object] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=2) as client:
            while not self._stop.is_set():
                for path, expected in self.probes:
                    try:
                        response = client.get(path)
                        body = response.json() if expected is not None else None
                        if response.status_code != 200 or body != expected:
                            self.wrong.append((path, response.status_code, response.text))
                    except Exception as exc:  # recorded, not raised: the thread must not die
                        self.wrong.append((path, repr(exc)))
                    self.count += 1
                time.sleep(0.005)  # leave the CPU to the worker and the sentinels


def test_primary_killed_the_replica_is_promoted_and_publishing_continues(
    tmp_path: Path, topology: Topology, feed: tuple[Path, str]
) -> None:
    path, listed = feed
    env = worker_env(tmp_path, topology, path)
    run_once(env)
    wait_for(lambda: live_number(topology.replica.port) == 1, 10, "version 1 on the replica")
    with server(api_env(tmp_path, topology), tmp_path / "api.log") as (base, proc):
        wait_ready(base, proc)
        assert answer(base, listed) == (200, {"blocked": True}, "1")
        with Poller(base, listed) as poller:
            # A real crash: SIGKILL, no shutdown, the sentinels notice by timeout.
            topology.primary.proc.kill()
            topology.primary.proc.wait()
            failover = wait_for(
                lambda: topology.master_ports() == {topology.replica.port}, 30, "replica promoted"
            )
            assert info(topology.replica.port, "replication")["role"] == "master"

            # The next publish goes to the new primary, found through the sentinels.
            path.write_text(path.read_text() + f"{ADDED}\t9\n")
            start = time.monotonic()
            run_once(env)
            assert live_number(topology.replica.port) == 2
            live_at = time.monotonic()
            propagation = wait_for(
                lambda: answer(base, ADDED) == (200, {"blocked": True}, "2"), 5, "new version served"
            )
            publish = live_at - start
        assert poller.wrong == []
        assert poller.count > 50
        assert answer(base, listed) == (200, {"blocked": True}, "2")
        assert answer(base, UNLISTED) == (200, {"blocked": False}, "2")
        redis_status = httpx.get(f"{base}/status", timeout=2).json()["redis"]
        assert redis_status["reachable"] is True
        assert redis_status["version"] == 2
    print(
        f"failover {failover:.2f}s, publish {publish:.2f}s, propagation {propagation * 1000:.0f} ms, "
        f"{poller.count} answers during it"
    )


def test_an_acknowledged_override_survives_the_primary_killed_right_after(
    tmp_path: Path, topology: Topology, feed: tuple[Path, str]
) -> None:
    """WAIT holds the 201 until the replica has the change, so the promoted replica has it."""
    path, listed = feed
    run_once(worker_env(tmp_path, topology, path))
    wait_for(lambda: live_number(topology.replica.port) == 1, 10, "version 1 on the replica")
    admin_key = "admin-key-for-the-failover-test"
    env = {**api_env(tmp_path, topology), "BLOCKLIST_API_KEYS": key_digest(admin_key)}
    admin = {"Authorization": f"Bearer {admin_key}"}
    with server(env, tmp_path / "api.log") as (base, proc):
        wait_ready(base, proc)
        made = httpx.post(
            f"{base}/v1/overrides", json={"network": UNLISTED, "action": "block"}, headers=admin, timeout=5
        )
        assert made.status_code == 201
        waits: Any = info(topology.primary.port, "commandstats")["cmdstat_wait"]
        assert waits["calls"] >= 1  # the answer waited for the replica
        # Killed the moment the change is acknowledged: no shutdown, no AOF, no save.
        topology.primary.proc.kill()
        topology.primary.proc.wait()
        wait_for(lambda: topology.master_ports() == {topology.replica.port}, 30, "replica promoted")
        stored = httpx.get(f"{base}/v1/overrides/{made.json()['id']}", headers=admin, timeout=5)
        assert stored.status_code == 200
        assert stored.json() == made.json()
        assert answer(base, UNLISTED)[1] == {"blocked": True}
        # The new primary takes changes too.
        allow = httpx.post(
            f"{base}/v1/overrides", json={"network": listed, "action": "allow"}, headers=admin, timeout=5
        )
        assert allow.status_code == 201
        wait_for(lambda: answer(base, listed)[1] == {"blocked": False}, 5, "allow after the failover")
