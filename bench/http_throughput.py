"""HTTP throughput and latency of /check_ip, ours against a bare-ASGI ceiling.

Both servers run side by side (one uvicorn worker each); wrk loads them in
alternation (A B A B ...) over a seeded list of distinct addresses (every
ipsum address, random public IPv4 not in it, 10 % IPv6), and the report gives
medians and the ratio ours/ceiling, which is what survives a noisy machine.

    .venv/bin/python -m bench.http_throughput --rounds 3 --duration 10
    .venv/bin/python -m bench.http_throughput --addresses 20000 --rounds 1 --duration 2  # smoke

Needs ``wrk`` (Debian package ``wrk``).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
IPSUM = ROOT.parent / "shared" / "data" / "ipsum" / "ipsum-2026-08-22.txt"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us_per_request: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_addresses(path: Path, count: int, seed: int = 42) -> int:
    """Every ipsum address, then random public IPv4 (not listed), 10 % IPv6."""
    rng = random.Random(seed)
    listed = [line.split("\t")[0] for line in IPSUM.read_text().splitlines() if line[:1].isdigit()]
    listed = listed[:count]
    chosen = set(listed)
    out = list(listed)
    v6_wanted = count // 10
    while len(out) < count - v6_wanted:
        addr = ipaddress.IPv4Address(rng.getrandbits(32))
        text = str(addr)
        if addr.is_global and text not in chosen:
            chosen.add(text)
            out.append(text)
    while len(out) < count:
        out.append(str(ipaddress.IPv6Address((0x2 << 125) | rng.getrandbits(125))))
    rng.shuffle(out)
    path.write_text("\n".join(out) + "\n")
    return len(listed)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def wrk(base: str, addr_file: Path, connections: int, duration: float) -> tuple[float, float, float, int]:
    result = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--latency",
            "-s",
            str(ROOT / "bench" / "cycle.lua"),
            base,
        ],
        env={**os.environ, "ADDR_FILE": str(addr_file)},
        capture_output=True,
        text=True,
        check=True,
    )
    text = result.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text)[1])  # type: ignore[index]
    p50 = _latency_ms(text, "50%")
    p99 = _latency_ms(text, "99%")
    errors = 0
    for pattern in (
        r"Non-2xx or 3xx responses: (\d+)",
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
    ):
        match = re.search(pattern, text)
        if match:
            errors += sum(int(g) for g in match.groups())
    return rps, p50, p99, errors


def _latency_ms(text: str, label: str) -> float:
    match = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    assert match, f"no {label} latency in wrk output"
    value, unit = float(match[1]), match[2]
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def start(name: str, tmp: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    env = dict(os.environ)
    if name == "ours":
        env.update(
            BLOCKLIST_FEEDS=f"ipsum=ipsum:{IPSUM}",
            BLOCKLIST_STATE_DIR=str(tmp / "state"),
            BLOCKLIST_BOOTSTRAP="false",
            BLOCKLIST_LOG_LEVEL="WARNING",
        )
        cmd = [sys.executable, "-m", "ipchecking", "--port", str(port)]
    else:
        env["CEILING_FEED"] = str(IPSUM)
        cmd = [sys.executable, "-m", "uvicorn", "bench.ceiling_app:app", "--port", str(port),
               "--lifespan", "off", "--no-access-log", "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/check_ip/1.2.3.4", timeout=1).status_code == 200:
                return base, proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{name} did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addresses", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install wrk")
    configs = ["ours", "ceiling"]
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        addr_file = tmp / "addresses.txt"
        listed = write_addresses(addr_file, args.addresses)
        print(
            f"{args.addresses} distinct addresses, {listed} listed; "
            f"wrk -t1 -c{args.connections} -d{args.duration:g}s"
        )
        servers = {name: start(name, tmp) for name in configs}
        try:
            for base, _ in servers.values():  # warm-up
                wrk(base, addr_file, args.connections, 2)
            loaded: dict[str, list[Run]] = {n: [] for n in configs}
            idle: dict[str, list[float]] = {n: [] for n in configs}
            for _ in range(args.rounds):
                for name in configs:
                    base, proc = servers[name]
                    before = cpu_seconds(proc.pid)
                    rps, p50, p99, errors = wrk(base, addr_file, args.connections, args.duration)
                    cpu = cpu_seconds(proc.pid) - before
                    loaded[name].append(Run(rps, p50, p99, errors, cpu / (rps * args.duration) * 1e6))
                    idle[name].append(wrk(base, addr_file, 1, max(2.0, args.duration / 3))[1])
        finally:
            for _, proc in servers.values():
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=15)
    med = {
        n: {
            "rps": statistics.median(r.rps for r in loaded[n]),
            "p50": statistics.median(r.p50_ms for r in loaded[n]),
            "p99": statistics.median(r.p99_ms for r in loaded[n]),
            "cpu": statistics.median(r.cpu_us_per_request for r in loaded[n]),
            "idle_p50": statistics.median(idle[n]),
            "errors": sum(r.errors for r in loaded[n]),
        }
        for n in configs
    }
    print(
        f"{'config':<10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'cpu us/req':>12}{'1-conn p50':>12}{'errors':>8}"
    )
    for n in configs:
        m = med[n]
        print(
            f"{n:<10}{m['rps']:>10.0f}{m['p50']:>9.2f}{m['p99']:>9.2f}{m['cpu']:>12.1f}{m['idle_p50']:>12.3f}{m['errors']:>8}"
        )
    o, c = med["ours"], med["ceiling"]
    print(
        f"ours/ceiling: throughput {o['rps'] / c['rps']:.2f}x, p99 {o['p99'] / c['p99']:.2f}x, "
        f"cpu/req {o['cpu'] / c['cpu']:.2f}x, unloaded p50 {o['idle_p50'] / c['idle_p50']:.2f}x"
    )


if __name__ == "__main__":
    main()
