"""The service as a benchmark's server: ``python -m ipchecking`` on a free port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.versions import ROOT
from tests.redisserver import free_port, stop_process


@contextmanager
def api_process(
    tmp: Path, name: str, settings: Mapping[str, str], *, cwd: Path = ROOT
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start the API from ``cwd`` with only ``settings`` as its ``BLOCKLIST_*``/``REDIS_*``
    environment (state in ``tmp``/state-``name``, warnings only, log in ``tmp``/``name``.log);
    yield its base URL and process once ``/readyz`` answers 200. Exits the benchmark if it
    does not start within 90 s."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BLOCKLIST_", "REDIS_"))}
    env |= {"BLOCKLIST_STATE_DIR": str(tmp / f"state-{name}"), "BLOCKLIST_LOG_LEVEL": "WARNING", **settings}
    log = (tmp / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ipchecking", "--port", str(port)], cwd=cwd, env=env, stdout=log, stderr=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} did not start; see {tmp / (name + '.log')}")
            time.sleep(0.2)
        yield base, proc
    finally:
        stop_process(proc, timeout=15)
        log.close()
