"""The Locust load test (``loadtest/locustfile.py``) against a real API process.

Locust monkey-patches the standard library with gevent, so it only ever runs
as a subprocess here; this module never imports it.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.apiprocess import server, wait_ready

pytestmark = pytest.mark.integration

LOCUSTFILE = Path(__file__).resolve().parents[2] / "loadtest" / "locustfile.py"
LOCUST = Path(sys.executable).parent / "locust"
GROUPS = ("listed", "unlisted", "ipv6", "invalid")
LISTED = ("77.90.185.20", "2.57.122.53", "45.154.244.193", "80.82.77.33", "2a0e:1c80::1", "2a0e:1c80::2")


def read_stats(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def test_locust_mix_runs_clean_against_a_real_server(tmp_path: Path) -> None:
    """Every group of the mix is exercised, listed addresses answer blocked,
    invalid inputs 422, and Locust counts no failure (exit code 0)."""
    feed = tmp_path / "listed.txt"
    feed.write_text("# a tiny plain feed\n" + "\n".join(LISTED) + "\n")
    listed_for_locust = tmp_path / "locust-listed.txt"
    listed_for_locust.write_text("# ip<TAB>score, as ipsum\n" + "".join(f"{ip}\t3\n" for ip in LISTED))
    env = {
        "BLOCKLIST_FEEDS": f"tiny=plain:{feed}",
        "BLOCKLIST_STATE_DIR": str(tmp_path / "state"),
        "BLOCKLIST_BOOTSTRAP": "false",
        "BLOCKLIST_RETRY_ATTEMPTS": "1",
    }
    with server(env, tmp_path / "server.log") as (base, proc):
        wait_ready(base, proc)
        start = time.monotonic()
        result = subprocess.run(
            [
                str(LOCUST),
                "-f",
                str(LOCUSTFILE),
                "--headless",
                "-u",
                "10",
                "-r",
                "10",
                "-t",
                "5s",
                "--only-summary",
                "--csv",
                str(tmp_path / "stats"),
                "--exit-code-on-error",
                "1",
                "--host",
                base,
            ],
            # cwd without a locust.conf or pyproject.toml for Locust to pick up.
            cwd=tmp_path,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "LOADTEST_"))},
                "LOADTEST_LISTED_FILE": str(listed_for_locust),
                "LOADTEST_EXPECT_LISTED": "1",
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        elapsed = time.monotonic() - start
        assert proc.poll() is None, "server exited during the load test"

    output = result.stdout[-3000:] + result.stderr[-3000:]
    failures_csv = tmp_path / "stats_failures.csv"
    failures = failures_csv.read_text() if failures_csv.exists() else ""
    assert result.returncode == 0, f"locust exit code {result.returncode}:\n{failures}\n{output}"
    assert elapsed < 30, f"locust took {elapsed:.1f}s"

    stats = read_stats(tmp_path / "stats_stats.csv")
    total = stats["Aggregated"]
    assert int(total["Failure Count"]) == 0, f"{failures}\n{output}"
    assert failures.count("\n") <= 1, failures  # header only
    counts = {g: int(stats[f"/check_ip/[{g}]"]["Request Count"]) for g in GROUPS}
    assert all(int(stats[f"/check_ip/[{g}]"]["Failure Count"]) == 0 for g in GROUPS)
    assert sum(counts.values()) == int(total["Request Count"]), stats.keys()
    assert sum(counts.values()) >= 500, counts
    assert min(counts.values()) >= 10, counts
    # Weights 80/10/7/3: far more than 5 standard deviations of slack at 500 requests.
    assert 0.7 < counts["unlisted"] / sum(counts.values()) < 0.9, counts
