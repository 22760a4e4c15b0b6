"""Real ``redis-server`` processes (servers and Sentinels) for integration
tests: free ports, temp dirs, stopped by the fixture that started them.
Never the machine's own."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RedisServer:
    """One running server; ``url`` is what clients use."""

    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _wait_for_initial_sync(port: int, deadline: float) -> None:
    """Until the replica on ``port`` finished its first full sync from its primary."""
    client = redis.Redis(port=port, socket_timeout=2)
    try:
        while True:
            info = client.info("replication")
            if info.get("master_link_status") == "up" and not info.get("master_sync_in_progress"):
                return
            assert time.monotonic() < deadline, "replica did not finish its first sync"
            time.sleep(0.02)
    finally:
        client.close()


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM ``proc`` and wait up to ``timeout`` seconds for it to exit, then SIGKILL it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def redis_server(
    directory: Path, *, replica_of: RedisServer | None = None, port: int | None = None, aof: bool = False
) -> Iterator[RedisServer]:
    """Start ``redis-server`` in ``directory`` on ``port`` (default: a free one); stop it on exit.

    ``aof``: persist with an append-only file (fsync every second), as the
    deployment files configure it.
    """
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (scripts/install --test installs it)"
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    # No diskless-sync delay: a replica's first full sync starts at once,
    # not five seconds in, when a test is already reading from it.
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "yes" if aof else "no",
           "--repl-diskless-sync-delay", "0",
           "--dir", str(directory), "--logfile", str(directory / "redis.log")]  # fmt: skip
    if replica_of is not None:
        cmd += ["--replicaof", "127.0.0.1", str(replica_of.port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not _ping(port):
            assert proc.poll() is None, "redis-server exited at start"
            assert time.monotonic() < deadline, "redis-server did not answer PING"
            time.sleep(0.02)
        if replica_of is not None:
            _wait_for_initial_sync(port, deadline)
        yield RedisServer(port, proc)
    finally:
        stop_process(proc)


@dataclass
class SentinelServer:
    """One running Redis Sentinel; ``address`` is what clients are given."""

    port: int
    proc: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextmanager
def sentinel_server(
    directory: Path, primary: RedisServer, *, service: str = "mymaster"
) -> Iterator[SentinelServer]:
    """Start a Sentinel in ``directory`` watching ``primary`` (quorum 2, fast
    failure detection); stop it on exit. It rewrites its config file there."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (scripts/install --test installs it)"
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = directory / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {directory}\nlogfile {directory / 'sentinel.log'}\n"
        f"sentinel monitor {service} 127.0.0.1 {primary.port} 2\n"
        f"sentinel down-after-milliseconds {service} 500\n"
        f"sentinel failover-timeout {service} 3000\n"
        f"sentinel parallel-syncs {service} 1\n"
    )
    proc = subprocess.Popen(
        [binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while not _ping(port):
            assert proc.poll() is None, "redis sentinel exited at start"
            assert time.monotonic() < deadline, "redis sentinel did not answer PING"
            time.sleep(0.02)
        yield SentinelServer(port, proc)
    finally:
        stop_process(proc)


@contextmanager
def three_sentinels(
    directory: Path, primary: RedisServer, *, service: str = "mymaster", replicas: int = 0
) -> Iterator[list[SentinelServer]]:
    """Three sentinels watching ``primary``, in ``directory``/sentinel-<n>.

    Yields once each knows the other two (a failover needs a majority to
    vote) and ``replicas`` replicas: start them replicating first, or the
    sentinels only learn of them at their next INFO, ten seconds later.
    """
    with (
        sentinel_server(directory / "sentinel-1", primary, service=service) as first,
        sentinel_server(directory / "sentinel-2", primary, service=service) as second,
        sentinel_server(directory / "sentinel-3", primary, service=service) as third,
    ):
        sentinels = [first, second, third]
        clients = [redis.Redis(port=s.port, socket_timeout=2) for s in sentinels]
        try:
            deadline = time.monotonic() + 20
            while True:
                states: list[Any] = [c.sentinel_master(service) for c in clients]
                if all(st["num-other-sentinels"] == 2 and st["num-slaves"] >= replicas for st in states):
                    break
                assert time.monotonic() < deadline, f"sentinels never found each other: {states}"
                time.sleep(0.05)
        finally:
            for client in clients:
                client.close()
        yield sentinels
