"""The cost curve: compile, publish, Redis and replica memory, cold start and lookups at 10k to 10M ranges.

For each size (``--sizes 10k,100k,1m,10m``, default all) a seeded synthetic
version is generated directly as ranges, never as text: 98 % IPv4 (88 %
single addresses with ipsum-like scores 1-8, 10 % CIDRs /20-/30) and 2 %
IPv6 /48-/64 networks in 2000::/3, laid out disjoint and non-adjacent so the
compiled index has exactly the named number of ranges; 1 % duplicate entries
are added and the order shuffled, so ``compile_index`` sorts and merges as
for a real feed. Sizes are built one at a time; only the decoded indexes
(and their lookup addresses) are kept for the last phase. Measured:

1. ``compile_index`` seconds;
2. ``RedisPublisher.publish()`` seconds into a flushed ``redis-server``
   started here (free port, temp dir), alternated over ``--pipe-rounds``
   with ``redis-cli --pipe`` of the same keys into the flushed server
   (:mod:`bench.pipe`: the snapshot and its history copy, meta, history and
   both sorted sets, packed by the publisher's own functions); both end
   states are read back and must be equal. Medians and publish/pipe
   (target <= 2x). Then ``INFO used_memory`` delta per range, split by
   ``MEMORY USAGE ... SAMPLES 0`` into the snapshot string (its history
   copy is counted in the total) and the two sorted sets; for comparison
   the naive design, a Redis SET of as many distinct IPv4 address strings
   (SADD), bytes per member; and leaner IPv4 encodings of the same ranges
   in a scratch ``redis-server`` (sorted sets of :data:`LEAN_BUCKET`
   members, listpacks, under a directory sorted set; one string of packed
   u32 pairs searched in Lua) against the sorted set as published: bytes
   per range, ``--pipe`` load seconds and lookup p50 on one connection;
3. a real API replica (``python -m ipchecking``, distributed mode, local
   lookups) against that Redis: seconds from process start to ``/readyz``
   200 (cold start) and RSS once ready, minus a baseline replica of the
   same kind against a ~10-range version (a second ``redis-server``),
   alternated B S B S ..., per range; and in-process, after
   ``decode_version`` (what a replica holds): bytes per IPv4 range and per
   IPv6 range of the index structures (``sys.getsizeof``; the ``tracemalloc``
   total of the decode is in the JSON);
4. lookup latency in-process: ``check_ip(holder, address)`` over seeded,
   distinct addresses per size (half inside ranges, half random, 10 %
   IPv6), timed in batches of 100 calls with ``perf_counter_ns``, sizes
   alternated round-robin (A B C D A B C D ...) over ``--rounds``; p50/p99
   of the per-call batch means and p50 against 100k.

Targets checked in the output: <= 40 B per IPv4 range in-process, cold
start <= 2 s at 1M ranges, p50(10M)/p50(100k) <= 1.3.

    .venv/bin/python -m bench.scale --json /tmp/scale.json   # all sizes; 10M takes minutes
    .venv/bin/python -m bench.scale --sizes 100k,1m --rounds 3
    .venv/bin/python -m bench.scale --quick   # smoke: 10k,100k, fewer lookups, well under a minute
    .venv/bin/python -m bench.scale --sizes 10m --pipe-rounds 5  # the publish/pipe ratio at 10M

Needs ``redis-server``; about 6 GB of memory at 10M (compile and Redis).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import socket
import statistics
import sys
import time
import tracemalloc
from array import array
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
import numpy as np
import redis
from redis.asyncio import Redis as AsyncRedis

from bench import pipe as bench_pipe
from bench.startup_memory import rss_mib
from blocklist import rediskeys as keys
from blocklist.addresses import V4, V6
from blocklist.feedparsers import FamilyEntries
from blocklist.index import FamilyIndex, RangeIndex, compile_index
from blocklist.settings import Settings
from blocklist.snapshot import FeedInfo, Version, checksum_of, decode_version, encode_version
from blocklist.u128 import U128Array
from blocklistupdater.redispublish import RedisPublisher, range_commands, zadd_command
from blocklistupdater.resp import BATCH, pack_command
from ipchecking.answers import check_ip
from ipchecking.holder import VersionHolder
from tests.apiprocess import server
from tests.redisserver import redis_server

MIB = 1024 * 1024
SIZES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000, "10m": 10_000_000}
V6_SHARE = 0.02
CIDR_SHARE = 0.10 / 0.98  # of the IPv4 ranges: 10 % of all
DUP_SHARE = 0.01
PREFIXES4 = range(20, 31)
PREFIXES6 = range(48, 65)
#: IPv4 ranges are laid out in 1.0.0.0 - 223.255.255.255.
V4_LOW, V4_HIGH = 1 << 24, 224 << 24
GLOBAL6 = 0x2 << 125
NAIVE_KEY = "bench:naive:set"
NAIVE_BATCH = 10_000
LOOKUP_BATCH = 100
#: Seconds the admin clients wait for a reply (FLUSHALL, GET of a 10M-range snapshot).
ADMIN_TIMEOUT = 300
#: Leaner IPv4 encodings loaded into a scratch Redis for the estimate: ranges
#: per small sorted set (Redis's default ``zset-max-listpack-entries``, so each
#: stays a listpack), and lookups timed per encoding.
LEAN_BUCKET = 128
LEAN_LOOKUPS = 2000
LEAN_DIR, LEAN_BUCKETS, LEAN_PACKED = b"bench:lean:dir4", b"bench:lean:z4:", b"bench:lean:packed4"
#: Bucketed: the greatest bucket (named by its first member) not after the
#: bound, then the greatest member in it; one round trip, as live lookups.
LEAN_BUCKET_LOOKUP = """
local b = redis.call('ZRANGE', KEYS[1], ARGV[1], '-', 'BYLEX', 'REV', 'LIMIT', 0, 1)
if #b == 0 then return false end
local m = redis.call('ZRANGE', KEYS[2] .. b[1], ARGV[1], '-', 'BYLEX', 'REV', 'LIMIT', 0, 1)
return m[1] or false
"""
#: Packed: one string of (first, last) as big-endian u32 pairs in address
#: order, binary-searched with GETRANGE inside the script.
LEAN_PACKED_LOOKUP = """
local key, v = KEYS[1], tonumber(ARGV[1])
local lo, hi, found = 0, redis.call('STRLEN', key) / 8 - 1, -1
while lo <= hi do
  local mid = math.floor((lo + hi) / 2)
  if struct.unpack('>I4', redis.call('GETRANGE', key, mid * 8, mid * 8 + 3)) <= v then
    found, lo = mid, mid + 1
  else
    hi = mid - 1
  end
