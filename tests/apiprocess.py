"""The API as a real process: ``python -m ipchecking`` on a free port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.redisserver import free_port, stop_process


@contextmanager
def server(env: dict[str, str], log_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start the API on a free port; yield its base URL; stop it with SIGTERM."""
    port = free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ipchecking", "--host", "127.0.0.1", "--port", str(port)],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield f"http://127.0.0.1:{port}", proc
        finally:
            # Longer than the server's own 10 s graceful shutdown.
            stop_process(proc, timeout=15)


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> float:
    """Seconds until ``/readyz`` answered 200; fails if the process exits."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        assert proc.poll() is None, "server exited during start-up"
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return time.monotonic() - start
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("server never became ready")
