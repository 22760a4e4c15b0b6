"""Latency of /check_ip while the served version changes every few seconds, against no changes.

Every configuration is loaded by ``wrk -t1 -c64`` over ``bench.http_throughput``'s
seeded list of distinct addresses (``cycle.lua``), with ``--timeout 30s`` so a
stalled request counts in the latencies instead of as a wrk timeout. Every
server is started at the beginning (side by side) and runs to the end; each of
``--rounds`` rounds measures every group in turn, ``steady`` and ``changing``
alternated (A B, then B A, ...). The report gives medians per configuration
and the ratios changing/steady (target: p99 and max <= 1.3).

1. embedded (no Redis): two API processes fed by an HTTP feed server started
   here (``http.server``, threads, a free port): ipsum plus the shared
   Spamhaus DROP, EDROP, DROPv6 and FireHOL level 1 files from
   ``../shared/data/`` (the newest of each), no ETag or Last-Modified.
   Both refresh ipsum every ``--interval`` seconds
   (``BLOCKLIST_FEED_INTERVALS=ipsum=3s``), the other feeds daily. The
   ``steady`` process is always served the same ipsum bytes, so each refetch
   downloads the file and publishes nothing. The ``changing`` process is
   served, while it is measured, a different ipsum body on every fetch (a
   different seeded ``--drop-share`` of its lines dropped), so each sync
   downloads, parses, compiles and swaps in a new version; while the other
   process is measured its body stays the last one served (the builds of
   one process never run alongside the other's measurement: the machine
   may have two cores).
2. distributed, one group per ``--sizes`` entry (``ipsum``: compiled from the
   real file; ``1m`` etc.: ``bench.scale``'s synthetic generator): a
   ``redis-server`` (free port, temp dir), one API replica with local
   lookups, and a publisher subprocess (``RedisPublisher``) that publishes
   the next of two versions of that size (ipsum with and without a seeded
   share of its lines; two generator seeds) every ``--interval`` seconds
   while ``changing`` is measured, and nothing while ``steady`` is. One
   replica measured with the publisher on and off, not two replicas: the
   comparison is then the same process on the same data, and nothing
   publishes during the steady runs either way. The publisher and
   ``redis-server`` run at the lowest CPU priority: they stand for an
   updater and a Redis on other machines, so on a two-core machine the
   changing runs measure what loading versions costs the replica, not four
   processes sharing two cores.

The served version is followed during every run (``X-Blocklist-Version`` of a
probe request every 50 ms): the steady runs must never see it change, the
changing runs must see it advance at least ``--min-changes`` times (1;
``--quick``: 0, since a 1 s run is shorter than an embedded build under
load), and every changing run must make a version (a new body fetched, a
publish) that is served after it: the next run waits until then, so a build
still running never overlaps another configuration's run. Exit code 1 if a
check fails or any answer is not 2xx.

    .venv/bin/python -m bench.updating --rounds 3 --duration 10 --json /tmp/updating.json
    .venv/bin/python -m bench.updating --quick   # smoke: 20k addresses, 1 s runs, a change per 0.4 s, 10k

Needs ``wrk``, ``redis-server`` and the feed files in ``../shared/data/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import random
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
from redis.asyncio import Redis as AsyncRedis

from bench.apiprocess import api_process
from bench.http_throughput import _latency_ms, write_addresses
from bench.scale import SIZES
from bench.scale import build as build_synthetic
from bench.versions import IPSUM, ROOT, build_version
from blocklist.feedparsers import FeedFormat
from blocklist.snapshot import Version
from blocklistupdater.redispublish import RedisPublisher
from tests.redisserver import redis_server

DATA = IPSUM.parents[1]
#: Feeds both embedded processes share, served unchanged: name -> (format, newest file of the glob).
SHARED_FEEDS = {
    "spamhaus_drop": (FeedFormat.SPAMHAUS, "spamhaus/drop/drop-*.txt"),
    "spamhaus_edrop": (FeedFormat.SPAMHAUS, "spamhaus/edrop/edrop-*.txt"),
    "spamhaus_dropv6": (FeedFormat.SPAMHAUS, "spamhaus/dropv6/dropv6-*.txt"),
    "firehol_level1": (FeedFormat.NETSET, "firehol/firehol_level1-*.netset"),
}
#: Asked for the served version's number during the runs (TEST-NET-1: never listed).
PROBE = "/check_ip/192.0.2.1"
WATCH_EVERY = 0.05
SETTLE_TIMEOUT = 60.0
KINDS = ("steady", "changing")


# -- inputs -------------------------------------------------------------------------


class IpsumVariants:
    """The ipsum file, and seeded variants of it with ``share`` of its entry lines dropped."""

    def __init__(self, body: bytes, seed: int, share: float) -> None:
        self.body = body
        lines = body.splitlines()
        self.header = [line for line in lines if not line[:1].isdigit()]
        self.entries = [line for line in lines if line[:1].isdigit()]
        self.seed = seed
        self.share = share

    def variant(self, k: int) -> bytes:
        """Variant ``k``: 0 is the file itself, every other ``k`` drops its own seeded lines."""
        if k == 0:
            return self.body
        rng = random.Random(f"{self.seed}:{k}")
        dropped = set(rng.sample(range(len(self.entries)), round(len(self.entries) * self.share)))
        kept = [line for i, line in enumerate(self.entries) if i not in dropped]
        return b"\n".join(self.header + kept) + b"\n"


def newest(pattern: str) -> Path:
    found = sorted(DATA.glob(pattern))
    if not found:
        raise SystemExit(f"no {pattern} in {DATA}")
    return found[-1]


# -- the feed server (embedded mode) --------------------------------------------------


@dataclass
class FeedServer:
    """What the HTTP feed server serves; ``changing`` switches the changing process's ipsum."""

    ipsum: IpsumVariants
    files: dict[str, bytes]
    base: str = ""
    changing: bool = False
    variants: int = 0  # changing bodies made so far
    fetches: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    current: bytes = b""

    def __post_init__(self) -> None:
        self.current = self.ipsum.body

    def body(self, path: str) -> bytes | None:
        with self.lock:
            self.fetches[path] += 1
            if path == "/steady/ipsum.txt":
                return self.ipsum.body
            if path == "/changing/ipsum.txt":
                if self.changing:
                    self.variants += 1
                    self.current = self.ipsum.variant(self.variants)
                return self.current
        return self.files.get(path.removeprefix("/"))

    def set_changing(self, on: bool) -> int:
        """Start or stop changing; the number of changing bodies made so far."""
        with self.lock:
            self.changing = on
            return self.variants

    def feeds_setting(self, who: str) -> str:
        """``BLOCKLIST_FEEDS`` of the ``who`` process."""
        items = [f"ipsum=ipsum:{self.base}/{who}/ipsum.txt"]
        items += [f"{name}={fmt}:{self.base}/{name}.txt" for name, (fmt, _) in SHARED_FEEDS.items()]
        return ",".join(items)


