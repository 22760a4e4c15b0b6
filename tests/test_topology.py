"""The distributed topology end to end, every part a real process: a local
HTTP feed server, a Redis primary and replica, the updater worker, and two
API replicas (uvicorn) reading the Redis replica.

One scenario, in order: first publish and serve; a new version reaches both
API replicas in under a second (pub/sub, the poll is set to 30 s); the
updater killed in the middle of a publish leaves the live version whole and
no temporary key behind once their TTL passes, and the next run completes;
the Redis primary killed, then the replica: the API replicas keep answering
every request correctly and report the degradation.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import redis

from blocklist import rediskeys as keys
from tests.apiprocess import server, wait_ready
from tests.redisserver import redis_server

pytestmark = pytest.mark.integration

#: Addresses the scenario adds to the feed, one per new version.
ADDED = ("198.51.100.77", "198.51.100.78", "198.51.100.79")
UNLISTED = "192.0.2.1"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def feed_server(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on a free port (Last-Modified, 304s); yield its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def wait_for(predicate: Callable[[], bool], limit: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < limit, f"{what}: not reached within {limit}s"
        time.sleep(0.005)
    return time.monotonic() - start


def live_number(client: redis.Redis) -> int | None:
    raw = client.hget(keys.META, "number")
    return int(raw) if raw is not None else None


def temp_keys(client: redis.Redis) -> list[bytes]:
    return list(client.scan_iter(match=keys.PREFIX + "tmp:*", count=1000))


def answer(base: str, address: str) -> tuple[int, object, str | None]:
    response = httpx.get(f"{base}/check_ip/{address}", timeout=2)
    return response.status_code, response.json(), response.headers.get("x-blocklist-version")


def test_whole_topology(tmp_path: Path, shared_data: Path) -> None:
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    feed = feeds / "ipsum.txt"
    base_feed = (shared_data / "ipsum" / "ipsum-2026-08-22.txt").read_text()
    listed = next(line.split()[0] for line in base_feed.splitlines() if line and not line.startswith("#"))
    feed.write_text(base_feed)

    with ExitStack() as stack:
        primary = stack.enter_context(redis_server(tmp_path / "primary"))
        replica = stack.enter_context(redis_server(tmp_path / "replica", replica_of=primary))
        feed_base = stack.enter_context(feed_server(feeds))
        writer = redis.Redis.from_url(primary.url)
        stack.callback(writer.close)
        common = {
            "REDIS_URL": primary.url,
            "BLOCKLIST_FEEDS": f"ipsum=ipsum:{feed_base}/ipsum.txt",
            "BLOCKLIST_BOOTSTRAP": "false",
            "BLOCKLIST_RETRY_ATTEMPTS": "1",
        }
        worker_env = {
            **os.environ,
            **common,
            "BLOCKLIST_STATE_DIR": str(tmp_path / "worker-state"),
            "BLOCKLIST_TEMP_KEY_TTL": "2",
            "BLOCKLIST_PUBLISH_LOCK_TTL": "3",
        }

        def worker_once() -> subprocess.Popen[bytes]:
            log = (tmp_path / "worker.log").open("ab")
            stack.callback(log.close)
            return subprocess.Popen(
                [sys.executable, "-m", "blocklistupdater", "--once"], env=worker_env, stdout=log, stderr=log
            )

        # 1. First publish, then two API replicas load it from the Redis replica.
        assert worker_once().wait(timeout=60) == 0
        first = live_number(writer)
        assert first is not None
        api_env = {
            **common,
            "BLOCKLIST_REDIS_READ_URL": replica.url,
            "BLOCKLIST_VERSION_POLL_INTERVAL": "30",
        }
        apis = []
        for i in range(2):
            env = {**api_env, "BLOCKLIST_STATE_DIR": str(tmp_path / f"api{i}")}
            base, proc = stack.enter_context(server(env, tmp_path / f"api{i}.log"))
            wait_ready(base, proc)
            apis.append(base)
        for base in apis:
            assert answer(base, listed) == (200, {"blocked": True}, str(first))
            assert answer(base, UNLISTED) == (200, {"blocked": False}, str(first))

        # 2. A new version reaches both API replicas within a second of going live.
        feed.write_text(base_feed + f"{ADDED[0]}\t9\n")
        worker = worker_once()
        wait_for(lambda: live_number(writer) == first + 1, 60, "second version live")
        live_at = time.monotonic()
        for base in apis:
            wait_for(lambda b=base: answer(b, ADDED[0])[1] == {"blocked": True}, 5, "propagation")  # type: ignore[misc]
        propagation = time.monotonic() - live_at
        assert worker.wait(timeout=60) == 0
        print(f"propagation to both API replicas: {propagation * 1000:.0f} ms")
        assert propagation < 1.0

        # 3. The updater killed while it writes the next version's temporary keys.
        feed.write_text(base_feed + f"{ADDED[0]}\t9\n{ADDED[1]}\t9\n")
        for _ in range(5):
            before = live_number(writer)
            worker = worker_once()
            try:
                wait_for(
                    lambda w=worker: bool(temp_keys(writer)) or w.poll() is not None,  # type: ignore[misc]
                    60,
                    "publish started",
                )
            finally:
                worker.send_signal(signal.SIGKILL)
                worker.wait()
            if temp_keys(writer) and live_number(writer) == before:
                break  # killed mid-publish, as intended; else the publish won the race
        else:
            pytest.fail("the updater was never caught in the middle of a publish")
        for base in apis:  # the live version is the old one, whole
            assert answer(base, ADDED[1])[1] == {"blocked": False}
            assert answer(base, ADDED[0]) == (200, {"blocked": True}, str(before))
        wait_for(lambda: not temp_keys(writer), 10, "temporary keys expired")
        assert worker_once().wait(timeout=60) == 0  # waits out the dead holder's lock
        after = live_number(writer)
        assert after is not None
        assert after > (before or 0)
        for base in apis:
            wait_for(lambda b=base: answer(b, ADDED[1])[1] == {"blocked": True}, 5, "next run served")  # type: ignore[misc]

        # 4. Redis primary killed, then the replica: answers never stop or change.
        def all_correct() -> None:
            for base in apis:
                assert answer(base, listed) == (200, {"blocked": True}, str(after))
                assert answer(base, UNLISTED) == (200, {"blocked": False}, str(after))

        primary.proc.kill()
        primary.proc.wait()
        all_correct()
        replica.proc.kill()
        replica.proc.wait()
        deadline = time.monotonic() + 10
        degraded = 0
        while degraded < len(apis):
            assert time.monotonic() < deadline, "replicas never reported Redis as unreachable"
            all_correct()
            degraded = sum(
                httpx.get(f"{b}/status", timeout=2).json()["redis"]["reachable"] is False for b in apis
            )
            time.sleep(0.05)
        for base in apis:
            assert httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            assert "blocklist_redis_up 0.0" in httpx.get(f"{base}/metrics", timeout=2).text
