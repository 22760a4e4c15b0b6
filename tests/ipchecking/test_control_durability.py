"""Embedded mode: a change acknowledged by the API survives kill -9 of the process
at once (SQLite WAL, synchronous=FULL), repeatedly."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from ipchecking.auth import key_digest
from tests.apiprocess import server, wait_ready
from tests.ipchecking.apphelpers import SMALL_FEED

pytestmark = pytest.mark.integration

ADMIN = "admin-key-for-the-durability-test"


def test_acknowledged_changes_survive_kill_9(tmp_path: Path) -> None:
    feed = tmp_path / "feed.txt"
    feed.write_text(SMALL_FEED)
    env = {
        "BLOCKLIST_FEEDS": f"local=plain:{feed}",
        "BLOCKLIST_STATE_DIR": str(tmp_path / "state"),
        "BLOCKLIST_BOOTSTRAP": "false",
        "BLOCKLIST_API_KEYS": key_digest(ADMIN),
    }
    admin = {"Authorization": f"Bearer {ADMIN}"}
    acknowledged: list[str] = []
    for life in range(4):
        with server(env, tmp_path / f"api-{life}.log") as (base, proc):
            wait_ready(base, proc)
            for network in acknowledged:  # everything acknowledged in earlier lives is there
                assert httpx.get(f"{base}/check_ip/{network.partition('/')[0]}").json() == {"blocked": True}
            reports = [{"ip": f"192.0.2.{life}", "violation": "scan"}] * 2
            assert httpx.post(f"{base}/v1/reports", json=reports, headers=admin).status_code == 200
            network = f"203.0.113.{life}/32"
            made = httpx.post(
                f"{base}/v1/overrides", json={"network": network, "action": "block"}, headers=admin
            )
            assert made.status_code == 201
            acknowledged.append(network)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    with server(env, tmp_path / "api-last.log") as (base, proc):
        wait_ready(base, proc)
        listed = httpx.get(f"{base}/v1/overrides?limit=100", headers=admin).json()
        assert [o["network"] for o in listed["overrides"]] == acknowledged
        for life in range(4):
            assert httpx.get(f"{base}/check_ip/192.0.2.{life}").json() == {"blocked": True}
        assert httpx.get(f"{base}/check_ip/192.0.2.9").json() == {"blocked": False}
