"""The updater worker as a process against real redis-server processes
(a primary and a replica on free ports)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis

from blocklist import rediskeys as keys
from blocklist.snapshot import decode_version
from tests.blocklistupdater.support import run_module
from tests.redisserver import RedisServer, free_port, redis_server

pytestmark = pytest.mark.integration


def worker_env(tmp_path: Path, primary: RedisServer | None, feed: Path) -> dict[str, str]:
    """Worker settings; ``primary=None`` points at a free port nobody listens on."""
    url = primary.url if primary else f"redis://127.0.0.1:{free_port()}/0"
    return {
        **os.environ,
        "REDIS_URL": url,
        "BLOCKLIST_FEEDS": f"ipsum=ipsum:{feed}",
        "BLOCKLIST_STATE_DIR": str(tmp_path / "worker-state"),
        "BLOCKLIST_BOOTSTRAP": "false",
        "BLOCKLIST_RETRY_ATTEMPTS": "1",
        "BLOCKLIST_HEARTBEAT_TTL": "3",
    }


@contextmanager
def worker_process(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The long-running worker as a process logging to ``log_path``; killed if still running at exit."""
    with log_path.open("wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "blocklistupdater"], env=env, stdout=log, stderr=log)
    try:
        yield worker
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def wait_for(predicate: object, limit: float = 10.0) -> None:
    """Poll until true; a replica still loading its first sync answers errors meanwhile."""
    deadline = time.monotonic() + limit
    while True:
        try:
            if predicate():  # type: ignore[operator]
                return
        except redis.exceptions.BusyLoadingError:
            pass
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_once_publishes_the_feed_and_the_replica_serves_it(
    tmp_path: Path, shared_data: Path, primary_and_replica: tuple[RedisServer, RedisServer]
) -> None:
    primary, replica = primary_and_replica
    feed = shared_data / "ipsum" / "ipsum-2026-08-22.txt"
    env = worker_env(tmp_path, primary, feed)
    result = run_module(env, "--once")
    assert result.returncode == 0, result.stderr

    reader = redis.Redis.from_url(replica.url)
    try:
        wait_for(lambda: reader.hget(keys.META, "number") == b"1")
        version = decode_version(reader.get(keys.SNAPSHOT))  # type: ignore[arg-type]
        assert version.number == 1
        assert version.feeds[0].entries == 120430
        assert int(reader.hget(keys.META, "number")) == 1  # type: ignore[arg-type]
        # One ZRANGE BYLEX REV answers a live lookup on the replica.
        address = 0x4D5AB914  # 77.90.185.20, top of the ipsum file
        found = reader.zrange(
            keys.ranges_key(4), keys.lookup_bound(4, address), "-", bylex=True, desc=True, offset=0, num=1
        )
        assert found
        assert keys.member_contains(found[0], address)  # type: ignore[index]
        assert list(reader.scan_iter(keys.PREFIX + "tmp:*")) == []
    finally:
        reader.close()

    # Unchanged feed: a second run succeeds and publishes nothing new.
    again = run_module(env, "--once")
    assert again.returncode == 0, again.stderr
    writer = redis.Redis.from_url(primary.url)
    try:
        assert int(writer.hget(keys.META, "number")) == 1  # type: ignore[arg-type]
    finally:
        writer.close()


def test_once_fails_when_a_feed_cannot_be_read(
    tmp_path: Path, primary_and_replica: tuple[RedisServer, RedisServer]
) -> None:
    primary, _ = primary_and_replica
    result = run_module(worker_env(tmp_path, primary, tmp_path / "missing.txt"), "--once")
    assert result.returncode == 1


def test_check_follows_the_heartbeat_of_a_running_worker(
    tmp_path: Path, shared_data: Path, primary_and_replica: tuple[RedisServer, RedisServer]
) -> None:
    primary, _ = primary_and_replica
    env = worker_env(tmp_path, primary, shared_data / "spamhaus" / "drop" / "drop-2025-01-17.txt")
    env["BLOCKLIST_FEEDS"] = env["BLOCKLIST_FEEDS"].replace("ipsum=ipsum:", "drop=spamhaus:")
    env["BLOCKLIST_WORKER_ID"] = "updater-a"
    metrics_port = free_port()
    env["BLOCKLIST_METRICS_PORT"] = str(metrics_port)
    other = {**env, "BLOCKLIST_WORKER_ID": "updater-b"}
    assert run_module(env, "--check").returncode == 1
    log_path = tmp_path / "worker.log"
    with worker_process(env, log_path) as worker:
        wait_for(lambda: run_module(env, "--check").returncode == 0, limit=20)
        # Each worker probes its own key: another worker's beat proves nothing.
        assert run_module(other, "--check").returncode == 1
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert 'blocklist_feed_syncs_total{feed="drop",outcome="updated"} 1.0' in metrics
        assert "blocklist_published_version 1.0" in metrics
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
    # A clean stop removes the heartbeat at once rather than waiting for its TTL.
    assert run_module(env, "--check").returncode == 1
    output = log_path.read_text()
    assert "Traceback" not in output
    assert "raised an exception" not in output


def test_once_without_redis_exits_1_with_one_clear_line(tmp_path: Path, shared_data: Path) -> None:
    env = worker_env(tmp_path, primary=None, feed=shared_data / "ipsum" / "ipsum-2026-08-22.txt")
    result = run_module(env, "--once")
    assert result.returncode == 1
    assert '"worker stopped"' in result.stderr
    assert "Traceback" not in result.stderr


def test_long_running_worker_waits_for_redis_then_publishes(tmp_path: Path, shared_data: Path) -> None:
    """Started before Redis (a roll-out), the worker waits instead of crash-looping."""
    port = free_port()
    env = worker_env(tmp_path, primary=None, feed=shared_data / "spamhaus" / "drop" / "drop-2025-01-17.txt")
    env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    env["BLOCKLIST_FEEDS"] = env["BLOCKLIST_FEEDS"].replace("ipsum=ipsum:", "drop=spamhaus:")
    log_path = tmp_path / "worker.log"
    with worker_process(env, log_path) as worker:
        wait_for(lambda: "redis not reachable at start; waiting" in log_path.read_text(), limit=20)
        assert worker.poll() is None
        with redis_server(tmp_path / "late-redis", port=port) as late:
            client = redis.Redis.from_url(late.url)
            try:
                wait_for(lambda: client.hget(keys.META, "number") is not None, limit=30)
            finally:
                client.close()
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=20) == 0
    assert "Traceback" not in log_path.read_text()


