"""HTTP throughput and latency of /check_ip: ours against the naive design and a bare-ASGI ceiling.

Every configuration runs as its own server process (one worker each), side
by side; wrk loads them in alternation (A B C ... A B C ...) over a seeded
list of distinct addresses (every ipsum address, random public IPv4 not in
it, 10 % IPv6), and the report gives medians and ratios, which is what
survives a noisy machine.

Configurations (``--configs``, default all):

- ``naive``: FastAPI ``async def`` route, synchronous redis-py ``SISMEMBER``
  on a set of the ipsum addresses, uvicorn default access log
  (``bench/naive_app.py``).
- ``ceiling``: bare ASGI app answering from a Python ``set`` under uvicorn
  (``bench/ceiling_app.py``); ``ceiling-headers``: the same sending the
  service's five response headers instead of one (what the server charges
  per header); ``ceiling-granian``: the ceiling under granian.
- ``ours``: ``python -m ipchecking``, embedded mode; ``ours-local``:
  distributed mode, local lookups (version loaded from Redis); ``ours-live``:
  distributed mode, one Redis round trip per request; ``ours-granian``:
  embedded mode under ``--server granian``.

Redis-backed configurations share one ``redis-server`` started on a free port
in a temp dir. Server CPU is user + system time of the server process and
its children (granian's workers), per request.

    .venv/bin/python -m bench.http_throughput --rounds 3 --duration 10
    .venv/bin/python -m bench.http_throughput --addresses 20000 --rounds 1 --duration 1  # smoke

Needs ``wrk`` (Debian package ``wrk``) and ``redis-server``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import redis
from redis.asyncio import Redis as AsyncRedis

from bench.versions import IPSUM, ROOT, ipsum_addresses, ipsum_version
from tests.redisserver import RedisServer, free_port, redis_server, stop_process

CLK_TCK = os.sysconf("SC_CLK_TCK")
CONFIGS = (
    "naive", "ceiling", "ceiling-headers", "ceiling-granian",
    "ours", "ours-local", "ours-live", "ours-granian",
)  # fmt: skip
REDIS_CONFIGS = {"naive", "ours-local", "ours-live"}


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us_per_request: float


@dataclass
class Summary:
    """Medians over the rounds of one configuration."""

    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: float
    idle_p50_ms: float
    idle_p99_ms: float
    errors: int


def write_addresses(path: Path, count: int, seed: int = 42) -> int:
    """Every ipsum address (up to ``count``), then random public IPv4 (not listed), 10 % IPv6."""
    rng = random.Random(seed)
    listed = ipsum_addresses()[:count]
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
    """User + system CPU seconds of ``pid`` and its live descendants."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        child = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(child)
        times[child] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0.0)
        todo.extend(children.get(current, []))
    return total


def wrk(base: str, addr_file: Path, connections: int, duration: float) -> tuple[float, float, float, int]:
    """One wrk run: requests/s, p50 ms, p99 ms, errors (non-2xx and socket errors)."""
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
    match = re.search(r"Requests/sec:\s+([\d.]+)", text)
    assert match, f"no Requests/sec in wrk output:\n{text}"
    errors = 0
    for pattern in (
        r"Non-2xx or 3xx responses: (\d+)",
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
    ):
        found = re.search(pattern, text)
        if found:
            errors += sum(int(g) for g in found.groups())
    return float(match[1]), _latency_ms(text, "50%"), _latency_ms(text, "99%"), errors


