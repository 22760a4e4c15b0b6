"""SIGTERM during load, two real replicas: the stopped one finishes what it
has accepted and exits cleanly; clients of the other see no error at all."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.apiprocess import server, wait_ready

pytestmark = pytest.mark.integration

FEED = "192.0.2.1\n198.51.100.0/24\n"
PROBES = {
    "192.0.2.1": b'{"blocked": true}',
    "198.51.100.9": b'{"blocked": true}',
    "8.8.8.8": b'{"blocked": false}',
}


def replica_env(tmp_path: Path, name: str, http_server: str) -> dict[str, str]:
    feed = tmp_path / "feed.txt"
    feed.write_text(FEED)
    return {
        "BLOCKLIST_FEEDS": f"local=plain:{feed}",
        "BLOCKLIST_STATE_DIR": str(tmp_path / f"state-{name}"),
        "BLOCKLIST_BOOTSTRAP": "false",
        "BLOCKLIST_SERVER": http_server,
    }


def hammer(base: str, stop: threading.Event, tally: Counter[str], lock: threading.Lock) -> None:
    """Send lookups over one keep-alive connection until ``stop``; tally every outcome."""
    with httpx.Client(base_url=base, timeout=5) as client:
        while not stop.is_set():
            for address, body in PROBES.items():
                try:
                    response = client.get(f"/check_ip/{address}")
                except httpx.TransportError:
                    outcome = "connection error"
                else:
                    right = response.status_code == 200 and response.content == body
                    outcome = "right" if right else f"wrong {response.status_code}"
                with lock:
                    tally[outcome] += 1


@pytest.mark.parametrize("http_server", ["uvicorn", "granian"])
def test_sigterm_under_load_loses_no_answer(tmp_path: Path, http_server: str) -> None:
    with (
        server(replica_env(tmp_path, "a", http_server), tmp_path / "a.log") as (base_a, proc_a),
        server(replica_env(tmp_path, "b", http_server), tmp_path / "b.log") as (base_b, proc_b),
    ):
        wait_ready(base_a, proc_a)
        wait_ready(base_b, proc_b)
        stop, lock = threading.Event(), threading.Lock()
        tally_a: Counter[str] = Counter()
        tally_b: Counter[str] = Counter()
        workers = [
            threading.Thread(target=hammer, args=(base, stop, tally, lock))
            for base, tally in [(base_a, tally_a)] * 4 + [(base_b, tally_b)] * 4
        ]
        for worker in workers:
            worker.start()
        try:
            wait_until(lambda: tally_a["right"] > 200 and tally_b["right"] > 200)
            before_term = dict(tally_a)
            proc_a.send_signal(signal.SIGTERM)
            exit_code = proc_a.wait(timeout=20)
            time.sleep(0.5)  # replica B keeps serving its clients meanwhile
        finally:
            stop.set()
            for worker in workers:
                worker.join(timeout=10)
    assert exit_code in (0, -signal.SIGTERM)
    # The stopped replica: every answer it gave was right; after SIGTERM its
    # clients only ever see the connection refused or closed, never an error status.
    assert set(tally_a) <= {"right", "connection error"}, tally_a
    assert before_term.get("connection error", 0) == 0
    # The other replica: not a single error of any kind.
    assert set(tally_b) == {"right"}, tally_b
    log_a = (tmp_path / "a.log").read_text()
    assert '"service stopped"' in log_a
    assert "Traceback" not in log_a


def wait_until(predicate: Callable[[], bool], limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)