@contextmanager
def feed_server(feeds: FeedServer) -> Iterator[FeedServer]:
    """Serve ``feeds`` on a free port from a thread, plain 200 answers without validators."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = feeds.body(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    feeds.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, name="feed-server", daemon=True)
    thread.start()
    try:
        yield feeds
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- the publisher subprocess (distributed mode) -----------------------------------------


def size_versions(size: str, seed: int, share: float) -> list[Version]:
    """The two versions of ``size`` the publisher alternates."""
    if size == "ipsum":
        ipsum = IpsumVariants(IPSUM.read_bytes(), seed, share)
        return [build_version("ipsum", str(IPSUM), ipsum.variant(k), FeedFormat.IPSUM) for k in (0, 1)]
    return [build_synthetic(size, SIZES[size], seed + k)[0] for k in (0, 1)]


def publisher_main(url: str, size: str, interval: float, seed: int, share: float) -> None:
    """Publish the first version, then follow commands on stdin, one a line.

    ``start``: publish the other version of the pair every ``interval`` s (the
    first half an interval in); ``stop``: stop once a publish in progress is
    done and answer with what was published since ``start``. Answers are JSON
    lines on stdout. Ends at EOF. Runs at the lowest CPU priority: it stands
    for an updater on another machine, so what the changing runs measure is
    the replica loading versions, not a co-located publisher's compile.
    """
    with contextlib.suppress(OSError):
        os.nice(19)
    begin = time.monotonic()
    versions = size_versions(size, seed, share)
    built_s = time.monotonic() - begin
    commands: queue.Queue[str] = queue.Queue()

    def read_commands() -> None:
        for line in sys.stdin:
            commands.put(line.strip())
        commands.put("quit")

    threading.Thread(target=read_commands, daemon=True).start()

    def say(**fields: Any) -> None:
        print(json.dumps(fields), flush=True)

    with asyncio.Runner() as runner:
        client = AsyncRedis.from_url(url)
        # TTLs well above a publish on a loaded machine, as bench.scale sets them.
        publisher = RedisPublisher(client, temp_ttl=3600, lock_timeout=3600)
        try:
            number = runner.run(publisher.publish(versions[0])).number
            say(event="ready", number=number, ranges=versions[0].index.ranges, build_s=built_s)
            publishing, k, next_at = False, 0, 0.0
            seconds: list[float] = []
            while True:
                timeout = max(0.0, next_at - time.monotonic()) if publishing else None
                try:
                    command = commands.get(timeout=timeout)
                except queue.Empty:
                    command = "tick"
                if command == "start":
                    publishing, seconds = True, []
                    next_at = time.monotonic() + interval / 2
                elif command == "stop":
                    publishing = False
                    say(event="stopped", published=len(seconds), number=number, publish_s=seconds)
                elif command == "quit":
                    break
                elif command == "tick":
                    k += 1
                    started = time.monotonic()
                    number = runner.run(publisher.publish(versions[k % 2])).number
                    seconds.append(time.monotonic() - started)
                    next_at = max(next_at + interval, time.monotonic())
        finally:
            runner.run(client.aclose())


class Publisher:
    """The benchmark's end of a publisher subprocess."""

    def __init__(self, proc: subprocess.Popen[str], log: Path) -> None:
        self.proc = proc
        self.log = log
        self.ready = self.answer("ready")

    def answer(self, event: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the publisher exited; see {self.log}")
        reply: dict[str, Any] = json.loads(line)
        assert reply["event"] == event, reply
        return reply

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def start(self) -> None:
        self.send("start")

    def stop(self) -> dict[str, Any]:
        self.send("stop")
        return self.answer("stopped")


@contextmanager
def publisher_process(
    tmp: Path, url: str, size: str, interval: float, seed: int, share: float
) -> Iterator[Publisher]:
    """Start the publisher of ``size`` against ``url``; yield it once its first version is live."""
    log_path = tmp / f"publisher-{size}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.updating", "--publish-to", url, "--publish-size", size,
             "--interval", str(interval), "--seed", str(seed), "--drop-share", str(share)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
        )  # fmt: skip
        try:
            yield Publisher(proc, log_path)
        finally:
            if proc.stdin:
                proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()


