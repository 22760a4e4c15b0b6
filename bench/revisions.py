"""``/check_ip`` throughput of this tree against an earlier revision, alternated in one run.

The earlier revision (``--base``, any git revision) is checked out into a
temporary worktree; one embedded API process (ipsum, the same settings) is
started from each tree, and ``wrk -t1 -c64`` over ``http_throughput.py``'s
address list alternates between them. Requests/s, latency and server CPU
per request, and the ratios this tree / base. With ``--dnsbl`` this tree's
process also has its DNSBL listener on (idle), where the base has none.

    .venv/bin/python -m bench.revisions --base 09b07ba --rounds 5 --duration 10
    .venv/bin/python -m bench.revisions --base HEAD~1 --quick

Needs ``wrk`` and ``git``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.apiprocess import api_process
from bench.control import Run, embedded_env, median_run, run_wrk
from bench.http_throughput import write_addresses
from bench.versions import ROOT
from tests.redisserver import free_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the git revision to compare with")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--addresses", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--dnsbl", action="store_true", help="this tree's process also serves DNSBL (idle)")
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s, 20,000 addresses")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.addresses = 1, 1.0, 20_000
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install wrk")
    base_rev = subprocess.run(
        ["git", "rev-parse", "--short", args.base], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    runs: dict[str, list[Run]] = {"base": [], "this": []}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        tree = tmp / "base-tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--quiet", str(tree), base_rev], cwd=ROOT, check=True
        )
        try:
            addr_file = tmp / "addresses.txt"
            listed = write_addresses(addr_file, args.addresses)
            extra = {}
            if args.dnsbl:
                extra = {"BLOCKLIST_DNSBL_ZONE": "bl.example.org", "BLOCKLIST_DNSBL_PORT": str(free_port())}
            print(
                f"revisions: {base_rev} against this tree{' (DNSBL on, idle)' if args.dnsbl else ''}; "
                f"{args.addresses} distinct addresses, {listed} listed; wrk -t1 -c{args.connections} "
                f"-d{args.duration:g}s, {args.rounds} rounds, alternated"
            )
            cycle = ROOT / "bench" / "cycle.lua"
            env = {"ADDR_FILE": str(addr_file)}
            with (
                api_process(tmp, "base", embedded_env(), cwd=tree) as (base_url, base_proc),
                api_process(tmp, "this", {**embedded_env(), **extra}) as (this_url, this_proc),
            ):
                servers = {"base": (base_url, base_proc), "this": (this_url, this_proc)}
                for url, proc in servers.values():
                    run_wrk(url, cycle, env, args.connections, 2, proc)  # warm-up
                for _ in range(args.rounds):
                    for label, (url, proc) in servers.items():
                        runs[label].append(run_wrk(url, cycle, env, args.connections, args.duration, proc))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    medians = {k: median_run(v) for k, v in runs.items()}
    pairs = list(zip(runs["base"], runs["this"], strict=True))
    rps_ratio = statistics.median(t.rps / b.rps for b, t in pairs)
    cpu_ratio = statistics.median(t.cpu_us_per_request / b.cpu_us_per_request for b, t in pairs)
    print(f"{'':6} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11} {'errors':>7}")
    for label, run in medians.items():
        print(
            f"{label:6} {run.rps:10.0f} {run.p50_ms:8.2f} {run.p99_ms:8.2f} "
            f"{run.cpu_us_per_request:11.1f} {run.errors:7d}"
        )
    print(f"this / {base_rev}: {rps_ratio:.3f}x requests/s, {cpu_ratio:.3f}x server CPU per request")
    if args.json:
        result: dict[str, Any] = {
            "base": base_rev,
            "medians": {k: vars(v) for k, v in medians.items()},
            "rps_ratio": rps_ratio,
            "cpu_ratio": cpu_ratio,
        }
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
