"""Cost per address of ``POST /v1/check`` against single ``GET /check_ip`` requests.

One embedded API process (ipsum); wrk loads it in alternation: single
lookups cycling over the addresses (``cycle.lua``), and batch bodies of
``--batch`` addresses each (precomputed, cycled). Half of the addresses are
listed by ipsum, half are random public IPv4 addresses it does not list.
Per-address cost is reported two ways, as ratios batch / single: from
throughput (1 / (requests/s x addresses per request)) and from the server
process's CPU time per address.

    .venv/bin/python -m bench.batch --rounds 3 --duration 10
    .venv/bin/python -m bench.batch --quick

Needs ``wrk`` (Debian package ``wrk``).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

import httpx

from bench.control import Run, api_server, embedded_env, median_run, random_global_v4, run_wrk
from bench.versions import ROOT, ipsum_addresses

BATCH_LUA = """-- POST /v1/check with the bodies of $BODY_FILE, one per line, cycled.
local bodies = {}
for line in io.lines(os.getenv("BODY_FILE")) do bodies[#bodies + 1] = line end
local headers = {["Content-Type"] = "application/json"}
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", "/v1/check", headers, bodies[i])
end
"""


def addresses(count: int, seed: int = 11) -> list[str]:
    """``count`` addresses, alternately listed by ipsum and not, shuffled."""
    rng = random.Random(seed)
    listed = ipsum_addresses()
    known = set(listed)
    out = []
    while len(out) < count:
        out.append(rng.choice(listed))
        while True:
            candidate = ".".join(str(random_global_v4(rng) >> s & 255) for s in (24, 16, 8, 0))
            if candidate not in known:
                out.append(candidate)
                break
    rng.shuffle(out)
    return out[:count]


def check(base: str, sample: list[str]) -> None:
    """The batch answers what single lookups answer (before anything is measured)."""
    with httpx.Client(base_url=base, timeout=30) as client:
        got = client.post("/v1/check", json={"ips": sample}).json()["results"]
        want = [client.get(f"/check_ip/{ip}").json()["blocked"] for ip in sample]
    assert [r["blocked"] for r in got] == want, "batch and single answers differ"
    assert any(want), "no listed address in the sample"
    assert not all(want), "no unlisted address in the sample"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=10_000, help="addresses per batch body")
    parser.add_argument("--addresses", type=int, default=200_000, help="distinct addresses")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections for single lookups")
    parser.add_argument("--batch-connections", type=int, default=4, help="wrk connections for batches")
    parser.add_argument(
        "--quick", action="store_true", help="1 round of 1 s, 20,000 addresses, batches of 1,000"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.addresses, args.batch = 1, 1.0, 20_000, 1_000
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install wrk")
    ips = addresses(args.addresses)
    runs: dict[str, list[Run]] = {"single": [], "batch": []}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        addr_file = tmp / "addresses.txt"
        addr_file.write_text("\n".join(ips) + "\n")
        body_file = tmp / "bodies.txt"
        body_file.write_text(
            "".join(
                json.dumps({"ips": ips[start : start + args.batch]}) + "\n"
                for start in range(0, len(ips) - args.batch + 1, args.batch)
            )
        )
        script = tmp / "batch.lua"
        script.write_text(BATCH_LUA)
        cycle = ROOT / "bench" / "cycle.lua"
        print(
            f"batch: one embedded API process (ipsum), {len(ips)} distinct addresses (half listed); "
            f"single GET /check_ip (wrk -t1 -c{args.connections}) and POST /v1/check of {args.batch} "
            f"(wrk -t1 -c{args.batch_connections}), {args.duration:g} s each, "
            f"{args.rounds} rounds, alternated"
        )
        with api_server(tmp, "batch", embedded_env()) as (base, proc):
            check(base, ips[:2000])

            def single(duration: float) -> Run:
                return run_wrk(base, cycle, {"ADDR_FILE": str(addr_file)}, args.connections, duration, proc)

            def batch(duration: float) -> Run:
                return run_wrk(
                    base, script, {"BODY_FILE": str(body_file)}, args.batch_connections, duration, proc
                )

            single(1)
            batch(1)  # warm-up
            for _ in range(args.rounds):
                runs["single"].append(single(args.duration))
                runs["batch"].append(batch(args.duration))
    medians = {k: median_run(v) for k, v in runs.items()}
    one, many = medians["single"], medians["batch"]
    by_throughput = [s.rps / (b.rps * args.batch) for s, b in zip(runs["single"], runs["batch"], strict=True)]
    by_cpu = [
        b.cpu_us_per_request / args.batch / s.cpu_us_per_request
        for s, b in zip(runs["single"], runs["batch"], strict=True)
    ]
    print(
        f"{'':8} {'req/s':>10} {'addr/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/addr':>12} {'errors':>7}"
    )
    for label, run, per in (("single", one, 1), ("batch", many, args.batch)):
        print(
            f"{label:8} {run.rps:10.1f} {run.rps * per:12.0f} {run.p50_ms:8.2f} {run.p99_ms:8.2f} "
            f"{run.cpu_us_per_request / per:12.3f} {run.errors:7d}"
        )
    ratio_time = statistics.median(by_throughput)
    ratio_cpu = statistics.median(by_cpu)
    print(
        f"cost per address, batch / single: {ratio_time:.4f} by throughput (1/{1 / ratio_time:.0f}), "
        f"{ratio_cpu:.4f} by server CPU (1/{1 / ratio_cpu:.0f}); target <= 1/20 = 0.05"
    )
    if args.json:
        result: dict[str, Any] = {
            "batch": args.batch,
            "medians": {k: vars(v) for k, v in medians.items()},
            "ratio_by_throughput": ratio_time,
            "ratio_by_cpu": ratio_cpu,
        }
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
