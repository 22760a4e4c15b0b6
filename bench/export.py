"""``GET /v1/export``: time, size and memory per format, and what a poll answered 304 costs.

For each data set (ipsum, and a synthetic feed of ``--ranges`` entries:
90 % addresses, 9 % IPv4 CIDRs, 1 % IPv6 /48s), one embedded API process
serves it; every format is downloaded ``--rounds`` times, alternated, and
the median wall time, the size and the server's peak RSS growth over all
the downloads (streamed exports should need little beyond the version
itself) are reported. Then, on the ipsum server, wrk alternates a poll
that presents the export's ETag (``If-None-Match``, answered 304) with
single ``GET /check_ip`` lookups, and reports the 304's cost as ratios to
a lookup (throughput and server CPU per request).

    .venv/bin/python -m bench.export --rounds 3 --duration 10
    .venv/bin/python -m bench.export --quick

Needs ``wrk`` (Debian package ``wrk``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.batch import addresses
from bench.control import Run, api_server, embedded_env, median_run, run_wrk
from bench.versions import ROOT, synthetic_feed
from blocklist.exportformats import FORMATS

POLL_LUA = """-- GET /v1/export?format=nginx presenting $ETAG: a poll that finds nothing new.
local headers = {["If-None-Match"] = os.getenv("ETAG")}
request = function()
  return wrk.format("GET", "/v1/export?format=nginx", headers)
end
"""


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def download(client: httpx.Client, fmt: str) -> tuple[float, int, int]:
    """(seconds, bytes, chunks) of one full export in ``fmt``."""
    start = time.perf_counter()
    size = chunks = 0
    with client.stream("GET", "/v1/export", params={"format": fmt}) as answer:
        assert answer.status_code == 200, answer.read()
        for chunk in answer.iter_raw():
            size += len(chunk)
            chunks += 1
    return time.perf_counter() - start, size, chunks


def measure_formats(base: str, pid: int, rounds: int) -> dict[str, Any]:
    """Median seconds and bytes per format, networks exported, peak RSS before and after."""
    with httpx.Client(base_url=base, timeout=600) as client:
        networks = len(client.get("/v1/export", params={"format": "plain"}).text.splitlines())
        rss_before = peak_rss_mb(pid)
        times: dict[str, list[float]] = {fmt: [] for fmt in FORMATS}
        sizes: dict[str, int] = {}
        for _ in range(rounds):
            for fmt in FORMATS:
                seconds, size, chunks = download(client, fmt)
                assert chunks > 1 or size < 1 << 16, f"{fmt}: {size} bytes in one chunk"
                times[fmt].append(seconds)
                sizes[fmt] = size
    return {
        "networks": networks,
        "seconds": {fmt: statistics.median(v) for fmt, v in times.items()},
        "bytes": sizes,
        "peak_rss_mb_before": rss_before,
        "peak_rss_mb_after": peak_rss_mb(pid),
    }


def measure_polls(
    base: str, proc: Any, tmp: Path, rounds: int, duration: float, connections: int
) -> dict[str, Any]:
    """wrk: 304 polls against single lookups, alternated; medians and ratios."""
    with httpx.Client(base_url=base, timeout=60) as client:
        etag = client.head("/v1/export", params={"format": "nginx"}).headers["etag"]
        assert client.get("/v1/export?format=nginx", headers={"if-none-match": etag}).status_code == 304
    poll = tmp / "poll.lua"
    poll.write_text(POLL_LUA)
    addr_file = tmp / "addresses.txt"
    addr_file.write_text("\n".join(addresses(20_000)) + "\n")
    cycle = ROOT / "bench" / "cycle.lua"
    runs: dict[str, list[Run]] = {"check_ip": [], "poll_304": []}
    run_wrk(base, cycle, {"ADDR_FILE": str(addr_file)}, connections, 1, proc)  # warm-up
    for _ in range(rounds):
        runs["check_ip"].append(
            run_wrk(base, cycle, {"ADDR_FILE": str(addr_file)}, connections, duration, proc)
        )
        runs["poll_304"].append(run_wrk(base, poll, {"ETAG": etag}, connections, duration, proc))
    pairs = list(zip(runs["check_ip"], runs["poll_304"], strict=True))
    return {
        "medians": {k: vars(median_run(v)) for k, v in runs.items()},
        "cpu_ratio": statistics.median(p.cpu_us_per_request / c.cpu_us_per_request for c, p in pairs),
        "rps_ratio": statistics.median(p.rps / c.rps for c, p in pairs),
    }


def report(name: str, result: dict[str, Any]) -> None:
    print(
        f"\n{name}: {result['networks']} networks exported; server peak RSS "
        f"{result['peak_rss_mb_before']:.0f} MiB before the downloads, "
        f"{result['peak_rss_mb_after']:.0f} after"
    )
    print(f"{'format':10} {'seconds':>9} {'MB':>9}")
    for fmt in FORMATS:
        print(f"{fmt:10} {result['seconds'][fmt]:9.3f} {result['bytes'][fmt] / 1e6:9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--ranges", type=int, default=1_000_000, help="entries of the synthetic feed")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--quick", action="store_true", help="1 round, 1 s wrk runs, 50,000 synthetic entries"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.ranges = 1, 1.0, 50_000
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install wrk")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        feed = tmp / "synthetic.txt"
        feed.write_bytes(synthetic_feed(args.ranges))
        print(
            f"export: embedded API processes; every format downloaded {args.rounds} times (alternated); "
            f"304 polls against GET /check_ip, wrk -t1 -c{args.connections}, {args.duration:g} s each"
        )
        with api_server(tmp, "ipsum", embedded_env()) as (base, proc):
            results["ipsum"] = measure_formats(base, proc.pid, args.rounds)
            report("ipsum", results["ipsum"])
            results["polls"] = measure_polls(base, proc, tmp, args.rounds, args.duration, args.connections)
        synthetic_env = {"BLOCKLIST_FEEDS": f"synthetic=netset:{feed}", "BLOCKLIST_BOOTSTRAP": "false"}
        with api_server(tmp, "synthetic", synthetic_env) as (base, proc):
            results["synthetic"] = measure_formats(base, proc.pid, args.rounds)
            report(f"synthetic ({args.ranges} entries)", results["synthetic"])
    polls = results["polls"]
    print(f"\n{'':9} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11} {'errors':>7}")
    for label, run in polls["medians"].items():
        print(
            f"{label:9} {run['rps']:10.0f} {run['p50_ms']:8.2f} {run['p99_ms']:8.2f} "
            f"{run['cpu_us_per_request']:11.1f} {run['errors']:7d}"
        )
    print(
        f"a 304 poll costs {polls['cpu_ratio']:.2f}x a /check_ip lookup in server CPU "
        f"({polls['rps_ratio']:.2f}x its throughput)"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