def test_worker_stopped_while_waiting_for_redis_exits_0(tmp_path: Path, shared_data: Path) -> None:
    env = worker_env(tmp_path, primary=None, feed=shared_data / "ipsum" / "ipsum-2026-08-22.txt")
    log_path = tmp_path / "worker.log"
    with worker_process(env, log_path) as worker:
        wait_for(lambda: "redis not reachable at start; waiting" in log_path.read_text(), limit=20)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=10) == 0


def test_two_updaters_at_once_publish_each_version_exactly_once(
    tmp_path: Path, shared_data: Path, primary_and_replica: tuple[RedisServer, RedisServer]
) -> None:
    """Two real workers race: the lock serializes them, no number is published twice."""
    primary, _ = primary_and_replica
    feed = shared_data / "ipsum" / "ipsum-2026-08-22.txt"
    envs = [
        {**worker_env(tmp_path / name, primary, feed), "BLOCKLIST_WORKER_ID": name} for name in ("one", "two")
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "blocklistupdater", "--once"], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        for env in envs
    ]  # fmt: skip
    outputs = [proc.communicate(timeout=90) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    published = [
        json.loads(line)["version"]
        for _, err in outputs
        for line in err.splitlines()
        if '"version published to redis"' in line
    ]
    print(f"published: {published}")
    assert published, outputs
    assert len(published) == len(set(published)), f"a number was published twice: {published}"
    client = redis.Redis.from_url(primary.url)
    try:
        live = decode_version(client.get(keys.SNAPSHOT))  # type: ignore[arg-type]
        assert live.number == max(published)
        assert int(client.hget(keys.META, "number")) == live.number  # type: ignore[arg-type]
        assert client.hget(keys.META, "checksum").decode() == live.checksum  # type: ignore[union-attr]
        assert live.feeds[0].entries == 120430
    finally:
        client.close()