end
if found < 0 then return false end
local first, last = struct.unpack('>I4>I4', redis.call('GETRANGE', key, found * 8, found * 8 + 7))
if v <= last then return string.format('%08x-%08x', first, last) end
return false
"""
#: Version keys the publisher writes, besides the history copy.
MEMORY_KEYS = {"snapshot": keys.SNAPSHOT, "meta": keys.META, "zset4": keys.ranges_key(4)}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- inputs -------------------------------------------------------------------


def v4_ranges(count: int, rng: random.Random) -> FamilyEntries:
    """``count`` disjoint, non-adjacent IPv4 ranges in address order: singles and aligned CIDRs."""
    sizes = [1 << (32 - p) for p in PREFIXES4]
    # Expected addresses used per range: the range itself plus alignment waste.
    use = (1 - CIDR_SHARE) + CIDR_SHARE * statistics.mean(s + (s - 1) / 2 for s in sizes)
    gap_mean = 0.95 * (V4_HIGH - V4_LOW - count * use) / count
    if gap_mean < 1:
        raise SystemExit(f"{count} IPv4 ranges do not fit the layout")
    span = max(1, int(2 * gap_mean) - 1)
    out = FamilyEntries.for_family(V4)
    firsts, lasts, scores = out.firsts, out.lasts, out.scores
    rand = rng.random
    cursor = V4_LOW
    for _ in range(count):
        if rand() < CIDR_SHARE:
            size = sizes[int(rand() * len(sizes))]
            first = (cursor + size - 1) & ~(size - 1)
            last = first + size - 1
            score = 0
        else:
            first = last = cursor
            score = 1 + int(rand() * 8)
        firsts.append(first)
        lasts.append(last)
        scores.append(score)
        cursor = last + 2 + int(rand() * span)  # at least one free address: never adjacent
    if lasts and lasts[-1] >= V4_HIGH:
        raise SystemExit("IPv4 layout overflowed; lower the CIDR share")
    return out


def v6_ranges(count: int, rng: random.Random) -> FamilyEntries:
    """``count`` IPv6 networks /48-/64 in 2000::/3, each in its own /48 (so disjoint)."""
    out = FamilyEntries.for_family(V6)
    seen: set[int] = set()
    while len(seen) < count:
        seen.add(rng.getrandbits(45))
    for block in seen:
        prefix = rng.choice(PREFIXES6)
        first = GLOBAL6 | block << 80 | rng.getrandbits(prefix - 48) << (128 - prefix)
        out.append(first, first | ((1 << (128 - prefix)) - 1), 0)
    return out


def shuffled_with_duplicates(entries: FamilyEntries, rng: random.Random) -> FamilyEntries:
    """The entries plus ``DUP_SHARE`` duplicates of random ones, in a seeded random order."""
    n = len(entries)
    order = list(range(n)) + [int(rng.random() * n) for _ in range(int(n * DUP_SHARE))]
    rng.shuffle(order)
    out = FamilyEntries.for_family(V4 if isinstance(entries.firsts, array) else V6)
    out.firsts.extend([entries.firsts[i] for i in order])
    out.lasts.extend([entries.lasts[i] for i in order])
    out.scores.extend([entries.scores[i] for i in order])
    return out


def synthetic_entries(ranges: int, seed: int) -> tuple[FamilyEntries, FamilyEntries]:
    """(v4, v6) entries that compile to exactly ``ranges`` ranges."""
    rng = random.Random(f"{seed}:{ranges}")
    n6 = round(ranges * V6_SHARE)
    v4 = shuffled_with_duplicates(v4_ranges(ranges - n6, rng), rng)
    v6 = shuffled_with_duplicates(v6_ranges(n6, rng), rng)
    return v4, v6


def make_version(index: RangeIndex, name: str, v4: int, v6: int) -> Version:
    info = FeedInfo(
        name="synthetic",
        source=f"bench.scale:{name}",
        format="netset",
        entries=v4 + v6,
        v4_entries=v4,
        v6_entries=v6,
        fetched_at=time.time(),
    )
    return Version(number=1, built_at=time.time(), feeds=(info,), index=index, checksum=checksum_of(index))


def build(name: str, ranges: int, seed: int) -> tuple[Version, dict[str, float]]:
    """Generate and compile one size; (version, timings)."""
    begin = time.perf_counter()
    v4, v6 = synthetic_entries(ranges, seed)
    generated = time.perf_counter()
    index = compile_index({"synthetic": (v4, v6)})
    compiled = time.perf_counter()
    version = make_version(index, name, len(v4), len(v6))
    if index.ranges != ranges:
        raise SystemExit(f"{name}: compiled {index.ranges} ranges, expected {ranges}")
    return version, {
        "entries": len(v4) + len(v6),
        "generate_s": generated - begin,
        "compile_s": compiled - generated,
        "checksum_s": time.perf_counter() - compiled,
    }


def lookup_addresses(index: RangeIndex, count: int, rng: random.Random) -> list[str]:
    """``count`` distinct addresses: half inside ranges, half random; 10 % IPv6; shuffled."""
    ntoa4 = socket.inet_ntoa

    def ntoa6(value: int) -> str:
        return socket.inet_ntop(socket.AF_INET6, value.to_bytes(16, "big"))

    def inside(fam: Any) -> int:
        i = int(rng.random() * len(fam))
        return int(fam.firsts[i] + rng.randrange(fam.lasts[i] - fam.firsts[i] + 1))

    n6 = count // 10
    wanted: list[tuple[int, Callable[[], str]]] = [
        ((count - n6) // 2, lambda: ntoa4(inside(index.v4).to_bytes(4, "big"))),
        (count - n6 - (count - n6) // 2, lambda: ntoa4(rng.getrandbits(32).to_bytes(4, "big"))),
        (n6 // 2 if len(index.v6) else 0, lambda: ntoa6(inside(index.v6))),
        (n6 - (n6 // 2 if len(index.v6) else 0), lambda: ntoa6(GLOBAL6 | rng.getrandbits(125))),
    ]
    seen: set[str] = set()
    out: list[str] = []
    for share, make in wanted:
        target = len(out) + share
        while len(out) < target:
            address = make()
            if address not in seen:
                seen.add(address)
                out.append(address)
    rng.shuffle(out)
    return out


# -- redis --------------------------------------------------------------------


class RedisBench:
    """The measured ``redis-server``, a baseline one, an asyncio publisher and sync admin clients."""

    def __init__(self, stack: ExitStack, tmp: Path) -> None:
        self.server = stack.enter_context(redis_server(tmp / "redis"))
        self.baseline = stack.enter_context(redis_server(tmp / "redis-baseline"))
        self.scratch = stack.enter_context(redis_server(tmp / "redis-scratch"))
        self.scratch_admin = redis.Redis.from_url(self.scratch.url, socket_timeout=ADMIN_TIMEOUT)
        stack.callback(self.scratch_admin.close)
        self.runner = stack.enter_context(asyncio.Runner())
        # A synchronous FLUSHALL of 10M ranges takes longer than redis-py's default 5 s timeout.
        self.admin = redis.Redis.from_url(self.server.url, socket_timeout=ADMIN_TIMEOUT)
        stack.callback(self.admin.close)
        self.writer = AsyncRedis.from_url(self.server.url)
        stack.callback(lambda: self.runner.run(self.writer.aclose()))
        # TTLs well above any publish time here, so a slow 10M publish is
        # measured instead of refused; main() warns against the defaults.
        self.publisher = RedisPublisher(self.writer, temp_ttl=3600, lock_timeout=3600)
        self.runner.run(self.writer.ping())

    def publish_baseline(self, version: Version) -> None:
        async def go() -> None:
            client = AsyncRedis.from_url(self.baseline.url)
            try:
                await RedisPublisher(client).publish(version)
            finally:
                await client.aclose()

        self.runner.run(go())

    def flush(self) -> None:
        self.admin.flushall(asynchronous=False)
        time.sleep(0.2)  # let frees settle before memory is read

    def used_memory(self) -> int:
        return int(self.admin.info("memory")["used_memory"])

    def key_bytes(self, key: str) -> int:
        usage = self.admin.memory_usage(key, samples=0)
        return int(usage) if usage is not None else 0

    def timed_publish(self, version: Version) -> tuple[Version, float]:
        """``publish(version)``; (published version, seconds).

        Timed inside the coroutine, and the version is not its result: on
        CPython 3.11, ``Runner.run`` formats the repr of its task's result
        when it restores the SIGINT handler, and a version's repr lists every
        bound (about 1 s at 1M ranges).
        """
        out: list[Version] = []

        async def publish() -> float:
            begin = time.perf_counter()
            out.append(await self.publisher.publish(version))
            return time.perf_counter() - begin

        seconds = self.runner.run(publish())
        return out[0], seconds

    def measure_publish(self, version: Version) -> tuple[Version, dict[str, float]]:
        """Publish into a flushed Redis; (published version, seconds and memory). Leaves it live."""
        self.flush()
        before = self.used_memory()
        published, seconds = self.timed_publish(version)
        used = self.used_memory() - before
        ranges = version.index.ranges
        parts = {name: self.key_bytes(key) for name, key in MEMORY_KEYS.items()}
        parts["zset6"] = self.key_bytes(keys.ranges_key(6))
        parts["history"] = self.key_bytes(keys.history_snapshot_key(published.number))
        return published, {
            "publish_s": seconds,
            "ranges_per_s": ranges / seconds,
            "used_memory_bytes": used,
            "redis_per_range": used / ranges,
            "snapshot_per_range": parts["snapshot"] / ranges,
            "history_per_range": parts["history"] / ranges,
            "zsets_per_range": (parts["zset4"] + parts["zset6"]) / ranges,
            "snapshot_strlen": int(self.admin.strlen(keys.SNAPSHOT)),
            "key_bytes": parts,
        }

    def compare_with_pipe(
        self, version: Version, rounds: int, path: Path, seed: int
    ) -> tuple[Version, dict[str, Any], dict[str, Any]]:
        """``redis-cli --pipe`` of the same keys and ``publish()``, each into a flushed Redis, alternated.

        Rounds run pipe then publish, so the published version is live at the
        end. Both end states are read back and must agree (keys, types, TTLs,
        ZCARDs, sampled members, meta, history, string digests), and the
        sampled members must be the index's. (published version, publish row
        of the last round with median seconds, pipe row).
        """
        size = bench_pipe.write_protocol(version, path)
        ranks = bench_pipe.sample_ranks(version, seed)
        expected = bench_pipe.expected_members(version, ranks)
        pipe_s: list[float] = []
        publish_s: list[float] = []
        pipe_used: list[int] = []
        states: list[dict[str, Any]] = []
        published, row = version, {}
        for _ in range(rounds):
            self.flush()
            before = self.used_memory()
            pipe_s.append(bench_pipe.run_pipe(self.server.port, path))
            pipe_used.append(self.used_memory() - before)
            states.append(bench_pipe.end_state(self.admin, ranks))
            published, row = self.measure_publish(version)
            publish_s.append(row["publish_s"])
            states.append(bench_pipe.end_state(self.admin, ranks))
        path.unlink()
        differ = sorted({d for state in states[1:] for d in bench_pipe.differences(states[0], state)})
        wrong = [f for f in (4, 6) if any(st[f"members{f}"] != expected[f] for st in states)]
        if differ or wrong:
            raise SystemExit(
                f"pipe and publish end states differ: {differ}; members not the index's: {wrong}"
            )
        pipe_med, publish_med = statistics.median(pipe_s), statistics.median(publish_s)
        ranges = version.index.ranges
        row.update(publish_s=publish_med, ranges_per_s=ranges / publish_med, publish_rounds_s=publish_s)
        return (
            published,
            row,
            {
                "pipe_s": pipe_med,
                "publish_s": publish_med,
                "ratio": publish_med / pipe_med,
                "pipe_rounds_s": pipe_s,
                "publish_rounds_s": publish_s,
                "protocol_bytes": size,
                "pipe_used_memory_per_range": statistics.median(pipe_used) / ranges,
                "zcards": {f: states[0][f"zcard{f}"] for f in (4, 6)},
                "sampled_members": sum(len(r) for r in ranks.values()),
                "end_states_equal": True,
            },
        )

    def measure_lean(self, version: Version, path: Path, seed: int) -> dict[str, Any]:
        """The IPv4 sorted set as published and two leaner encodings of it, each in the flushed scratch Redis.

        Per encoding: ``redis-cli --pipe`` load seconds, ``used_memory``
        delta per IPv4 range, and one-connection lookup latency (p50 of
        :data:`LEAN_LOOKUPS` calls, half the addresses inside ranges),
        every answer checked against the index.
        """
        fam = version.index.v4
        rng = random.Random(f"{seed}:lean")
        inside = (int(rng.random() * len(fam)) for _ in range(LEAN_LOOKUPS // 2))
        values = [int(fam.firsts[i]) for i in inside]
        values += [rng.getrandbits(32) for _ in range(LEAN_LOOKUPS - len(values))]
        rng.shuffle(values)
        scratch = self.scratch_admin
        live = keys.ranges_key(4)
        bucket_lookup = scratch.register_script(LEAN_BUCKET_LOOKUP)
        packed_lookup = scratch.register_script(LEAN_PACKED_LOOKUP)

        def zset(value: int) -> Any:
            return scratch.zrange(
                live, keys.lookup_bound(4, value), "-", bylex=True, desc=True, offset=0, num=1
            )

        def bucketed(value: int) -> Any:
            return bucket_lookup([LEAN_DIR, LEAN_BUCKETS], [keys.lookup_bound(4, value)])

        def packed(value: int) -> Any:
            return packed_lookup([LEAN_PACKED], [value])

        out: dict[str, Any] = {"ranges_v4": len(fam)}
        for name, commands, ask in (
            ("zset", range_commands(live.encode(), 4, fam.firsts, fam.lasts), zset),
            ("bucketed", lean_bucketed(fam), bucketed),
            ("packed", lean_packed(fam), packed),
        ):
            scratch.flushall(asynchronous=False)
            time.sleep(0.2)
            before = int(scratch.info("memory")["used_memory"])
            with path.open("wb") as file:
                for command in commands:
                    file.write(command)
            load_s = bench_pipe.run_pipe(self.scratch.port, path)
            path.unlink()
            used = int(scratch.info("memory")["used_memory"]) - before
            out[name] = {
                "load_s": load_s,
                "per_range": used / len(fam),
                "keys": int(scratch.dbsize()),
                "lookup_p50_us": lean_lookups(fam, values, ask),
            }
        scratch.flushall(asynchronous=False)
        return out

    def measure_naive_set(self, members: int) -> dict[str, float]:
        """SADD ``members`` distinct IPv4 address strings into one SET in a flushed Redis."""
        self.flush()
        before = self.used_memory()
        begin = time.perf_counter()
        ntoa = socket.inet_ntoa
        pipe = self.admin.pipeline(transaction=False)
        for start in range(0, members, NAIVE_BATCH):
            # i * odd constant mod 2**32 is a bijection: distinct addresses, scattered.
            batch = [
                ntoa(((i * 2654435761) & 0xFFFFFFFF).to_bytes(4, "big"))
                for i in range(start, min(start + NAIVE_BATCH, members))
            ]
            pipe.sadd(NAIVE_KEY, *batch)
            if len(pipe) >= 10:
                pipe.execute()
        pipe.execute()
        seconds = time.perf_counter() - begin
        used = self.used_memory() - before
        key = self.key_bytes(NAIVE_KEY)
        if int(self.admin.scard(NAIVE_KEY)) != members:
            raise SystemExit("naive SET: members were not distinct")
        self.flush()
        return {
            "sadd_s": seconds,
            "used_memory_bytes": used,
            "per_member": used / members,
            "key_per_member": key / members,
        }


def lean_bucketed(fam: FamilyIndex) -> Iterator[bytes]:
    """IPv4 ranges as sorted sets of :data:`LEAN_BUCKET` members (listpacks) and a directory of them."""
    n = len(fam)
    starts = range(0, n, LEAN_BUCKET)
    names = [keys.encode_range(4, fam.firsts[i], fam.lasts[i]).encode() for i in starts]
    for start, name in zip(starts, names, strict=True):
        stop = min(start + LEAN_BUCKET, n)
        yield zadd_command(LEAN_BUCKETS + name, 4, fam.firsts[start:stop], fam.lasts[start:stop])
    for start in range(0, len(names), BATCH):
        members = [x for name in names[start : start + BATCH] for x in (b"0", name)]
        yield pack_command(b"ZADD", LEAN_DIR, *members)


def lean_packed(fam: FamilyIndex) -> Iterator[bytes]:
    """IPv4 ranges as one string of big-endian (first, last) u32 pairs."""
    pairs = np.empty((len(fam), 2), dtype=">u4")
    pairs[:, 0], pairs[:, 1] = fam.firsts, fam.lasts
    yield pack_command(b"SET", LEAN_PACKED, pairs.tobytes())


def lean_lookups(fam: FamilyIndex, values: list[int], ask: Callable[[int], Any]) -> float:
    """p50 microseconds of ``ask(value)`` (a member found, a list of one, or nothing), answers checked."""
    times: list[float] = []
    clock = time.perf_counter
    for value in values:
        begin = clock()
        found = ask(value)
        times.append(clock() - begin)
        member = found[0] if isinstance(found, list) and found else found
        hit = bool(member) and keys.member_contains(member, value)
        if hit != (fam.find(value) >= 0):
            raise SystemExit(f"lean lookup of {value:#x} answered {found!r}, the index says otherwise")
    return statistics.median(times) * 1e6


# -- API replicas -------------------------------------------------------------


def replica_env(url: str, state: Path, extra: dict[str, str]) -> dict[str, str]:
    return {
        "REDIS_URL": url,
        "BLOCKLIST_LOOKUP": "local",
        "BLOCKLIST_STATE_DIR": str(state),
        "BLOCKLIST_BOOTSTRAP": "false",
        "BLOCKLIST_LOG_LEVEL": "WARNING",
        **extra,
    }


def start_replica(url: str, tmp: Path, label: str, timeout: float, extra: dict[str, str]) -> dict[str, Any]:
    """Start a replica against ``url``; seconds to ``/readyz`` 200 and RSS MiB 1 s later, or the error."""
    log_path = tmp / f"api-{label}.log"
    begin = time.monotonic()
    with server(replica_env(url, tmp / f"state-{label}", extra), log_path) as (base, proc):
        while True:
            if proc.poll() is not None:
                return {"error": f"exited: {log_tail(log_path)}"}
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            waited = time.monotonic() - begin
            if waited > timeout or (waited > 5 and "redis unreachable" in log_path.read_text()):
                return {"error": f"not ready after {waited:.1f} s: {log_tail(log_path)}"}
            time.sleep(0.01)
        ready = time.monotonic() - begin
        time.sleep(1.0)  # let the follower settle before reading memory
        return {"ready_s": ready, "rss_mib": rss_mib(proc.pid)}


def log_tail(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines()
    return " | ".join(lines[-2:])[-400:]


def measure_replicas(bench: RedisBench, tmp: Path, name: str, ranges: int, runs: int) -> dict[str, Any]:
    """Alternate baseline and sized replicas ``runs`` times; medians and bytes per range."""
    timeout = 60 + ranges / 50_000
    extra: dict[str, str] = {}
    sized: list[dict[str, Any]] = []
    base: list[dict[str, Any]] = []
    for i in range(runs):
        base.append(start_replica(bench.baseline.url, tmp, f"{name}-base-{i}", 60, {}))
        run = start_replica(bench.server.url, tmp, f"{name}-{i}", timeout, extra)
        if "error" in run and not extra:
            # Record why the defaults failed, then measure with a longer Redis timeout.
            log(f"  replica {name} failed with the default settings: {run['error']}")
            extra = {"BLOCKLIST_REDIS_TIMEOUT": "60"}
            default_error = run["error"]
            run = start_replica(bench.server.url, tmp, f"{name}-{i}-t60", timeout, extra)
            run["default_error"] = default_error
        sized.append(run)
        if "error" in run:
            log(f"  replica {name} failed: {run['error']}")
            break
    ok = [r for r in sized if "error" not in r]
    base_ok = [r for r in base if "error" not in r]
    out: dict[str, Any] = {"runs": sized, "baseline_runs": base, "extra_env": extra}
    if ok and base_ok:
        rss = statistics.median(r["rss_mib"] for r in ok)
        base_rss = statistics.median(r["rss_mib"] for r in base_ok)
        out.update(
            ready_s=statistics.median(r["ready_s"] for r in ok),
            baseline_ready_s=statistics.median(r["ready_s"] for r in base_ok),
            rss_mib=rss,
            baseline_rss_mib=base_rss,
            per_range=(rss - base_rss) * MIB / ranges,
        )
    return out


# -- in-process -----------------------------------------------------------------


def in_process_memory(data: bytes) -> tuple[Version, dict[str, float]]:
    """Decode as a replica does; bytes of the index per IPv4 and per IPv6 range."""
    gc.collect()
    tracemalloc.start()
    begin = time.perf_counter()
    version = decode_version(data)
    seconds = time.perf_counter() - begin
    traced, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    v4, v6 = version.index.v4, version.index.v6
    v4_bytes = sum(sys.getsizeof(a) for a in (v4.firsts, v4.lasts, v4.masks, v4.scores))
    # IPv6 bounds are U128Array halves (array('Q')); a list of ints would be counted item by item.
    bounds = [
        half for b in (v6.firsts, v6.lasts) for half in ((b.hi, b.lo) if isinstance(b, U128Array) else (b,))
    ]
    v6_bytes = sum(sys.getsizeof(a) for a in (*bounds, v6.masks, v6.scores))
    v6_bytes += sum(sys.getsizeof(v) for b in bounds if isinstance(b, list) for v in b)
    ranges = version.index.ranges
    return version, {
        "decode_s": seconds,
        "v4_per_range": v4_bytes / max(1, len(v4)),
        "v6_per_range": v6_bytes / max(1, len(v6)),
        "tracemalloc_per_range": traced / ranges,
        "tracemalloc_peak_per_range": peak / ranges,
    }


def measure_lookups(
    holders: dict[str, VersionHolder], addresses: dict[str, list[str]], rounds: int
) -> dict[str, Any]:
    """Round-robin over sizes: per-call ns of ``check_ip`` from batches of ``LOOKUP_BATCH`` calls."""
    batches = {
        name: [addrs[i : i + LOOKUP_BATCH] for i in range(0, len(addrs), LOOKUP_BATCH)]
        for name, addrs in addresses.items()
    }
    samples: dict[str, list[float]] = {name: [] for name in holders}
    round_p50: dict[str, list[float]] = {name: [] for name in holders}
    blocked: dict[str, float] = {}
    for name, holder in holders.items():  # warm-up, and a sanity check of the answers
        hits = sum(check_ip(holder, a)[3] == "blocked" for a in addresses[name])
        blocked[name] = hits / len(addresses[name])
    clock = time.perf_counter_ns
    gc.collect()
    for _ in range(rounds):
        for name, holder in holders.items():
            out = []
            for batch in batches[name]:
                begin = clock()
                for address in batch:
                    check_ip(holder, address)
                out.append((clock() - begin) / len(batch))
            samples[name] += out
            round_p50[name].append(statistics.median(out))
    result: dict[str, Any] = {}
    for name, values in samples.items():
        cuts = statistics.quantiles(values, n=100)
        result[name] = {
            "p50_ns": statistics.median(values),
            "p99_ns": cuts[98],
            "round_p50_ns": round_p50[name],
            "blocked_share": blocked[name],
            "addresses": len(addresses[name]),
        }
    return result


# -- report -------------------------------------------------------------------


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(results: dict[str, Any]) -> None:
    sizes = results["sizes"]
    head = (
        f"{'size':>5}{'v4 ranges':>10}{'v6':>7}{'compile s':>10}{'publish s':>10}"
        f"{'redis B/r':>10}{'(snap':>6}{'zset)':>6}{'SET B/m':>8}{'replica B/r':>12}"
        f"{'B/v4 r':>7}{'B/v6 r':>7}{'cold s':>7}{'p50 ns':>8}{'p99 ns':>8}"
    )
    print(head)
    print("-" * len(head))
    for name, row in sizes.items():
        redis_row, naive, rep, mem = row["redis"], row.get("naive_set"), row["replica"], row["memory"]
        look = results["lookup"].get(name, {})
        print(
            f"{name:>5}{row['ranges_v4']:>10}{row['ranges_v6']:>7}{row['compile_s']:>10.2f}"
            f"{redis_row['publish_s']:>10.2f}{redis_row['redis_per_range']:>10.1f}"
            f"{redis_row['snapshot_per_range']:>6.0f}{redis_row['zsets_per_range']:>6.0f}"
            f"{fmt(naive and naive['per_member'], '.1f'):>8}{fmt(rep.get('per_range'), '.1f'):>12}"
            f"{mem['v4_per_range']:>7.1f}{mem['v6_per_range']:>7.1f}{fmt(rep.get('ready_s'), '.2f'):>7}"
            f"{fmt(look.get('p50_ns'), '.0f'):>8}{fmt(look.get('p99_ns'), '.0f'):>8}"
        )
    print(
        "redis B/r: used_memory delta per range (snapshot + its history copy + sorted sets + meta); "
        "snap, zset: MEMORY USAGE per range.\nSET B/m: naive SADD of as many IPv4 strings, "
        "used_memory per member. replica B/r: (RSS - RSS of a ~10-range replica) / ranges.\n"
        "B/v4 r, B/v6 r: index after decode_version, sys.getsizeof. cold s: process start to /readyz. "
        f"p50/p99: ns per check_ip, batches of {LOOKUP_BATCH}, {results['rounds']} round-robin rounds."
    )
    print()
    head = f"{'size':>5}{'publish s':>11}{'pipe s':>9}{'publish/pipe':>14}{'RESP MB':>9}{'pipe B/r':>10}"
    head += f"{'rounds':>8}"
    print(head)
    print("-" * len(head))
    for name, row in sizes.items():
        cmp = row["pipe"]
        print(
            f"{name:>5}{cmp['publish_s']:>11.2f}{cmp['pipe_s']:>9.2f}{cmp['ratio']:>13.2f}x"
            f"{cmp['protocol_bytes'] / 1e6:>9.1f}{cmp['pipe_used_memory_per_range']:>10.1f}"
            f"{len(cmp['pipe_rounds_s']):>8}"
        )
    print(
        "publish s, pipe s: medians, alternated, each into a flushed Redis; pipe: redis-cli --pipe of the "
        "same keys\n(snapshot and its history copy, meta, history, both sorted sets with the publisher's "
        "batches); end states read back and equal.\npipe B/r: used_memory delta per range after the pipe."
    )
    print()
    head = (
        f"{'size':>5}{'v4 ranges':>10}{'zset B/r':>10}{'bucketed':>10}{'packed':>8}"
        f"{'zset us':>9}{'bucketed':>10}{'packed':>8}{'load s: zset':>13}{'bucketed':>10}{'packed':>8}"
    )
    print(head)
    print("-" * len(head))
    for name, row in sizes.items():
        lean = row["lean"]
        zset, bucketed, packed = lean["zset"], lean["bucketed"], lean["packed"]
        print(
            f"{name:>5}{lean['ranges_v4']:>10}{zset['per_range']:>10.1f}{bucketed['per_range']:>10.1f}"
            f"{packed['per_range']:>8.1f}{zset['lookup_p50_us']:>9.1f}{bucketed['lookup_p50_us']:>10.1f}"
            f"{packed['lookup_p50_us']:>8.1f}{zset['load_s']:>13.2f}{bucketed['load_s']:>10.2f}{packed['load_s']:>8.2f}"
        )
    print(
        "Leaner IPv4 encodings of the same ranges, loaded by redis-cli --pipe into a scratch redis-server "
        "(the product's keys are unchanged).\nzset: the IPv4 sorted set as published; "
        f"bucketed: sorted sets of {LEAN_BUCKET} members (listpacks) plus a directory sorted set, one Lua "
        "call per lookup;\npacked: one string of big-endian (first, last) u32 pairs, binary search in Lua. "
        f"B/r: used_memory per IPv4 range. us: p50 of {LEAN_LOOKUPS} lookups on one connection, answers "
        "checked."
    )
    for name, row in sizes.items():
        ratio = row["pipe"]["ratio"]
        print(f"publish/pipe at {name}: {ratio:.2f}x (target <= 2x): {'met' if ratio <= 2 else 'missed'}")
    for name in results.get("naive_skipped", []):
        print(f"naive SET skipped at {name} (above --naive-max)")
    for name, row in sizes.items():
        rep = row["replica"]
        if rep.get("extra_env"):
            print(f"{name}: replica needed {rep['extra_env']}: default settings failed ({rep['runs'][0]})")
        if "per_range" not in rep:
            print(f"{name}: replica never ready: {rep['runs']}")
    base = results["lookup"].get("100k", {}).get("p50_ns")
    if base:
        ratios = {n: r["p50_ns"] / base for n, r in results["lookup"].items()}
        results["p50_ratio_vs_100k"] = ratios
        print("p50 / p50(100k): " + ", ".join(f"{n} {r:.2f}x" for n, r in ratios.items()))
        if "10m" in ratios:
            print(f"p50(10M)/p50(100k) = {ratios['10m']:.2f} (target <= 1.3)")
    first = sizes[next(iter(sizes))]
    compile_unit = first["compile_s"] / first["ranges"]
    publish_unit = first["redis"]["publish_s"] / first["ranges"]
    print(
        f"seconds per range vs {next(iter(sizes))}: "
        + ", ".join(
            f"{n} compile {r['compile_s'] / r['ranges'] / compile_unit:.2f}x "
            f"publish {r['redis']['publish_s'] / r['ranges'] / publish_unit:.2f}x"
            for n, r in sizes.items()
        )
    )
    worst_v4 = max(r["memory"]["v4_per_range"] for r in sizes.values())
    print(f"in-process B/IPv4 range <= {worst_v4:.1f} (target <= 40)")
    if "1m" in sizes and "ready_s" in sizes["1m"]["replica"]:
        print(f"cold start at 1M: {sizes['1m']['replica']['ready_s']:.2f} s (target <= 2)")
    lock_ttl = Settings.model_fields["publish_lock_ttl"].default
    temp_ttl = Settings.model_fields["temp_key_ttl"].default
    for name, row in sizes.items():
        seconds = row["redis"]["publish_s"]
        if seconds > min(lock_ttl, temp_ttl):
            print(
                f"warning: {name} publish took {seconds:.0f} s, over the default publish_lock_ttl "
                f"({lock_ttl:.0f} s) or temp_key_ttl ({temp_ttl:.0f} s)"
            )


@contextmanager
def phase(label: str) -> Iterator[None]:
    begin = time.monotonic()
    yield
    log(f"  {label}: {time.monotonic() - begin:.1f} s, RSS {rss_mib(os.getpid()):.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10k,100k,1m,10m", help="comma-separated: 10k,100k,1m,10m")
    parser.add_argument(
        "--quick", action="store_true", help="10k,100k, 20k lookups, 3 rounds, 1 replica run, 2 pipe rounds"
    )
    parser.add_argument("--lookups", type=int, default=200_000, help="distinct addresses per size")
    parser.add_argument("--rounds", type=int, default=5, help="round-robin lookup rounds")
    parser.add_argument(
        "--pipe-rounds", type=int, default=3, help="publish / redis-cli --pipe rounds per size"
    )
    parser.add_argument("--replica-runs", type=int, default=3, help="replica starts per size (and baseline)")
    parser.add_argument("--naive-max", default="10m", help="largest size that gets the naive SET")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.lookups, args.rounds, args.replica_runs = "10k,100k", 20_000, 3, 1
        args.pipe_rounds = 2
    names = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    if unknown := [n for n in names if n not in SIZES]:
        parser.error(f"unknown sizes {unknown}; choose from {list(SIZES)}")
    naive_max = SIZES[args.naive_max.lower()]
    started = time.monotonic()
    results: dict[str, Any] = {"rounds": args.rounds, "seed": args.seed, "sizes": {}, "naive_skipped": []}
    holders: dict[str, VersionHolder] = {}
    addresses: dict[str, list[str]] = {}
    with TemporaryDirectory(prefix="bench-scale-") as tmpdir, ExitStack() as stack:
        tmp = Path(tmpdir)
        bench = RedisBench(stack, tmp)
        tiny, _ = build("tiny", 10, args.seed)
        bench.publish_baseline(tiny)
        for name in names:
            ranges = SIZES[name]
            log(f"{name}: {ranges} ranges")
            with phase("generate + compile"):
                version, row = build(name, ranges, args.seed)
            row.update(ranges=ranges, ranges_v4=len(version.index.v4), ranges_v6=len(version.index.v6))
            log(f"  compile_index {row['compile_s']:.2f} s ({row['entries']} entries)")
            with phase(f"publish against redis-cli --pipe, {args.pipe_rounds} rounds"):
                published, row["redis"], row["pipe"] = bench.compare_with_pipe(
                    version, args.pipe_rounds, tmp / "publish.resp", args.seed
                )
            with phase("leaner IPv4 encodings (scratch redis)"):
                row["lean"] = bench.measure_lean(version, tmp / "lean.resp", args.seed)
            del version
            log(
                f"  publish {row['pipe']['publish_s']:.2f} s, pipe {row['pipe']['pipe_s']:.2f} s "
                f"({row['pipe']['ratio']:.2f}x), {row['redis']['redis_per_range']:.1f} B/range"
            )
            with phase("replicas"):
                row["replica"] = measure_replicas(bench, tmp, name, ranges, args.replica_runs)
            with phase("in-process memory"):
                data = encode_version(published)
                del published
                decoded, row["memory"] = in_process_memory(data)
                del data
            if ranges <= naive_max:
                with phase("naive SET"):
                    row["naive_set"] = bench.measure_naive_set(ranges)
            else:
                results["naive_skipped"].append(name)
            bench.flush()
            holder = VersionHolder()
            holder.swap(decoded)
            holders[name] = holder
            rng = random.Random(f"{args.seed}:{name}")
            addresses[name] = lookup_addresses(decoded.index, args.lookups, rng)
            del decoded
            gc.collect()
            results["sizes"][name] = row
        with phase("lookups"):
            results["lookup"] = measure_lookups(holders, addresses, args.rounds)
        results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report(results)
    results["total_s"] = time.monotonic() - started
    print(f"total {results['total_s']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
