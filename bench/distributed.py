"""Distributed mode with real processes: publish, Redis memory, propagation, start-up, lookups.

Every part is a real process: a ``redis-server`` primary with one replica
(temp dirs, free ports; never the machine's own), and API replicas
(``python -m ipchecking``) reading the replica. Sections, in order:

1. publish: ``RedisPublisher.publish()`` of the ipsum version and of a larger
   seeded synthetic feed (``--large`` netset entries: 90 % IPv4 addresses,
   9 % IPv4 CIDRs /20-/30, 1 % IPv6 /48s; ../shared/data has no FireHOL
   level2 and level1 is smaller than ipsum), alternated each round: into a
   flushed Redis ("first") and over the live version ("replace"); then the
   time until the Redis replica has the new number ("repl lag").
2. memory: ``used_memory`` of the primary before/after the first publish,
   per range, split into the snapshot string (``STRLEN``), its history copy
   and the sorted sets (``MEMORY USAGE ... SAMPLES 0``).
3. propagation: two API replicas (local lookups, version poll 5 s, so
   pub/sub does the work); time from ``publish()`` returning until both
   answer ``/check_ip`` with the new number in ``X-Blocklist-Version``.
4. cold start: seconds to ``/readyz`` 200 and RSS, a distributed replica
   (loads the ipsum version from the Redis replica) alternated with an
   embedded restart from a state dir (``bench.startup_memory``'s helper).
5. lookup latency, unloaded: the same address list (listed, unlisted IPv4,
   10 % IPv6) sent sequentially over one keep-alive connection to a
   ``BLOCKLIST_LOOKUP=live`` replica and a ``local`` one, alternated.

Times are medians over ``--rounds``; ratios are what survives a noisy machine.

    .venv/bin/python -m bench.distributed --rounds 5
    .venv/bin/python -m bench.distributed --quick  # smoke: 1 round, small data, well under a minute

Needs ``redis-server`` and the real feed files in ``../shared/data/``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import ipaddress
import json
import os
import random
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any
from unittest import mock

import httpx
import redis
from redis.asyncio import Redis as AsyncRedis

from bench.startup_memory import start_and_measure
from bench.versions import IPSUM, build_version, ipsum_addresses, synthetic_feed
from blocklist import rediskeys as keys
from blocklist.feedparsers import FeedFormat
from blocklist.snapshot import Version
from blocklistupdater.redispublish import RedisPublisher
from tests.apiprocess import server, wait_ready
from tests.redisserver import RedisServer, redis_server

MIB = 1024 * 1024


# -- inputs -------------------------------------------------------------------


def lookup_addresses(count: int, seed: int = 7) -> list[str]:
    """45 % ipsum addresses, 45 % random public IPv4 not in ipsum, 10 % IPv6; shuffled."""
    rng = random.Random(seed)
    listed = ipsum_addresses()
    taken = set(listed)
    v6 = count // 10
    out = rng.sample(listed, (count - v6) // 2)
    while len(out) < count - v6:
        addr = ipaddress.IPv4Address(rng.getrandbits(32))
        if addr.is_global and str(addr) not in taken:
            taken.add(str(addr))
            out.append(str(addr))
    out += [str(ipaddress.IPv6Address((0x2 << 125) | rng.getrandbits(125))) for _ in range(v6)]
    rng.shuffle(out)
    return out


# -- redis --------------------------------------------------------------------


class Cluster:
    """A primary with one replica, an asyncio publisher and sync admin clients."""

    def __init__(self, stack: ExitStack, tmp: Path) -> None:
        self.primary: RedisServer = stack.enter_context(redis_server(tmp / "redis-primary"))
        self.replica: RedisServer = stack.enter_context(
            redis_server(tmp / "redis-replica", replica_of=self.primary)
        )
        self.runner = stack.enter_context(asyncio.Runner())
        self.admin = redis.Redis.from_url(self.primary.url)
        stack.callback(self.admin.close)
        self.reader = redis.Redis.from_url(self.replica.url)
        stack.callback(self.reader.close)
        self.writer = AsyncRedis.from_url(self.primary.url)
        stack.callback(lambda: self.runner.run(self.writer.aclose()))
        self.publisher = RedisPublisher(self.writer)
        self.runner.run(self.writer.ping())  # connect before anything is timed
        deadline = time.monotonic() + 30
        while self.reader.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise SystemExit("redis replica never synced with the primary")
            time.sleep(0.05)

    def publish(self, version: Version) -> tuple[Version, float, float]:
        """Publish; (published version, seconds of publish(), then seconds until the replica has it)."""
        begin = time.monotonic()
        published = self.runner.run(self.publisher.publish(version))
        returned = time.monotonic()
        wanted = str(published.number).encode()
        while self.reader.hget(keys.META, "number") != wanted:
            if time.monotonic() - returned > 30:
                raise SystemExit("redis replica never received the published version")
        return published, returned - begin, time.monotonic() - returned

    def flush(self) -> None:
        """FLUSHALL on the primary; returns once the replica is empty too."""
        self.admin.flushall(asynchronous=False)
        while self.reader.dbsize():
            time.sleep(0.01)

    def memory(self) -> tuple[int, int]:
        info = self.admin.info("memory")
        return int(info["used_memory"]), int(info["used_memory_dataset"])

    def key_bytes(self, key: str) -> int:
        usage = self.admin.memory_usage(key, samples=0)
        return int(usage) if usage is not None else 0


def measure_publish(cluster: Cluster, version: Version) -> dict[str, float]:
    """One round for one input: first publish after FLUSHALL (with memory), then a replace."""
    cluster.flush()
    time.sleep(0.2)  # let the flush's frees and the replica's ack settle before reading memory
    used0, dataset0 = cluster.memory()
    published, first_s, _ = cluster.publish(version)
    used1, dataset1 = cluster.memory()
    ranges = version.index.ranges
    row = {
        "first_s": first_s,
        "used_memory_bytes": used1 - used0,
        "used_memory_per_range": (used1 - used0) / ranges,
        "dataset_per_range": (dataset1 - dataset0) / ranges,
        "snapshot_strlen_per_range": int(cluster.admin.strlen(keys.SNAPSHOT)) / ranges,
        "snapshot_key_per_range": cluster.key_bytes(keys.SNAPSHOT) / ranges,
        "history_key_per_range": cluster.key_bytes(keys.history_snapshot_key(published.number)) / ranges,
        "zset4_bytes": cluster.key_bytes(keys.ranges_key(4)),
        "zset6_bytes": cluster.key_bytes(keys.ranges_key(6)),
    }
    row["zset_per_range"] = (row["zset4_bytes"] + row["zset6_bytes"]) / ranges
    _, replace_s, lag_s = cluster.publish(version)
    row.update(replace_s=replace_s, repl_lag_s=lag_s)
    return row


def sadd_protocol(addresses: list[str], key: str = "naive:blocklist") -> bytes:
    """RESP of one ``SADD key address`` per address: Redis's documented mass-insertion input."""
    head = f"*3\r\n$4\r\nSADD\r\n${len(key)}\r\n{key}\r\n"
    return "".join(f"{head}${len(a)}\r\n{a}\r\n" for a in addresses).encode()


