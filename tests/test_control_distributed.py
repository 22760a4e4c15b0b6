"""Operator control in distributed mode with real processes: a Redis primary with
AOF, two replicas, and two API processes each reading from its own replica.

A change made through one API process (local lookups) is applied by the
other (live lookups) within a second, without republishing anything; it survives a feed publish, a
restart of every API process and a restart of the Redis primary.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import redis
from redis.asyncio import Redis

from blocklistupdater.redispublish import RedisPublisher
from ipchecking.auth import key_digest
from tests.apiprocess import server, wait_ready
from tests.redisserver import RedisServer, redis_server
from tests.test_redis_faults import LISTED, publish_to
from tests.versions import make_version

pytestmark = pytest.mark.integration

ADMIN = "admin-key-for-the-distributed-tests"
TARGET = "203.0.113.50"


def wait_for(predicate: Callable[[], bool], limit: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < limit, f"{what}: not within {limit}s"
        time.sleep(0.005)
    return time.monotonic() - start


def blocked(base: str, ip: str) -> bool:
    answer = httpx.get(f"{base}/check_ip/{ip}", timeout=2)
    assert answer.status_code == 200, answer.text
    value: bool = answer.json()["blocked"]
    return value


def api_env(tmp_path: Path, primary: RedisServer, replica: RedisServer, name: str) -> dict[str, str]:
    return {
        "REDIS_URL": f"redis://127.0.0.1:{primary.port}/0",
        "BLOCKLIST_REDIS_READ_URL": f"redis://127.0.0.1:{replica.port}/0",
        "BLOCKLIST_API_KEYS": key_digest(ADMIN),
        "BLOCKLIST_STATE_DIR": str(tmp_path / f"{name}-state"),
        "BLOCKLIST_BOOTSTRAP": "false",
        "BLOCKLIST_REDIS_TIMEOUT": "2",
    }


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ipchecking", "keys", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def redis_trio(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer, RedisServer]]:
    with (
        redis_server(tmp_path / "primary", aof=True) as primary,
        redis_server(tmp_path / "replica-1", replica_of=primary) as first,
        redis_server(tmp_path / "replica-2", replica_of=primary) as second,
    ):
        publish_to(f"redis://127.0.0.1:{primary.port}/0")
        yield primary, first, second


def test_changes_reach_the_other_replica_within_a_second_and_keys_within_seconds(
    tmp_path: Path, redis_trio: tuple[RedisServer, RedisServer, RedisServer]
) -> None:
    primary, first, second = redis_trio
    env_a = api_env(tmp_path, primary, first, "a")
    # B asks Redis per lookup (live mode): overrides and reputation still come from its view.
    env_b = {**api_env(tmp_path, primary, second, "b"), "BLOCKLIST_LOOKUP": "live"}
    admin = {"Authorization": f"Bearer {ADMIN}"}
    delays: list[float] = []
    with (
        server(env_a, tmp_path / "a.log") as (base_a, proc_a),
        server(env_b, tmp_path / "b.log") as (base_b, proc_b),
    ):
        wait_ready(base_a, proc_a)
        wait_ready(base_b, proc_b)
        for round_ in range(5):
            ip = f"203.0.113.{round_ + 1}"
            made = httpx.post(
                f"{base_a}/v1/overrides", json={"network": ip, "action": "block"}, headers=admin
            )
            assert made.status_code == 201, made.text
            assert blocked(base_a, ip)  # the process that took the change applies it at once
            delays.append(wait_for(lambda ip=ip: blocked(base_b, ip), 1.0, "block on the other replica"))
            gone = httpx.delete(f"{base_b}/v1/overrides/{made.json()['id']}", headers=admin)
            assert gone.status_code == 204
            delays.append(wait_for(lambda ip=ip: not blocked(base_a, ip), 1.0, "unblock on the first"))
        allowed = httpx.post(
            f"{base_b}/v1/overrides", json={"network": LISTED, "action": "allow"}, headers=admin
        )
        assert allowed.status_code == 201
        delays.append(wait_for(lambda: not blocked(base_a, LISTED), 1.0, "allow on the other replica"))
        for _ in range(2):
            reported = httpx.post(
                f"{base_a}/v1/reports", json={"ip": TARGET, "violation": "scan"}, headers=admin
            )
            assert reported.status_code == 200
        assert reported.json()["blocked"] is True
        delays.append(wait_for(lambda: blocked(base_b, TARGET), 1.0, "reputation block on the other replica"))
        explained = httpx.get(f"{base_a}/v1/ip/{TARGET}", timeout=2).json()
        assert explained["decided_by"] == "reputation"
        assert explained["reputation"]["score"] == 20

        # A key made by the CLI while both run: accepted by both, then refused by both.
        made_key = cli(env_a, "create", "--name", "app-1", "--scope", "report")
        assert made_key.returncode == 0, made_key.stderr
        secret = made_key.stdout.strip()
        assert made_key.stdout == f"{secret}\n"
        assert secret.startswith("blk_")
        report = {"ip": "192.0.2.99", "violation": "spam"}

        def accepted(base: str) -> bool:
            answer = httpx.post(
                f"{base}/v1/reports", json=report, headers={"Authorization": f"Bearer {secret}"}, timeout=2
            )
            assert answer.status_code in {200, 401}
            return answer.status_code == 200

        key_delays = [wait_for(lambda b=b: accepted(b), 5.0, "new key accepted") for b in (base_a, base_b)]
        listing = cli(env_b, "list")
        assert '"name": "app-1"' in listing.stdout
        assert '"scope": "report"' in listing.stdout
        assert cli(env_b, "revoke", "app-1").returncode == 0
        assert cli(env_b, "revoke", "app-1").returncode == 1
        key_delays += [
            wait_for(lambda b=b: not accepted(b), 5.0, "revoked key refused") for b in (base_a, base_b)
        ]
        audit = httpx.get(f"{base_a}/v1/audit?limit=3", headers=admin).json()["entries"]
        assert [(e["action"], e["actor"], e["target"]) for e in audit[:2]] == [
            ("key.revoke", "cli", "app-1"),
            ("key.create", "cli", "app-1"),
        ]
    worst, keys_worst = max(delays) * 1000, max(key_delays)
    print(f"propagation: max {worst:.0f} ms over {len(delays)} changes; keys max {keys_worst:.2f} s")
    for name in ("a", "b"):
        assert "Traceback" not in (tmp_path / f"{name}.log").read_text()


def publish_version_2(url: str) -> None:
    """Publish a new feed version (LISTED and 198.51.100.8) to the Redis at ``url``."""

    async def run() -> None:
        client = Redis.from_url(url)
        try:
            await RedisPublisher(client).publish(make_version(2, LISTED, "198.51.100.8"))
        finally:
            await client.aclose()

    asyncio.run(run())


def test_changes_survive_a_publish_api_restarts_and_a_redis_primary_restart(tmp_path: Path) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with ExitStack() as stack:
        primary = stack.enter_context(redis_server(tmp_path / "primary", aof=True))
        replica = stack.enter_context(redis_server(tmp_path / "replica", replica_of=primary))
        url = publish_to(f"redis://127.0.0.1:{primary.port}/0")
        env = api_env(tmp_path, primary, replica, "api")
        with server(env, tmp_path / "api-1.log") as (base, proc):
            wait_ready(base, proc)
            made = httpx.post(
                f"{base}/v1/overrides", json={"network": TARGET, "action": "block"}, headers=admin
            )
            assert made.status_code == 201
            allow = {"network": LISTED, "action": "allow"}
            assert httpx.post(f"{base}/v1/overrides", json=allow, headers=admin).status_code == 201
            publish_version_2(url)
            wait_for(lambda: blocked(base, "198.51.100.8"), 10, "version 2 served")
            assert blocked(base, TARGET)
            assert not blocked(base, LISTED)
            # The primary restarts from its AOF on the same port while the API runs.
            primary.proc.terminate()
            primary.proc.wait(timeout=10)
            stack.enter_context(redis_server(tmp_path / "primary", port=primary.port, aof=True))
            wait_for(lambda: _replica_up(replica), 15, "replica resynced")
            removed = httpx.delete(f"{base}/v1/overrides/{made.json()['id']}", headers=admin)
            assert removed.status_code == 204
            wait_for(lambda: not blocked(base, TARGET), 5, "removal after the restart")
        with server(env, tmp_path / "api-2.log") as (base, proc):
            wait_ready(base, proc)
            assert not blocked(base, TARGET)
            assert not blocked(base, LISTED)
            listed = httpx.get(f"{base}/v1/overrides", headers=admin).json()
            assert [o["network"] for o in listed["overrides"]] == [f"{LISTED}/32"]
    for name in ("api-1", "api-2"):
        assert "Traceback" not in (tmp_path / f"{name}.log").read_text()


def _replica_up(replica: RedisServer) -> bool:
    with redis.Redis(port=replica.port, socket_timeout=1) as client:
        return bool(client.info("replication").get("master_link_status") == "up")