def _latency_ms(text: str, label: str) -> float:
    match = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    assert match, f"no {label} latency in wrk output"
    value, unit = float(match[1]), match[2]
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def server_command(
    name: str, port: int, tmp: Path, redis_url: str | None
) -> tuple[list[str], dict[str, str]]:
    """Command line and environment of one configuration's server."""
    env = dict(os.environ)
    quiet = ["--log-level", "warning"]
    if name.startswith("ceiling"):
        env["CEILING_FEED"] = str(IPSUM)
        if name == "ceiling-headers":
            env["CEILING_HEADERS"] = "service"
        if name == "ceiling-granian":
            return [
                sys.executable,
                "-m",
                "granian",
                "--interface",
                "asgi",
                "--port",
                str(port),
                "--loop",
                "uvloop",
                "--no-ws",
                *quiet,
                "bench.ceiling_app:app",
            ], env
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.ceiling_app:app",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--no-access-log",
            *quiet,
        ], env
    if name == "naive":
        env["NAIVE_REDIS_URL"] = str(redis_url)
        # Default uvicorn settings, access log included: the design as usually shipped.
        return [sys.executable, "-m", "uvicorn", "bench.naive_app:app", "--port", str(port)], env
    env.update(BLOCKLIST_LOG_LEVEL="WARNING", BLOCKLIST_STATE_DIR=str(tmp / f"state-{name}"))
    if name in {"ours-local", "ours-live"}:
        env.update(REDIS_URL=str(redis_url), BLOCKLIST_LOOKUP=name.removeprefix("ours-"))
    else:
        env.update(BLOCKLIST_FEEDS=f"ipsum=ipsum:{IPSUM}", BLOCKLIST_BOOTSTRAP="false")
    server = "granian" if name == "ours-granian" else "uvicorn"
    return [sys.executable, "-m", "ipchecking", "--port", str(port), "--server", server], env