def measure_pipe(cluster: Cluster, protocol: Path) -> float:
    """Seconds ``redis-cli --pipe`` takes to send ``protocol`` into a flushed primary."""
    cluster.flush()
    with protocol.open("rb") as stdin:
        begin = time.monotonic()
        subprocess.run(
            ["redis-cli", "-p", str(cluster.primary.port), "--pipe"],
            stdin=stdin, stdout=subprocess.DEVNULL, check=True,
        )  # fmt: skip
        return time.monotonic() - begin


# -- API replicas -------------------------------------------------------------


def api_env(cluster: Cluster, tmp: Path, lookup: str) -> dict[str, str]:
    return {
        "REDIS_URL": cluster.primary.url,
        "BLOCKLIST_REDIS_READ_URL": cluster.replica.url,
        "BLOCKLIST_LOOKUP": lookup,
        "BLOCKLIST_VERSION_POLL_INTERVAL": "5",
        "BLOCKLIST_STATE_DIR": str(tmp / "unused-state"),
        "BLOCKLIST_BOOTSTRAP": "false",
        "BLOCKLIST_LOG_LEVEL": "WARNING",
    }


@contextmanager
def api_replicas(cluster: Cluster, tmp: Path, lookups: list[str]) -> Iterator[list[str]]:
    """Start one API replica per lookup kind, wait until all are ready, yield their base URLs."""
    with ExitStack() as stack:
        started = [
            stack.enter_context(server(api_env(cluster, tmp, lookup), tmp / f"api-{lookup}-{i}.log"))
            for i, lookup in enumerate(lookups)
        ]
        for base, proc in started:
            wait_ready(base, proc)
        yield [base for base, _ in started]


