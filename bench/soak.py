"""Soak: sustained load on two API replicas while versions are published every
few seconds and Redis is killed and restarted once.

Every part is a real process: a ``redis-server`` (free port, temp dir), two
API replicas (``python -m ipchecking``, distributed mode, local lookups) and
a publisher in this process. Each published version ``k`` lists a shared
base of addresses plus a marker address of its own; clients (threads with
keep-alive connections) ask both replicas about markers, base and unlisted
addresses and check every answer against the contents of the version the
answer names in ``X-Blocklist-Version``, so a mixed or stale-inconsistent
answer counts as wrong. Redis is SIGKILLed once, at 40 % of the run, and
restarted empty on the same port three seconds later; publishing goes on.

Reported: requests, non-2xx answers, transport errors, wrong answers, how
long after Redis came back the replicas served the next version, versions
published, and each replica's RSS after every swap (growth from the 10th
swap to the last, the leak check). The exit code is 1 if any answer was
wrong or not 2xx.

    .venv/bin/python -m bench.soak --duration 240 --interval 2   # about 120 swaps
    .venv/bin/python -m bench.soak --quick                       # 15 s smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from redis.asyncio import Redis

from bench.startup_memory import rss_mib
from blocklistupdater.redispublish import RedisPublisher
from tests.apiprocess import server, wait_ready
from tests.redisserver import free_port, redis_server
from tests.versions import make_version

BASE_SIZE = 2000
UNLISTED_SIZE = 2000


@dataclass
class Versions:
    """What each published version lists: the shared base plus its marker."""

    base: frozenset[str]
    markers: dict[int, str] = field(default_factory=dict)

    def listed(self, number: int, address: str) -> bool:
        return address in self.base or self.markers.get(number) == address


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    outcomes: Counter[str] = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)
    served: dict[str, Counter[int]] = field(default_factory=dict)


def addresses(count: int, rng: random.Random, prefix: int) -> list[str]:
    """``count`` distinct IPv4 addresses under the /8 ``prefix``."""
    out: set[str] = set()
    while len(out) < count:
        out.add(f"{prefix}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}")
    return sorted(out)


def client_loop(
    name: str,
    base: str,
    probes: list[str],
    versions: Versions,
    stop: threading.Event,
    tally: Tally,
    seed: int,
) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=base, timeout=5) as client:
        while not stop.is_set():
            markers = list(versions.markers.values())[-5:]
            address = rng.choice(markers) if markers and rng.random() < 0.3 else rng.choice(probes)
            try:
                response = client.get(f"/check_ip/{address}")
            except httpx.TransportError:
                with tally.lock:
                    tally.outcomes["transport error"] += 1
                continue
            with tally.lock:
                if response.status_code != 200:
                    tally.outcomes[f"status {response.status_code}"] += 1
                    continue
                number = int(response.headers["x-blocklist-version"])
                want = versions.listed(number, address)
                if response.json() != {"blocked": want}:
                    tally.wrong.append(f"{name} v{number} {address}: {response.text}")
                tally.outcomes["ok"] += 1
                tally.served.setdefault(name, Counter())[number] += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=240.0, help="seconds of load")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between publishes")
    parser.add_argument("--clients", type=int, default=3, help="client threads per replica")
    parser.add_argument("--quick", action="store_true", help="15 s, a publish every 0.5 s")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.interval = 15.0, 0.5
    for name in [n for n in os.environ if n.startswith("BLOCKLIST_") or n == "REDIS_URL"]:
        del os.environ[name]
    rng = random.Random(11)
    base_set = addresses(BASE_SIZE, rng, 198)
    unlisted = addresses(UNLISTED_SIZE, rng, 203)
    versions = Versions(frozenset(base_set))
    probes = base_set + unlisted
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    tally = Tally()
    stop = threading.Event()
    rss: dict[str, list[float]] = {"a": [], "b": []}
    publish_errors = 0
    recovery_s: float | None = None
    number = 0

    def next_version() -> tuple[int, object]:
        nonlocal number
        number += 1
        marker = f"100.{number // 65536 % 256}.{number // 256 % 256}.{number % 256}"
        versions.markers[number] = marker
        return number, make_version(number, *base_set, marker)

    async def publish(version: object) -> None:
        client = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=1)
        try:
            await RedisPublisher(client).publish(version)  # type: ignore[arg-type]
        finally:
            await client.aclose()

    with tempfile.TemporaryDirectory() as tmpdir, ExitStack() as stack:
        tmp = Path(tmpdir)
        redis = stack.enter_context(redis_server(tmp / "redis-1", port=port))
        asyncio.run(publish(next_version()[1]))
        env = {"REDIS_URL": url, "BLOCKLIST_REDIS_TIMEOUT": "0.5", "BLOCKLIST_VERSION_POLL_INTERVAL": "1",
               "BLOCKLIST_LOG_LEVEL": "WARNING", "BLOCKLIST_STATE_DIR": str(tmp / "unused")}  # fmt: skip
        replicas = {n: stack.enter_context(server(env, tmp / f"api-{n}.log")) for n in ("a", "b")}
        for base, proc in replicas.values():
            wait_ready(base, proc)
        threads = [
            threading.Thread(
                target=client_loop, args=(n, replicas[n][0], probes, versions, stop, tally, i), daemon=True
            )
            for i, n in enumerate(["a", "b"] * args.clients)
        ]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        kill_at = started + 0.4 * args.duration
        killed = restarted_at = None
        restart_number = None
        try:
            while time.monotonic() - started < args.duration:
                now = time.monotonic()
                if killed is None and now >= kill_at:
                    redis.proc.send_signal(signal.SIGKILL)
                    redis.proc.wait()
                    killed = now
                if killed is not None and restarted_at is None and now >= killed + 3:
                    redis = stack.enter_context(redis_server(tmp / "redis-2", port=port))
                    restarted_at = time.monotonic()
                try:
                    published, version = next_version()
                    asyncio.run(publish(version))
                    if restarted_at is not None and restart_number is None:
                        restart_number = published
                except Exception:
                    publish_errors += 1
                for n, (_, proc) in replicas.items():
                    rss[n].append(rss_mib(proc.pid))
                if restart_number is not None and recovery_s is None:
                    seen = [tally.served.get(n, Counter()) for n in replicas]
                    if all(any(v >= restart_number for v in c) for c in seen) and restarted_at is not None:
                        recovery_s = time.monotonic() - restarted_at
                time.sleep(max(0.0, args.interval - (time.monotonic() - now)))
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
    requests = sum(tally.outcomes.values())
    bad = sum(c for k, c in tally.outcomes.items() if k != "ok")
    swaps = len(rss["a"])
    growth = {n: (values[-1] - values[min(9, len(values) - 1)]) for n, values in rss.items()}
    results = {
        "duration_s": args.duration,
        "requests": requests,
        "requests_per_s": requests / args.duration,
        "outcomes": dict(tally.outcomes),
        "wrong_answers": len(tally.wrong),
        "wrong_samples": tally.wrong[:10],
        "versions_published": number - publish_errors,
        "publish_failures_while_redis_down": publish_errors,
        "recovery_after_redis_restart_s": recovery_s,
        "rss_mib": rss,
        "rss_growth_from_10th_swap_mib": growth,
        "versions_served": {n: len(c) for n, c in tally.served.items()},
    }
    print(
        f"{args.duration:.0f} s, {requests} requests ({requests / args.duration:.0f}/s) over 2 replicas; "
        f"non-2xx or transport errors: {bad}; wrong answers: {len(tally.wrong)}"
    )
    print(
        f"versions published: {number - publish_errors} "
        f"({publish_errors} publishes lost while Redis was down); "
        f"replicas served {results['versions_served']} distinct versions"
    )
    recovery = f"{recovery_s:.2f} s" if recovery_s is not None else "not observed"
    print(f"Redis killed at 40 %, restarted 3 s later: replicas served the next version {recovery} after")
    for n, values in rss.items():
        tenth = values[min(9, swaps - 1)]
        print(
            f"replica {n} RSS over {swaps} swaps: first {values[0]:.1f} MiB, 10th {tenth:.1f}, "
            f"last {values[-1]:.1f}, median {statistics.median(values):.1f}; "
            f"growth from 10th {growth[n]:+.1f} MiB"
        )
    for sample in tally.wrong[:5]:
        print(f"wrong: {sample}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if bad or tally.wrong else 0


if __name__ == "__main__":
    sys.exit(main())
