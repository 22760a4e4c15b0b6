"""Start-up time and memory of the embedded service, alternated in one run.

Configurations, each started ``--rounds`` times in turn (A B C A B C ...):

- ``cold``: empty state dir, ipsum feed from a local file (parse + compile);
- ``restart``: the state dir of a previous run, feed file gone (load only);
- ``tiny``: a one-line feed, as the memory baseline.

Reports median seconds from process start to ``/readyz`` 200 and median RSS
once ready; the RSS difference ipsum minus tiny is what the ipsum data costs.

    .venv/bin/python -m bench.startup_memory --rounds 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.versions import IPSUM
from tests.redisserver import free_port, stop_process


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def start_and_measure(feed: Path, state: Path) -> tuple[float, float]:
    port = free_port()
    env = {
        **os.environ,
        "BLOCKLIST_FEEDS": f"f=ipsum:{feed}",
        "BLOCKLIST_STATE_DIR": str(state),
        "BLOCKLIST_BOOTSTRAP": "false",
        "BLOCKLIST_LOG_LEVEL": "WARNING",
    }
    begin = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ipchecking", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() - begin > 60:
                raise SystemExit("server did not become ready")
            time.sleep(0.01)
        ready = time.monotonic() - begin
        time.sleep(1.0)  # let the background restore/sync settle before reading memory
        return ready, rss_mib(proc.pid)
    finally:
        stop_process(proc, timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"cold": [], "restart": [], "tiny": []}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        tiny = tmp / "tiny.txt"
        tiny.write_text("192.0.2.1\t1\n")
        for i in range(args.rounds):
            feed = tmp / f"ipsum-{i}.txt"
            shutil.copy(IPSUM, feed)
            state = tmp / f"state-{i}"
            results["cold"].append(start_and_measure(feed, state))
            feed.unlink()
            results["restart"].append(start_and_measure(feed, state))
            results["tiny"].append(start_and_measure(tiny, tmp / f"tiny-state-{i}"))
    print(f"{'config':<10}{'ready s':>10}{'RSS MiB':>10}")
    med = {}
    for name, runs in results.items():
        med[name] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
        print(f"{name:<10}{med[name][0]:>10.2f}{med[name][1]:>10.1f}")
    print(
        f"restart/cold ready time: {med['restart'][0] / med['cold'][0]:.2f}x; "
        f"ipsum data RSS over tiny: {med['restart'][1] - med['tiny'][1]:.1f} MiB (restart), "
        f"{med['cold'][1] - med['tiny'][1]:.1f} MiB (cold)"
    )


if __name__ == "__main__":
    main()
