"""History: storage per change, archive import time, point-in-time lookup cost, and /check_ip
throughput with the history work against the code before it.

1. Import the 35 dated Spamhaus DROP and EDROP files (``../shared/data``) into
   the embedded store (SQLite) and into a ``redis-server`` on a free port,
   alternated, ``--rounds`` times each: seconds per import; then bytes per
   stored change (one change = one network added to or removed from a feed
   at one moment: a bound of an interval) as the SQLite file size after
   ``VACUUM`` and as Redis ``MEMORY USAGE`` of the history keys, against
   what whole copies of every version would hold.
2. In process, alternated over sampled addresses: a point-in-time answer
   (records of the address's keys + intervals at the moment) against a
   current one (the same read, at now) and against the served index's
   lookup (what ``/check_ip`` does), from SQLite and from Redis.
3. ``/check_ip`` under ``wrk -t1 -c64`` over the seeded addresses of
   ``bench.http_throughput``: this tree's ``python -m ipchecking`` against the
   same at ``--base`` (a git revision, checked out in a temporary worktree),
   both embedded on ipsum, alternated ``--rounds`` times.

    .venv/bin/python -m bench.history --rounds 3 --duration 10
    .venv/bin/python -m bench.history --quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from bench.apiprocess import api_process
from bench.http_throughput import write_addresses, wrk
from blocklist import rediskeys as keys
from blocklist.addresses import parse_address
from blocklist.feedparsers import parse_feed
from blocklist.history import address_keys, matches_at
from blocklist.historysqlite import SqliteHistory
from blocklist.index import compile_index
from blocklist.settings import Settings
from blocklistupdater.archive import import_embedded, read_files
from blocklistupdater.redishistory import import_redis
from ipchecking.historysource import RedisSource, SqliteSource
from tests.archives import ARCHIVE_FEEDS, ArchiveModel, archive_files
from tests.redisserver import redis_server

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
IPSUM = DATA / "ipsum" / "ipsum-2026-08-22.txt"


def settings_for(state: Path, redis_url: str | None = None) -> Settings:
    feeds = ",".join(f"{f}=spamhaus:{archive_files(DATA, f)[-1]}" for f in ARCHIVE_FEEDS)
    return Settings(feeds=feeds, state_dir=state, bootstrap=False, history_retention="0", redis_url=redis_url)


def import_all_embedded(settings: Settings) -> float:
    start = time.perf_counter()
    for feed in ARCHIVE_FEEDS:
        files, _ = read_files(settings, archive_files(DATA, feed), settings.feeds[0].format, None)
        import_embedded(settings, feed, files)
    return time.perf_counter() - start


def import_all_redis(settings: Settings) -> float:
    start = time.perf_counter()
    for feed in ARCHIVE_FEEDS:
        files, _ = read_files(settings, archive_files(DATA, feed), settings.feeds[0].format, None)
        asyncio.run(import_redis(settings, feed, files))
    return time.perf_counter() - start


def storage(tmp: Path, rounds: int, out: Callable[[str], None]) -> dict[str, float]:
    """Import times (alternated) and bytes per change."""
    sqlite_times, redis_times = [], []
    with redis_server(tmp / "redis") as server:
        for i in range(rounds):
            sqlite_times.append(import_all_embedded(settings_for(tmp / f"state-{i}")))
            with redis.Redis.from_url(server.url) as client:
                client.flushall()
            redis_times.append(import_all_redis(settings_for(tmp / "unused", server.url)))
        store = SqliteHistory(tmp / "state-0")
        with sqlite3.connect(store.path) as con:
            changes = con.execute("SELECT COUNT(*) FROM bounds").fetchone()[0]
            records = con.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        with sqlite3.connect(store.path) as con:
            con.execute("VACUUM")
        sqlite_bytes = store.path.stat().st_size
        with redis.Redis.from_url(server.url) as client:
            redis_bytes = sum(
                client.memory_usage(k) or 0 for k in client.scan_iter(match=f"{keys.PREFIX}timeline:*")
            )
    files = [p for feed in ARCHIVE_FEEDS for p in archive_files(DATA, feed)]
    model = ArchiveModel.load({feed: archive_files(DATA, feed) for feed in ARCHIVE_FEEDS})
    entries = sum(len(c) for contents in model.contents.values() for c in contents)
    text_bytes = sum(p.stat().st_size for p in files)
    result = {
        "files": len(files),
        "entries_in_all_versions": entries,
        "changes": changes,
        "records": records,
        "import_sqlite_s": statistics.median(sqlite_times),
        "import_redis_s": statistics.median(redis_times),
        "sqlite_bytes": sqlite_bytes,
        "redis_bytes": redis_bytes,
        "sqlite_bytes_per_change": sqlite_bytes / changes,
        "redis_bytes_per_change": redis_bytes / changes,
        "copies_text_bytes": text_bytes,
    }
    out(f"archive: {len(files)} files, {entries} entries over all versions ({text_bytes} B of text)")
    out(
        f"stored changes (interval bounds): {changes} ({changes / entries:.1%} of the entries); "
        f"records: {records}"
    )
    out(
        f"import, median of {rounds}: SQLite {result['import_sqlite_s']:.2f} s, "
        f"Redis {result['import_redis_s']:.2f} s"
    )
    out(
        f"bytes per change: SQLite {result['sqlite_bytes_per_change']:.0f} B ({sqlite_bytes} B file), "
        f"Redis {result['redis_bytes_per_change']:.0f} B ({redis_bytes} B); whole copies as text: "
        f"{text_bytes / changes:.0f} B per change"
    )
    return result


def lookups(tmp: Path, samples: int, out: Callable[[str], None]) -> dict[str, float]:
    """In-process cost of point-in-time, current and index lookups, alternated."""
    model = ArchiveModel.load({feed: archive_files(DATA, feed) for feed in ARCHIVE_FEEDS})
    rng = random.Random(3)
    addresses = [parse_address(a) for a in model.sample_addresses(rng, samples)]
    moments = model.sample_moments()
    sqlite_source = SqliteSource(SqliteHistory(tmp / "state-0"))
    parsed = {f: parse_feed(archive_files(DATA, f)[-1].read_bytes(), max_size=10**8) for f in ARCHIVE_FEEDS}
    index = compile_index({f: (p.v4, p.v6) for f, p in parsed.items()})
    timings: dict[str, list[float]] = {}

    async def measure(label: str, source: object) -> None:
        at_times, now_times, index_times = [], [], []
        for family, value in addresses:
            wanted = address_keys(family, value)
            moment = rng.choice(moments)
            t0 = time.perf_counter()
            matches_at(await source.lookup(wanted), moment)  # type: ignore[attr-defined]
            t1 = time.perf_counter()
            matches_at(await source.lookup(wanted), None)  # type: ignore[attr-defined]
            t2 = time.perf_counter()
            index.lookup(family, value)
            t3 = time.perf_counter()
            at_times.append(t1 - t0)
            now_times.append(t2 - t1)
            index_times.append(t3 - t2)
        for name, values in (("at", at_times), ("now", now_times), ("index", index_times)):
            timings.setdefault(f"{label}_{name}", []).append(statistics.median(values) * 1e6)

    with redis_server(tmp / "redis-lookups") as server:
        import_all_redis(settings_for(tmp / "unused", server.url))
        client = redis.asyncio.Redis.from_url(server.url)
        redis_source = RedisSource(lambda: client)

        async def run() -> None:
            for _ in range(3):
                await measure("sqlite", sqlite_source)
                await measure("redis", redis_source)
            await client.aclose()

        asyncio.run(run())
    result = {k: statistics.median(v) for k, v in timings.items()}
    for label in ("sqlite", "redis"):
        at, now, idx = result[f"{label}_at"], result[f"{label}_now"], result[f"{label}_index"]
        out(
            f"{label}: point-in-time {at:.0f} us, current {now:.0f} us (ratio {at / now:.2f}); "
            f"the index lookup /check_ip does: {idx:.2f} us"
        )
    return result


@contextmanager
def api_server(cwd: Path, tmp: Path, name: str) -> Iterator[str]:
    """The API of the tree at ``cwd`` on ipsum, embedded; yields its base URL once ready."""
    settings = {
        "BLOCKLIST_FEEDS": f"ipsum=ipsum:{IPSUM}",
        "BLOCKLIST_BOOTSTRAP": "false",
        "PYTHONPATH": str(cwd),
    }
    with api_process(tmp, name, settings, cwd=cwd) as (base, _):
        yield base


def throughput(
    tmp: Path, base_rev: str, rounds: int, duration: float, addresses: int, out: Callable[[str], None]
) -> dict[str, float]:
    """/check_ip of this tree against ``base_rev``, alternated."""
    addr_file = tmp / "addresses.txt"
    write_addresses(addr_file, addresses)
    worktree = tmp / "base"
    subprocess.run(["git", "worktree", "add", "--detach", str(worktree), base_rev], cwd=ROOT, check=True,
                   capture_output=True)  # fmt: skip
    runs: dict[str, list[tuple[float, float, float, int]]] = {"base": [], "history": []}
    try:
        with api_server(worktree, tmp, "base") as base, api_server(ROOT, tmp, "history") as ours:
            for url in (base, ours):
                wrk(url, addr_file, 64, 1)  # warm-up
            for _ in range(rounds):
                for name, url in (("base", base), ("history", ours)):
                    runs[name].append(wrk(url, addr_file, 64, duration))
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, check=False,
                       capture_output=True)  # fmt: skip
    med = {
        name: {
            "rps": statistics.median(r[0] for r in values),
            "p50_ms": statistics.median(r[1] for r in values),
            "p99_ms": statistics.median(r[2] for r in values),
            "errors": sum(r[3] for r in values),
        }
        for name, values in runs.items()
    }
    for name, m in med.items():
        out(
            f"/check_ip {name:<8} {m['rps']:>9.0f} req/s  p50 {m['p50_ms']:.2f} ms  "
            f"p99 {m['p99_ms']:.2f} ms  errors {m['errors']}"
        )
    ratio = med["history"]["rps"] / med["base"]["rps"]
    out(f"history/base: throughput {ratio:.3f}, p99 {med['history']['p99_ms'] / med['base']['p99_ms']:.3f}")
    return {"rps_ratio": ratio, **{f"{n}_{k}": v for n, m in med.items() for k, v in m.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--addresses", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=200, help="networks sampled for the lookup costs")
    parser.add_argument("--base", default="f9970ca", help="git revision to compare /check_ip with")
    parser.add_argument("--quick", action="store_true", help="one round, tiny sizes, no throughput run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.samples = 1, 20
    result: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        result["storage"] = storage(tmp, args.rounds, print)
        result["lookups"] = lookups(tmp, args.samples, print)
        if not args.quick:
            result["throughput"] = throughput(
                tmp, args.base, args.rounds, args.duration, args.addresses, print
            )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
