"""The real server: ``python -m ipchecking`` as a subprocess on a free port,
queried over TCP, fed from copies of the real feed files."""

from __future__ import annotations

import ipaddress
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.apiprocess import server, wait_ready
from tests.redisserver import free_port

pytestmark = pytest.mark.integration

FEEDS = {
    "ipsum": ("ipsum", "ipsum/ipsum-2026-08-22.txt"),
    "drop": ("spamhaus", "spamhaus/drop/drop-2025-01-17.txt"),
    "dropv6": ("spamhaus", "spamhaus/dropv6/dropv6-2025-01-15.txt"),
    "firehol": ("netset", "firehol/firehol_level1-2020-08-19.netset"),
}


@pytest.fixture
def feed_copies(tmp_path: Path, shared_data: Path) -> dict[str, Path]:
    copies = {}
    for name, (_, rel) in FEEDS.items():
        copies[name] = tmp_path / "feeds" / Path(rel).name
        copies[name].parent.mkdir(exist_ok=True)
        shutil.copy(shared_data / rel, copies[name])
    return copies


def env_for(tmp_path: Path, copies: dict[str, Path]) -> dict[str, str]:
    feeds = ",".join(f"{n}={FEEDS[n][0]}:{p}" for n, p in copies.items())
    return {
        "BLOCKLIST_FEEDS": feeds,
        "BLOCKLIST_STATE_DIR": str(tmp_path / "state"),
        "BLOCKLIST_BOOTSTRAP": "false",
        "BLOCKLIST_RETRY_ATTEMPTS": "1",
    }


def feed_networks(path: Path) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for line in path.read_text().splitlines():
        token = line.split(";")[0].split("#")[0].split()
        if token:
            nets.append(ipaddress.ip_network(token[0], strict=False))
    return nets


@pytest.mark.parametrize("http_server", ["uvicorn", "granian"])
def test_server_answers_feed_members_over_tcp_and_stops_on_sigterm(
    tmp_path: Path, feed_copies: dict[str, Path], http_server: str
) -> None:
    """Every sampled listed address and CIDR edge is blocked; neighbours are
    judged against a brute-force check with the ``ipaddress`` module. Under
    either HTTP server, SIGTERM runs the app's shutdown and logs stay JSON."""
    rng = random.Random(7)
    ipsum = [
        line.split("\t")[0] for line in feed_copies["ipsum"].read_text().splitlines() if line[:1].isdigit()
    ]
    nets = [n for name in ("drop", "dropv6", "firehol") for n in feed_networks(feed_copies[name])]
    ipsum_set = {ipaddress.ip_address(a) for a in ipsum}

    def expected(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return addr in ipsum_set or any(addr.version == n.version and addr in n for n in nets)

    probes: dict[str, bool] = dict.fromkeys(rng.sample(ipsum, 400), True)
    for net in rng.sample(nets, 200) + [n for n in nets if n.version == 6]:
        probes[str(net[0])] = True
        probes[str(net[-1])] = True
        for outside in (int(net[0]) - 1, int(net[-1]) + 1):
            if 0 <= outside < 2**net.max_prefixlen:
                addr = ipaddress.ip_address(outside) if net.version == 4 else ipaddress.IPv6Address(outside)
                probes[str(addr)] = expected(addr)
    for _ in range(200):
        addr = ipaddress.IPv4Address(rng.getrandbits(32))
        probes[str(addr)] = expected(addr)
    probes["::ffff:" + ipsum[0]] = True
    assert any(not v for v in probes.values())
    assert any(probes.values())

    env = {**env_for(tmp_path, feed_copies), "BLOCKLIST_SERVER": http_server}
    with server(env, tmp_path / "server.log") as (base, proc):
        wait_ready(base, proc)
        with httpx.Client(base_url=base, timeout=5) as client:
            wrong = []
            for address, blocked in probes.items():
                response = client.get(f"/check_ip/{address}")
                assert response.status_code == 200, (address, response.text)
                if response.json() != {"blocked": blocked}:
                    wrong.append(address)
            assert wrong == []
            bad = client.get("/check_ip/010.1.1.1")
            assert bad.status_code == 422
            assert "leading zeros" in bad.json()["detail"]
            status = client.get("/status").json()
            assert set(status["feeds"]) == set(FEEDS)
            assert status["feeds"]["ipsum"]["entries"] == 120430
            assert "/check_ip/{ip}" in client.get("/metrics").text
        proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal after its graceful shutdown.
        assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
    log_lines = (tmp_path / "server.log").read_text().splitlines()
    assert any('"service started"' in line for line in log_lines)
    assert any('"service stopped"' in line for line in log_lines)
    assert [line for line in log_lines if not line.startswith("{")] == [], "every log line is one JSON object"


def test_restart_is_ready_from_state_without_its_feeds(tmp_path: Path, feed_copies: dict[str, Path]) -> None:
    """After one good sync, a restart with every feed gone serves the stored version."""
    env = env_for(tmp_path, feed_copies)
    with server(env, tmp_path / "first.log") as (base, proc):
        wait_ready(base, proc)
        listed = feed_copies["ipsum"].read_text().splitlines()[-1].split("\t")[0]
        assert httpx.get(f"{base}/check_ip/{listed}").json() == {"blocked": True}
    for path in feed_copies.values():
        path.unlink()
    with server(env, tmp_path / "second.log") as (base, proc):
        seconds = wait_ready(base, proc)
        response = httpx.get(f"{base}/check_ip/{listed}")
        assert response.json() == {"blocked": True}
        assert response.headers["x-blocklist-version"] == "1"
    print(f"restart ready in {seconds:.2f}s")


def test_invalid_settings_exit_with_a_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ipchecking", "--port", str(free_port())],
        env={**os.environ, "BLOCKLIST_FEEDS": "x=gopher://example.org/list"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "gopher" in result.stderr