# -- measuring ------------------------------------------------------------------------


@dataclass
class Run:
    """One wrk run and what the server served meanwhile."""

    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    requests: int
    changes: int = 0
    #: Versions the change source made during the run (bodies served, publishes); None: steady.
    made: int | None = None
    #: Whether the last version made was served after the run (waited for up to a minute).
    settled: bool = True
    versions: list[int] = field(default_factory=list)
    #: Seconds from the run's start to each change of the served version.
    change_at_s: list[float] = field(default_factory=list)


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    assert match, f"not a wrk duration: {text!r}"
    return float(match[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[match[2]]


def run_wrk(base: str, addr_file: Path, connections: int, duration: float) -> Run:
    """One ``wrk -t1`` run of ``bench/cycle.lua`` over ``addr_file``."""
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "30s",
         "--latency", "-s", str(ROOT / "bench" / "cycle.lua"), base],
        env={**os.environ, "ADDR_FILE": str(addr_file)}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    text = result.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    latency = re.search(r"^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)", text, re.M)
    assert rps, f"no Requests/sec in wrk output:\n{text}"
    assert total, f"no request count in wrk output:\n{text}"
    assert latency, f"no Latency line in wrk output:\n{text}"
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return Run(
        rps=float(rps[1]),
        p50_ms=_latency_ms(text, "50%"),
        p99_ms=_latency_ms(text, "99%"),
        max_ms=_ms(latency[3]),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=sum(int(g) for g in sockets.groups()) if sockets else 0,
        requests=int(total[1]),
    )


def served_version(client: httpx.Client) -> int:
    return int(client.get(PROBE).headers["x-blocklist-version"])


class VersionWatch:
    """Follows the served version number of one server from a thread."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.seen: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="version-watch", daemon=True)

    def _poll(self) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as client:
            while True:
                number = served_version(client)
                if not self.seen or self.seen[-1][1] != number:
                    self.seen.append((time.monotonic(), number))
                if self._stop.wait(WATCH_EVERY):
                    return

    def __enter__(self) -> VersionWatch:
        self._thread.start()
        while not self.seen and self._thread.is_alive():
            time.sleep(0.005)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def wait_served(base: str, number: int, timeout: float = SETTLE_TIMEOUT) -> bool:
    """Until ``base`` serves ``number`` (or a later one); False on timeout."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base, timeout=30) as client:
        while served_version(client) < number:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
    return True


@dataclass
class Config:
    """One measured configuration: where it is served and what runs around its measurement."""

    group: str
    kind: str
    base: str
    #: Called before the run; then ``end`` after it, returning the number of versions made
    #: during the run and the version number to wait for, if any.
    begin: Callable[[], None] = lambda: None
    end: Callable[[], tuple[int, int] | None] = lambda: None
    notes: dict[str, Any] = field(default_factory=dict)


def measure(config: Config, addr_file: Path, args: argparse.Namespace, warnings: list[str]) -> Run:
    with VersionWatch(config.base) as watch:
        started = time.monotonic()
        config.begin()
        try:
            run = run_wrk(config.base, addr_file, args.connections, args.duration)
        finally:
            made = config.end()
    run.versions = [number for _, number in watch.seen]
    run.changes = watch.seen[-1][1] - watch.seen[0][1]
    run.change_at_s = [round(t - started, 2) for t, _ in watch.seen[1:]]
    if made is not None:
        run.made, expected = made
        run.settled = wait_served(config.base, expected)
        if not run.settled:
            warnings.append(
                f"{config.group} {config.kind}: version {expected} not served after {SETTLE_TIMEOUT:g} s"
            )
    return run


# -- set-up ---------------------------------------------------------------------------


def enter_all(stack: ExitStack, managers: list[AbstractContextManager[Any]]) -> list[Any]:
    """Enter every manager at once, each in its own thread (processes start side by side); each
    entered one is exited with ``stack``. Raises the first failure once all have returned."""
    with ThreadPoolExecutor(max_workers=max(1, len(managers))) as pool:
        futures = [pool.submit(manager.__enter__) for manager in managers]
    entered, failure = [], None
    for manager, future in zip(managers, futures, strict=True):
        error = future.exception()
        if error is None:
            stack.push(manager.__exit__)
            entered.append(future.result())
        failure = failure or error
    if failure is not None:
        raise failure
    return entered


def start_all(
    stack: ExitStack, tmp: Path, args: argparse.Namespace, modes: list[str], sizes: list[str]
) -> list[list[Config]]:
    """Every server of every group, started side by side; each group's (steady, changing) configs."""
    managers: list[AbstractContextManager[Any]] = []
    feeds = None
    if "embedded" in modes:
        files = {f"{name}.txt": newest(pattern).read_bytes() for name, (_, pattern) in SHARED_FEEDS.items()}
        ipsum = IpsumVariants(IPSUM.read_bytes(), args.seed, args.drop_share)
        feeds = stack.enter_context(feed_server(FeedServer(ipsum, files)))
        for kind in KINDS:
            settings = {
                "BLOCKLIST_FEEDS": feeds.feeds_setting(kind),
                "BLOCKLIST_FEED_INTERVALS": f"ipsum={args.interval:g}s",
                "BLOCKLIST_BOOTSTRAP": "false",
                "BLOCKLIST_BUILD_PROCESS": "true" if args.build == "process" else "false",
            }
            managers.append(api_process(tmp, f"embedded-{kind}", settings))
    redis = {size: stack.enter_context(redis_server(tmp / f"redis-{size}")) for size in sizes}
    for server in redis.values():
        # Stands for a Redis on another machine, as the publisher does for the updater:
        # lowest priority, so the changing runs measure the replica, not two cores shared four ways.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, server.proc.pid, 19)
    for size in sizes:
        url = redis[size].url
        managers.append(publisher_process(tmp, url, size, args.interval, args.seed, args.drop_share))
        settings = {"REDIS_URL": url, "BLOCKLIST_LOOKUP": "local", "BLOCKLIST_BOOTSTRAP": "false"}
        managers.append(api_process(tmp, f"replica-{size}", settings))
    started = iter(enter_all(stack, managers))
    pairs = []
    if feeds is not None:
        bases = {kind: next(started)[0] for kind in KINDS}
        pairs.append(embedded_pair(feeds, bases, args))
    for size in sizes:
        publisher, (base, _) = next(started), next(started)
        pairs.append(distributed_pair(size, redis[size].port, publisher, base, args))
    return pairs


def embedded_pair(feeds: FeedServer, bases: dict[str, str], args: argparse.Namespace) -> list[Config]:
    status = httpx.get(f"{bases['steady']}/status", timeout=10).json()
    ranges = status.get("version", {}).get("ranges", {})
    print(
        f"embedded: two API processes, feeds from {feeds.base}: ipsum ({IPSUM.name}) + "
        + ", ".join(newest(p).name for _, p in SHARED_FEEDS.values())
        + f"; ipsum refreshed every {args.interval:g} s, the changing body drops a different seeded "
        f"{args.drop_share:.0%} of its lines per fetch; built in a {args.build}; served: {ranges}"
    )
    group = "embedded, ipsum + spamhaus + firehol"
    marks: dict[str, int] = {}

    def begin() -> None:
        with httpx.Client(base_url=bases["changing"], timeout=30) as client:
            marks["number"] = served_version(client)
        marks["variants"] = feeds.set_changing(True)

    def end() -> tuple[int, int]:
        made = feeds.set_changing(False) - marks["variants"]
        return made, marks["number"] + made

    return [
        Config(group, "steady", bases["steady"], notes={"feeds": feeds}),
        Config(group, "changing", bases["changing"], begin, end, notes={"feeds": feeds}),
    ]


def distributed_pair(
    size: str, port: int, publisher: Publisher, base: str, args: argparse.Namespace
) -> list[Config]:
    if not wait_served(base, publisher.ready["number"]):
        raise SystemExit(f"replica of {size} never served the first version")
    ranges = publisher.ready["ranges"]
    label = "ipsum" if size == "ipsum" else f"{size} synthetic"
    print(
        f"distributed {label}: redis-server :{port}, one replica (local lookups), a publisher "
        f"subprocess alternating two versions of {ranges} ranges "
        f"(built in {publisher.ready['build_s']:.1f} s), one every {args.interval:g} s during the "
        "changing runs"
    )
    stops: list[dict[str, Any]] = []

    def end() -> tuple[int, int]:
        reply = publisher.stop()
        stops.append(reply)
        return int(reply["published"]), int(reply["number"])

    group = f"distributed, {label} ({ranges} ranges)"
    return [
        Config(group, "steady", base),
        Config(group, "changing", base, publisher.start, end, notes={"publishes": stops}),
    ]


# -- report -----------------------------------------------------------------------------


def median_run(runs: list[Run]) -> dict[str, Any]:
    return {
        "rps": statistics.median(r.rps for r in runs),
        "p50_ms": statistics.median(r.p50_ms for r in runs),
        "p99_ms": statistics.median(r.p99_ms for r in runs),
        "max_ms": statistics.median(r.max_ms for r in runs),
        "worst_max_ms": max(r.max_ms for r in runs),
        "non_2xx": sum(r.non_2xx for r in runs),
        "socket_errors": sum(r.socket_errors for r in runs),
        "requests": sum(r.requests for r in runs),
        "changes": [r.changes for r in runs],
    }


def report(
    groups: dict[str, dict[str, list[Run]]], target: float, out: Callable[[str], None]
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    out("")
    out(
        "| group | config | req/s | p50 ms | p99 ms | max ms | worst max ms | non-2xx | socket errors "
        "| versions changed per run |"
    )
    out("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for group, runs in groups.items():
        med = {kind: median_run(runs[kind]) for kind in KINDS}
        for kind, m in med.items():
            out(
                f"| {group} | {kind} | {m['rps']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} "
                f"| {m['max_ms']:.1f} | {m['worst_max_ms']:.1f} | {m['non_2xx']} | {m['socket_errors']} "
                f"| {', '.join(map(str, m['changes']))} |"
            )
        steady, changing = med["steady"], med["changing"]
        ratios = {k: changing[k] / steady[k] for k in ("rps", "p50_ms", "p99_ms", "max_ms")}
        out(
            f"| {group} | **changing / steady** | **{ratios['rps']:.2f}x** | **{ratios['p50_ms']:.2f}x** "
            f"| **{ratios['p99_ms']:.2f}x** | **{ratios['max_ms']:.2f}x** | | | | |"
        )
        result[group] = {
            "runs": {kind: [asdict(r) for r in runs[kind]] for kind in KINDS},
            "medians": med,
            "ratios": ratios,
            "targets_met": {k: ratios[k] <= target for k in ("p99_ms", "max_ms")},
        }
    out("")
    for group, data in result.items():
        met = data["targets_met"]
        out(
            f"target changing/steady <= {target:g}, {group}: p99 {data['ratios']['p99_ms']:.2f}x "
            f"{'met' if met['p99_ms'] else 'MISSED'}, max {data['ratios']['max_ms']:.2f}x "
            f"{'met' if met['max_ms'] else 'MISSED'}"
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between version changes")
    parser.add_argument("--addresses", type=int, default=1_000_000, help="distinct /check_ip addresses")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--modes", default="embedded,distributed", help="comma-separated")
    parser.add_argument(
        "--sizes", default="ipsum,1m", help="distributed version sizes: ipsum and/or " + ",".join(SIZES)
    )
    parser.add_argument("--drop-share", type=float, default=0.01, help="ipsum lines dropped per variant")
    parser.add_argument("--min-changes", type=int, default=1, help="fewest changes a changing run must see")
    parser.add_argument("--target", type=float, default=1.3, help="changing/steady bound of p99 and max")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--build",
        choices=("process", "thread"),
        default="process",
        help="embedded: where versions are built (BLOCKLIST_BUILD_PROCESS); thread shows the stall",
    )
    parser.add_argument("--quick", action="store_true", help="20k addresses, 1 s runs, 1 round, ipsum + 10k")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--publish-to", help=argparse.SUPPRESS)  # the publisher subprocess
    parser.add_argument("--publish-size", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish_to:
        publisher_main(args.publish_to, args.publish_size, args.interval, args.seed, args.drop_share)
        return
    if args.quick:
        args.addresses, args.duration, args.rounds, args.sizes = 20_000, 1.0, 1, "ipsum,10k"
        args.interval, args.min_changes = 0.4, 0
    modes = [m for m in args.modes.split(",") if m]
    sizes = [s for s in args.sizes.lower().split(",") if s] if "distributed" in modes else []
    if unknown := set(modes) - {"embedded", "distributed"}:
        parser.error(f"unknown modes: {sorted(unknown)}")
    if unknown := set(sizes) - {"ipsum", *SIZES}:
        parser.error(f"unknown sizes: {sorted(unknown)}")
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install wrk")
    # Nothing inherited may point a process at another Redis (the machine's own) or mode.
    for name in [n for n in os.environ if n.startswith("BLOCKLIST_") or n == "REDIS_URL"]:
        del os.environ[name]
    started = time.monotonic()
    out = print
    warnings: list[str] = []
    with TemporaryDirectory(prefix="bench-updating-") as tmpdir, ExitStack() as stack:
        tmp = Path(tmpdir)
        addr_file = tmp / "addresses.txt"
        listed = write_addresses(addr_file, args.addresses)
        out(
            f"{args.addresses} distinct addresses ({listed} in ipsum); wrk -t1 -c{args.connections} "
            f"-d{max(1, round(args.duration))}s, {args.rounds} rounds, steady and changing alternated; "
            f"a version change every {args.interval:g} s"
        )
        pairs = start_all(stack, tmp, args, modes, sizes)
        for pair in pairs:  # warm-up, nothing changing
            for config in pair:
                run_wrk(config.base, addr_file, args.connections, min(2.0, args.duration))
        groups: dict[str, dict[str, list[Run]]] = {pair[0].group: {k: [] for k in KINDS} for pair in pairs}
        for i in range(args.rounds):
            for pair in pairs:
                for config in pair[:: 1 if i % 2 == 0 else -1]:
                    groups[config.group][config.kind].append(measure(config, addr_file, args, warnings))
        notes: dict[str, Any] = {}
        for pair in pairs:
            moving = pair[1]
            if "feeds" in moving.notes:
                feeds: FeedServer = moving.notes["feeds"]
                notes[moving.group] = {"fetches": dict(feeds.fetches), "changing_bodies": feeds.variants}
            if "publishes" in moving.notes:
                notes[moving.group] = {"publishes": moving.notes["publishes"]}
    result = report(groups, args.target, out)
    failures: list[str] = []
    out("")
    for group, runs in groups.items():
        steady = [r.changes for r in runs["steady"]]
        changing = [r.changes for r in runs["changing"]]
        extra = ""
        fetched = notes.get(group, {}).get("fetches")
        if fetched:
            extra = (
                f" (ipsum fetched {fetched.get('/steady/ipsum.txt', 0)} times by steady, "
                f"{fetched.get('/changing/ipsum.txt', 0)} by changing; {notes[group]['changing_bodies']} "
                "changing bodies served)"
            )
        publishes = notes.get(group, {}).get("publishes")
        if publishes:
            per_run = [p["published"] for p in publishes]
            seconds = [s for p in publishes for s in p["publish_s"]]
            extra = f" (published per changing run: {per_run}"
            extra += f", publish() p50 {statistics.median(seconds):.2f} s)" if seconds else ")"
        made = [r.made for r in runs["changing"]]
        out(
            f"versions served, {group}: changing advanced {changing} per run (versions made {made}), "
            f"steady {steady}{extra}"
        )
        if any(steady):
            failures.append(f"{group}: the steady server's version changed: {steady}")
        if not all(made) or not all(r.settled for r in runs["changing"]):
            failures.append(f"{group}: a changing run made no version or its last was never served")
        if min(changing) < args.min_changes:
            failures.append(
                f"{group}: a changing run saw fewer than {args.min_changes} changes served: {changing} "
                f"(versions made per run: {made}; a build or publish slower than --interval under load)"
            )
        if any(r.non_2xx for kind in KINDS for r in runs[kind]):
            failures.append(f"{group}: non-2xx answers")
    for warning in warnings:
        out(f"warning: {warning}")
    for failure in failures:
        out(f"FAILED: {failure}")
    out(f"total {time.monotonic() - started:.0f} s")
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k not in {"json", "publish_to", "publish_size"}}
        payload: dict[str, Any] = {"settings": settings, "groups": result, "notes": notes}
        payload |= {"warnings": warnings, "failures": failures}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