@contextmanager
def running(name: str, tmp: Path, redis_url: str | None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start one configuration's server; yield its base URL once it answers."""
    port = free_port()
    cmd, env = server_command(name, port, tmp, redis_url)
    log = (tmp / f"{name}.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/check_ip/1.2.3.4", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} did not start; see {tmp / (name + '.log')}")
            time.sleep(0.1)
        yield base, proc
    finally:
        stop_process(proc, timeout=15)
        log.close()


def fill_redis(server: RedisServer) -> None:
    """The naive design's set of ipsum addresses, and our published ipsum version."""
    from bench.naive_app import NAIVE_SET  # noqa: PLC0415 - the naive app is only a reference
    from blocklistupdater.redispublish import RedisPublisher  # noqa: PLC0415

    client = redis.Redis.from_url(server.url)
    addresses = ipsum_addresses()
    for start in range(0, len(addresses), 10_000):
        client.sadd(NAIVE_SET, *addresses[start : start + 10_000])
    client.close()

    async def publish() -> None:
        async_client = AsyncRedis.from_url(server.url)
        try:
            await RedisPublisher(async_client).publish(ipsum_version())
        finally:
            await async_client.aclose()

    asyncio.run(publish())


def summarize(loaded: list[Run], idle: list[tuple[float, float]]) -> Summary:
    return Summary(
        rps=statistics.median(r.rps for r in loaded),
        p50_ms=statistics.median(r.p50_ms for r in loaded),
        p99_ms=statistics.median(r.p99_ms for r in loaded),
        cpu_us_per_request=statistics.median(r.cpu_us_per_request for r in loaded),
        idle_p50_ms=statistics.median(p50 for p50, _ in idle),
        idle_p99_ms=statistics.median(p99 for _, p99 in idle),
        errors=sum(r.errors for r in loaded),
    )


def report(med: dict[str, Summary], out: Callable[[str], None] = print) -> None:
    """Print the table, the ratios and each target met or missed."""
    out(
        f"{'config':<16}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'cpu us/req':>11}"
        f"{'1-conn p50':>11}{'1-conn p99':>11}{'errors':>7}"
    )
    for name, m in med.items():
        out(
            f"{name:<16}{m.rps:>9.0f}{m.p50_ms:>8.2f}{m.p99_ms:>8.2f}{m.cpu_us_per_request:>11.1f}"
            f"{m.idle_p50_ms:>11.3f}{m.idle_p99_ms:>11.3f}{m.errors:>7}"
        )
    ceiling, naive = med.get("ceiling"), med.get("naive")
    if ceiling:
        out("ratios to ceiling (uvicorn): throughput, p99, cpu/req, 1-conn p50")
        for name, m in med.items():
            out(
                f"  {name:<16}{m.rps / ceiling.rps:>6.2f}x{m.p99_ms / ceiling.p99_ms:>7.2f}x"
                f"{m.cpu_us_per_request / ceiling.cpu_us_per_request:>7.2f}x"
                f"{m.idle_p50_ms / ceiling.idle_p50_ms:>7.2f}x"
            )
    if naive:
        out(
            "throughput ratio to naive: " + ", ".join(f"{n} {m.rps / naive.rps:.2f}x" for n, m in med.items())
        )
    targets = []
    if ceiling and "ours" in med:
        ours = med["ours"]
        targets += [
            ("ours throughput >= 0.85x ceiling", ours.rps / ceiling.rps, 0.85, True),
            ("ours p99 <= 1.3x ceiling", ours.p99_ms / ceiling.p99_ms, 1.3, False),
            ("ours 1-conn p50 <= 1.3x ceiling", ours.idle_p50_ms / ceiling.idle_p50_ms, 1.3, False),
            (
                "ours cpu/req <= 1.2x ceiling",
                ours.cpu_us_per_request / ceiling.cpu_us_per_request,
                1.2,
                False,
            ),
        ]
    if ceiling and "ours-granian" in med:
        targets.append(
            ("ours-granian >= 1.3x uvicorn ceiling", med["ours-granian"].rps / ceiling.rps, 1.3, True)
        )
    if naive and "ours-live" in med:
        targets.append(("ours-live >= 3x naive", med["ours-live"].rps / naive.rps, 3.0, True))
    for label, value, bound, at_least in targets:
        met = value >= bound if at_least else value <= bound
        out(f"target {label}: {value:.2f}x {'met' if met else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addresses", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--configs", default=",".join(CONFIGS), help="comma-separated, from: " + " ".join(CONFIGS)
    )
    parser.add_argument("--json", type=Path, help="also write the medians here")
    args = parser.parse_args()
    configs = [c for c in args.configs.split(",") if c]
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        raise SystemExit(f"unknown configs: {sorted(unknown)}")
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install wrk")
    with tempfile.TemporaryDirectory() as tmpdir, ExitStack() as stack:
        tmp = Path(tmpdir)
        addr_file = tmp / "addresses.txt"
        listed = write_addresses(addr_file, args.addresses)
        print(
            f"{args.addresses} distinct addresses, {listed} listed; wrk -t1 -c{args.connections} "
            f"-d{args.duration:g}s, {args.rounds} rounds, configs alternated"
        )
        redis_url = None
        if REDIS_CONFIGS.intersection(configs):
            server = stack.enter_context(redis_server(tmp / "redis"))
            fill_redis(server)
            redis_url = server.url
        servers = {name: stack.enter_context(running(name, tmp, redis_url)) for name in configs}
        for base, _ in servers.values():  # warm-up
            wrk(base, addr_file, args.connections, 2)
        loaded: dict[str, list[Run]] = {n: [] for n in configs}
        idle: dict[str, list[tuple[float, float]]] = {n: [] for n in configs}
        for _ in range(args.rounds):
            for name in configs:
                base, proc = servers[name]
                before = cpu_seconds(proc.pid)
                rps, p50, p99, errors = wrk(base, addr_file, args.connections, args.duration)
                cpu = cpu_seconds(proc.pid) - before
                loaded[name].append(Run(rps, p50, p99, errors, cpu / (rps * args.duration) * 1e6))
                _, idle_p50, idle_p99, _ = wrk(base, addr_file, 1, max(1.0, args.duration / 3))
                idle[name].append((idle_p50, idle_p99))
    med = {n: summarize(loaded[n], idle[n]) for n in configs}
    report(med)
    if args.json:
        args.json.write_text(json.dumps({n: asdict(m) for n, m in med.items()}, indent=2))


if __name__ == "__main__":
    main()