async def seen_by_all(clients: list[httpx.AsyncClient], address: str, number: int) -> list[float]:
    """Poll every replica in a tight loop (one client each); monotonic time each first shows ``number``."""
    wanted = str(number)

    async def poll(client: httpx.AsyncClient) -> float:
        begin = time.monotonic()
        while True:
            response = await client.get(f"/check_ip/{address}")
            if response.headers.get("x-blocklist-version") == wanted:
                return time.monotonic()
            if time.monotonic() - begin > 30:
                raise SystemExit(f"{client.base_url} never served version {number}")

    return list(await asyncio.gather(*(poll(c) for c in clients)))


def measure_propagation(cluster: Cluster, tmp: Path, version: Version, rounds: int) -> list[float]:
    """Per publish (``rounds`` of them): seconds from ``publish()`` returning until both API
    replicas serve the new number."""
    address = ipsum_addresses()[0]
    live = int(cluster.admin.hget(keys.META, "number") or 0)
    times = []
    with api_replicas(cluster, tmp, ["local", "local"]) as bases, ExitStack() as stack:
        clients = [httpx.AsyncClient(base_url=b, timeout=2) for b in bases]
        for client in clients:
            stack.callback(lambda c=client: cluster.runner.run(c.aclose()))
        for _ in range(rounds):
            # Both on the live version first; this also keeps the clients' connections open.
            cluster.runner.run(seen_by_all(clients, address, live))
            published = cluster.runner.run(cluster.publisher.publish(version))
            returned = time.monotonic()
            seen = cluster.runner.run(seen_by_all(clients, address, published.number))
            times.append(max(seen) - returned)
            live = published.number
    return times


def measure_latency(bases: dict[str, str], addresses: list[str], rounds: int) -> dict[str, Any]:
    """Per round and lookup kind: p50/p99 ms of sequential requests over one keep-alive connection."""
    answers: dict[str, list[tuple[int, bytes]]] = {}
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in bases}

    def one_pass(name: str) -> list[float]:
        host, port = bases[name].removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            conn.request("GET", "/healthz")  # connect outside the timed requests
            conn.getresponse().read()
            latencies, seen = [], []
            for addr in addresses:
                begin = time.perf_counter()
                conn.request("GET", f"/check_ip/{addr}")
                response = conn.getresponse()
                body = response.read()
                latencies.append(time.perf_counter() - begin)
                if response.status != 200:
                    raise SystemExit(f"{name}: /check_ip/{addr} answered {response.status}: {body!r}")
                seen.append((int(response.getheader("x-blocklist-version") or -1), body))
            answers[name] = seen
            return latencies
        finally:
            conn.close()

    for name in bases:  # warm-up
        one_pass(name)
    for _ in range(rounds):
        for name in bases:
            latencies = one_pass(name)
            cuts = statistics.quantiles(latencies, n=100)
            runs[name].append((statistics.median(latencies) * 1000, cuts[98] * 1000))
    live, local = answers["live"], answers["local"]
    return {
        "runs": runs,
        "disagreements": sum(a != b for a, b in zip(live, local, strict=True)),
        "blocked": sum(b"true" in body for _, body in local),
    }


# -- report -------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--large", type=int, default=1_000_000, help="entries of the synthetic feed")
    parser.add_argument("--requests", type=int, default=2000, help="lookups per latency pass")
    parser.add_argument("--publishes", type=int, default=20, help="publishes timed for propagation")
    parser.add_argument("--quick", action="store_true", help="1 round, 100k synthetic, 300 lookups")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.large, args.requests = 1, min(args.large, 100_000), min(args.requests, 300)
        args.publishes = min(args.publishes, 3)
    # Nothing inherited may point a process at another Redis (the machine's on 6379) or mode.
    for name in [n for n in os.environ if n.startswith("BLOCKLIST_") or n == "REDIS_URL"]:
        del os.environ[name]

    started = time.monotonic()
    ipsum_body = IPSUM.read_bytes()
    inputs = {
        "ipsum": build_version("ipsum", str(IPSUM), ipsum_body, FeedFormat.IPSUM),
        f"synthetic-{args.large // 1000}k": build_version(
            "synthetic", f"seeded:{args.large}", synthetic_feed(args.large), FeedFormat.NETSET
        ),
    }
    ipsum = inputs["ipsum"]
    results: dict[str, Any] = {"rounds": args.rounds, "inputs": {}}
    with TemporaryDirectory() as tmpdir, ExitStack() as stack:
        tmp = Path(tmpdir)
        cluster = Cluster(stack, tmp)

        # 1-2. publish time and memory, inputs alternated.
        for version in inputs.values():  # warm-up: scripts loaded, replication buffers allocated
            cluster.publish(version)
        publish_rows: dict[str, list[dict[str, float]]] = {name: [] for name in inputs}
        protocol = tmp / "sadd.resp"
        protocol.write_bytes(sadd_protocol(ipsum_addresses()))
        pipe_s: list[float] = []
        for _ in range(args.rounds):
            for name, version in inputs.items():
                publish_rows[name].append(measure_publish(cluster, version))
            pipe_s.append(measure_pipe(cluster, protocol))

        # 1b. cold start of an API replica against the large version (ranges in the millions).
        large_name, large = list(inputs.items())[1]
        cluster.flush()
        cluster.publish(large)
        large_starts = []
        for i in range(args.rounds):
            with mock.patch.dict(os.environ, api_env(cluster, tmp, "local")):
                large_starts.append(start_and_measure(tmp / "no-feed", tmp / f"unused-large-{i}"))

        # 3. propagation to two API replicas.
        cluster.flush()
        cluster.publish(ipsum)
        propagation = measure_propagation(cluster, tmp, ipsum, args.publishes)

        # 4. cold start: distributed replica against embedded restart from a state dir.
        feed, state = tmp / "ipsum-feed.txt", tmp / "embedded-state"
        feed.write_bytes(ipsum_body)
        start_and_measure(feed, state)  # cold embedded run, fills the state dir (not reported)
        feed.unlink()
        starts: dict[str, list[tuple[float, float]]] = {"distributed": [], "embedded": []}
        for i in range(args.rounds):
            with mock.patch.dict(os.environ, api_env(cluster, tmp, "local")):
                starts["distributed"].append(start_and_measure(feed, tmp / f"unused-{i}"))
            starts["embedded"].append(start_and_measure(feed, state))

        # 5. live against local lookups, unloaded.
        addresses = lookup_addresses(args.requests)
        with api_replicas(cluster, tmp, ["live", "local"]) as (live_base, local_base):
            latency = measure_latency({"live": live_base, "local": local_base}, addresses, args.rounds)

    # -- print ----------------------------------------------------------------
    print(
        f"primary + 1 replica (redis-server), medians of {args.rounds} round(s); "
        "ranges/s of the replace publish"
    )
    print(f"{'publish':<18}{'ranges':>9}{'first s':>9}{'replace s':>11}{'ranges/s':>10}{'repl lag ms':>13}")
    for name, version in inputs.items():
        rows = publish_rows[name]
        first, replace = med([r["first_s"] for r in rows]), med([r["replace_s"] for r in rows])
        lag = med([r["repl_lag_s"] for r in rows])
        ranges = version.index.ranges
        print(
            f"{name:<18}{ranges:>9}{first:>9.3f}{replace:>11.3f}{ranges / replace:>10.0f}{lag * 1000:>13.1f}"
        )
        summary = {k: med([r[k] for r in rows]) for k in rows[0]}
        results["inputs"][name] = {
            "ranges": ranges,
            "ranges_v4": len(version.index.v4),
            "ranges_v6": len(version.index.v6),
            "median": summary,
            "ranges_per_s_first": ranges / summary["first_s"],
            "ranges_per_s_replace": ranges / summary["replace_s"],
            "rounds": rows,
        }
    ipsum_first = results["inputs"]["ipsum"]["median"]["first_s"]
    pipe_med = med(pipe_s)
    print(
        f"redis-cli --pipe, SADD of the {len(ipsum_addresses())} ipsum addresses: {pipe_med:.3f} s; "
        f"publish of ipsum / pipe: {ipsum_first / pipe_med:.2f}x (target <= 2x)"
    )
    results["pipe_s"] = pipe_s
    results["publish_over_pipe"] = ipsum_first / pipe_med
    print(
        f"{'memory B/range':<18}{'used_mem':>9}{'dataset':>9}{'snapshot':>10}{'history':>9}{'zsets':>8}"
        f"{'  (used_memory MiB)':>19}"
    )
    for name, data in results["inputs"].items():
        m = data["median"]
        print(
            f"{name:<18}{m['used_memory_per_range']:>9.1f}{m['dataset_per_range']:>9.1f}"
            f"{m['snapshot_strlen_per_range']:>10.1f}{m['history_key_per_range']:>9.1f}"
            f"{m['zset_per_range']:>8.1f}{m['used_memory_bytes'] / MIB:>19.1f}"
        )
    results["propagation_s"] = propagation
    p99 = (
        statistics.quantiles(propagation, n=100, method="inclusive")[98]
        if len(propagation) > 1
        else propagation[0]
    )
    print(
        f"propagation to 2 API replicas (pub/sub, poll 5 s), {len(propagation)} publishes: "
        f"p50 {med(propagation) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {max(propagation) * 1000:.1f} ms (target p99 <= 1 s)"
    )
    results["propagation_p99_s"] = p99
    large_ready = med([r[0] for r in large_starts])
    print(
        f"cold start, API replica loading {large_name} ({large.index.ranges} ranges) from redis: "
        f"ready {large_ready:.2f} s, RSS {med([r[1] for r in large_starts]):.1f} MiB (target <= 2 s at 1M)"
    )
    results["cold_start_large"] = {"ranges": large.index.ranges, "runs": large_starts}
    print(f"{'start to /readyz':<30}{'ready s':>9}{'RSS MiB':>9}")
    start_med = {}
    for name, runs in starts.items():
        start_med[name] = (med([r[0] for r in runs]), med([r[1] for r in runs]))
        label = "distributed (redis replica)" if name == "distributed" else "embedded restart (state)"
        print(f"{label:<30}{start_med[name][0]:>9.2f}{start_med[name][1]:>9.1f}")
    d, e = start_med["distributed"], start_med["embedded"]
    print(f"distributed/embedded: ready {d[0] / e[0]:.2f}x, RSS {d[1] / e[1]:.2f}x")
    results["cold_start"] = {"runs": starts, "ratio_ready": d[0] / e[0], "ratio_rss": d[1] / e[1]}
    lat = {n: (med([r[0] for r in runs]), med([r[1] for r in runs])) for n, runs in latency["runs"].items()}
    print(
        f"{'lookup, 1 conn':<18}{'p50 ms':>9}{'p99 ms':>9}   ({args.requests} sequential requests, "
        f"{latency['blocked']} blocked, {latency['disagreements']} live/local disagreements)"
    )
    for name, (p50, p99) in lat.items():
        print(f"{name:<18}{p50:>9.3f}{p99:>9.3f}")
    ratio = (lat["live"][0] / lat["local"][0], lat["live"][1] / lat["local"][1])
    print(f"live/local: p50 {ratio[0]:.2f}x, p99 {ratio[1]:.2f}x")
    results["latency"] = {**latency, "median_ms": lat, "ratio_p50": ratio[0], "ratio_p99": ratio[1]}
    print(f"total {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
