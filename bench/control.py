"""Operator control: /check_ip with overrides and reputation loaded against none, and reports per second.

1. ``/check_ip`` under ``wrk -t1 -c64`` of two embedded API processes serving
   ipsum side by side, each with its own state directory: ``empty`` (no
   control data) and ``loaded`` (``--overrides`` overrides, mixed block and
   allow, random /24../32 networks, a quarter of them around ipsum
   addresses; and ``--reputation`` IPv4 addresses blocked by reputation,
   each with two ``scan`` reports). The control data is written into the
   loaded state directory through ``SqliteControl`` (the store's own
   ``add_override`` and ``report``) before the server starts, which loads
   it as its start-up snapshot. Both walk the same seeded list of distinct
   addresses (``bench.http_throughput``'s: ipsum, random public IPv4, 10 %
   IPv6), of which 10 % fall inside an override and 10 % are
   reputation-blocked, so the loaded server's answers go through every
   branch of the decision. Before measuring, a sample of the list is
   checked against both servers (expected answers from a local
   ``ControlView`` of the same data). Alternated ``--rounds`` times; medians
   and the ratio loaded/empty of req/s, p50, p99 and server CPU per request.
2. ``POST /v1/reports`` sustained by one API process, under wrk with a Lua
   script (written to the temp dir) over ``--report-connections``
   connections: single-report bodies and lists of ``--batch`` reports, each
   address reported twice (the second report blocks it, so the change log
   and the local block are exercised), fresh addresses in every run. An
   embedded process (SQLite, ``synchronous=FULL``: one fsync per request)
   and a distributed one (``REDIS_URL`` to a ``redis-server`` on a free port
   in the temp dir, no persistence configured, no replica), alternated;
   reports/s, and the ratios batch/single and distributed/embedded.

    .venv/bin/python -m bench.control --rounds 3 --duration 10
    .venv/bin/python -m bench.control --quick  # 1,000 overrides, 5,000 reputation entries, 1 round, 1 s

Needs ``wrk``, ``redis-server`` (unless ``--no-redis``) and the ipsum file in ``../shared/data/``.
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
from typing import Any

import httpx
from redis.asyncio import Redis as AsyncRedis

from bench.apiprocess import api_process
from bench.http_throughput import cpu_seconds, write_addresses
from bench.versions import IPSUM, ROOT, ipsum_addresses, ipsum_version
from blocklist.addresses import parse_address
from blocklist.control import OverrideDraft, ReportItem
from blocklist.controlsqlite import SqliteControl
from blocklist.decision import ControlView
from blocklist.overrides import Action, normalize_network
from blocklist.reputation import Note, key_text, reputation_key
from blocklist.settings import Settings
from blocklistupdater.redispublish import RedisPublisher
from ipchecking.answers import check_ip as answer_check_ip
from ipchecking.auth import key_digest
from ipchecking.holder import VersionHolder
from tests.redisserver import redis_server

#: The key every request presents; its digest is configured (``BLOCKLIST_API_KEYS``: admin).
API_KEY = "blk_bench-control-not-a-secret"
#: Share of the wrk address list inside an override, and the same share reputation-blocked.
HIT_SHARE = 0.1
#: Report runs take their addresses from here on, ``RUN_SPAN`` fresh addresses per run.
REPORT_BASE = 16 << 24
RUN_SPAN = 1 << 22
REPORTS_LUA = """-- POST /v1/reports: $BATCH reports per request (1: one object), each address twice.
local batch = tonumber(os.getenv("BATCH"))
local start = tonumber(os.getenv("START"))
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. os.getenv("KEY")}
local n = 0
local function item()
  local v = start + math.floor(n / 2)
  n = n + 1
  return string.format('{"ip":"%d.%d.%d.%d","violation":"scan"}', math.floor(v / 16777216) % 256,
    math.floor(v / 65536) % 256, math.floor(v / 256) % 256, v % 256)
end
request = function()
  local body
  if batch == 1 then
    body = item()
  else
    local parts = {}
    for j = 1, batch do parts[j] = item() end
    body = "[" .. table.concat(parts, ",") .. "]"
  end
  return wrk.format("POST", "/v1/reports", headers, body)
end
"""


@dataclass
class Run:
    """One wrk run."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    cpu_us_per_request: float


def median_run(runs: list[Run]) -> Run:
    """Per-field medians of ``runs``; errors and requests summed."""
    return Run(
        rps=statistics.median(r.rps for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        errors=sum(r.errors for r in runs),
        requests=sum(r.requests for r in runs),
        cpu_us_per_request=statistics.median(r.cpu_us_per_request for r in runs),
    )


# -- wrk ---------------------------------------------------------------------------


def run_wrk(
    base: str,
    script: Path,
    env: dict[str, str],
    connections: int,
    duration: float,
    proc: subprocess.Popen[bytes] | None = None,
) -> Run:
    """One ``wrk -t1`` run of ``script``; server CPU per request measured on ``proc``."""
    before = cpu_seconds(proc.pid) if proc else 0.0
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
         "-s", str(script), base],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    cpu = cpu_seconds(proc.pid) - before if proc else 0.0
    text = result.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    assert rps, f"no Requests/sec in wrk output:\n{text}"
    assert total, f"no request count in wrk output:\n{text}"
    errors = 0
    for pattern in (
        r"Non-2xx or 3xx responses: (\d+)",
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
    ):
        found = re.search(pattern, text)
        if found:
            errors += sum(int(g) for g in found.groups())
    requests = int(total[1])
    return Run(
        float(rps[1]),
        _latency_ms(text, "50%"),
        _latency_ms(text, "99%"),
        errors,
        requests,
        cpu / max(requests, 1) * 1e6,
    )


def _latency_ms(text: str, label: str) -> float:
    match = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    assert match, f"no {label} latency in wrk output:\n{text}"
    value, unit = float(match[1]), match[2]
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


# -- servers -----------------------------------------------------------------------


@contextmanager
def api_server(tmp: Path, name: str, extra: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``python -m ipchecking`` on a free port with ``extra`` settings and the bench's admin key."""
    with api_process(tmp, name, {"BLOCKLIST_API_KEYS": key_digest(API_KEY), **extra}) as server:
        yield server


def embedded_env() -> dict[str, str]:
    return {"BLOCKLIST_FEEDS": f"ipsum=ipsum:{IPSUM}", "BLOCKLIST_BOOTSTRAP": "false"}


def wait_control(base: str, overrides: int, blocked: int, timeout: float = 120.0) -> dict[str, Any]:
    """Until ``/status`` shows the control snapshot loaded with these counts; its ``control`` object."""
    deadline = time.monotonic() + timeout
    while True:
        control: dict[str, Any] = httpx.get(f"{base}/status", timeout=5).json()["control"]
        counts = (control["overrides"], control["reputation_blocked"])
        if control["loaded"] and counts == (overrides, blocked):
            return control
        if time.monotonic() > deadline:
            raise SystemExit(f"control data not loaded as expected: {control}")
        time.sleep(0.2)


# -- control data --------------------------------------------------------------------


def random_global_v4(rng: random.Random) -> int:
    while True:
        value = rng.getrandbits(32)
        if ipaddress.IPv4Address(value).is_global:
            return value


def make_overrides(rng: random.Random, count: int, listed: list[str]) -> list[tuple[str, Action]]:
    """Distinct random /24../32 networks, block or allow; a quarter around ipsum addresses."""
    seen: set[str] = set()
    out: list[tuple[str, Action]] = []
    while len(out) < count:
        prefix = rng.randint(24, 32)
        base = parse_address(rng.choice(listed))[1] if rng.random() < 0.25 else random_global_v4(rng)
        first = base >> (32 - prefix) << (32 - prefix)
        text, _ = normalize_network(f"{ipaddress.IPv4Address(first)}/{prefix}")
        if text not in seen:
            seen.add(text)
            out.append((text, rng.choice(("block", "allow"))))
    return out


def make_reputation(rng: random.Random, count: int, listed: set[str]) -> list[str]:
    """Distinct random public IPv4 addresses not in ipsum."""
    chosen: set[str] = set()
    while len(chosen) < count:
        text = str(ipaddress.IPv4Address(random_global_v4(rng)))
        if text not in listed:
            chosen.add(text)
    return sorted(chosen)


def scan_items(settings: Settings, addresses: list[str], now_ms: int) -> list[ReportItem]:
    """Two ``scan`` reports per address, built as ``ControlService.report_item`` builds them."""
    kind = settings.violation("scan")
    assert kind is not None, "the scan violation is not configured"
    prefix = settings.reputation_policy.v6_prefix
    items = []
    for address in addresses:
        key = key_text(*reputation_key(*parse_address(address), prefix), prefix)
        note = Note(now_ms, kind.name, "bench", "bench")
        item = ReportItem(key, kind.name, kind.penalty, kind.decrease_limit, 0, note)
        items += [item, item]
    return items


def load_control(
    state: Path, overrides: list[tuple[str, Action]], reputation: list[str]
) -> tuple[ControlView, dict[str, float]]:
    """Write the control data into ``state``'s store; a local view of it and the seconds taken."""
    settings = Settings(state_dir=state, bootstrap=False)

    async def load() -> tuple[ControlView, dict[str, float]]:
        store = SqliteControl(state, settings.reputation_policy, settings.personal_retention_ms)
        try:
            t0 = time.perf_counter()
            for network, action in overrides:
                draft = OverrideDraft(network, action, "bench", None)
                await store.add_override(draft, "bench", time.time())
            t1 = time.perf_counter()
            now_ms = int(time.time() * 1000)
            items = scan_items(settings, reputation, now_ms)
            for start in range(0, len(items), 10_000):
                await store.report(items[start : start + 10_000], now_ms)
            t2 = time.perf_counter()
            snapshot = await store.snapshot(int(time.time() * 1000))
        finally:
            await store.aclose()
        view = ControlView(settings.reputation_ipv6_prefix)
        by_id = {o.id: o for o in snapshot.overrides}
        view.install(by_id, view.compile(by_id))
        view.replace_blocked(view.build_blocked(snapshot.blocked))
        assert len(snapshot.overrides) == len(overrides)
        assert len(snapshot.blocked) == len(reputation)
        return view, {"overrides_s": t1 - t0, "reports_s": t2 - t1}

    return asyncio.run(load())


def write_check_addresses(
    path: Path, count: int, overrides: list[tuple[str, Action]], reputation: list[str], seed: int = 11
) -> list[str]:
    """``bench.http_throughput``'s list, with ``HIT_SHARE`` in overrides and as much reputation-blocked."""
    rng = random.Random(seed)
    hits = round(count * HIT_SHARE)
    base_file = path.with_suffix(".base")
    write_addresses(base_file, count - 2 * hits)
    out = base_file.read_text().split()
    for _ in range(hits):
        network, _ = rng.choice(overrides)
        _, (_, first, last) = normalize_network(network)
        out.append(str(ipaddress.IPv4Address(rng.randint(first, last))))
    out += [rng.choice(reputation) for _ in range(hits)]
    rng.shuffle(out)
    path.write_text("\n".join(out) + "\n")
    return out


def check_answers(
    servers: dict[str, str], view: ControlView, sample: list[str], listed: set[str]
) -> dict[str, dict[str, int]]:
    """Each server's answers to ``sample`` against the expected ones; counts by decider, and mismatches."""
    now = time.time()
    expected: dict[str, dict[str, bool]] = {"empty": {}, "loaded": {}}
    deciders: dict[str, int] = {}
    for address in sample:
        feeds = address in listed
        verdict = view.verdict(*parse_address(address), now)
        deciders[verdict or "feeds"] = deciders.get(verdict or "feeds", 0) + 1
        expected["empty"][address] = feeds
        expected["loaded"][address] = verdict != "allow" if verdict else feeds
    result: dict[str, dict[str, int]] = {"deciders": deciders}
    for name, base in servers.items():
        wrong = 0
        with httpx.Client(base_url=base, timeout=5) as client:
            for address in sample:
                answer = client.get(f"/check_ip/{address}")
                if answer.status_code != 200 or answer.json()["blocked"] != expected[name][address]:
                    wrong += 1
        result[name] = {"checked": len(sample), "wrong": wrong}
    return result


# -- part 1: /check_ip ------------------------------------------------------------


def in_process(view: ControlView, addresses: list[str], rounds: int) -> dict[str, Any]:
    """The answer function of ``/check_ip`` (``ipchecking.answers.check_ip``) with no control data
    and with ``view``, on the same ipsum version and addresses, alternated: ns per lookup.

    No HTTP server and no other process is involved, so on a shared machine this is the
    steadier measure of what the control view adds to a lookup.
    """
    version = ipsum_version()
    holders = {"empty": VersionHolder(), "loaded": VersionHolder(control=view)}
    for holder in holders.values():
        holder.swap(version)
    sample = addresses[:200_000]
    per_round: dict[str, list[float]] = {name: [] for name in holders}
    for i in range(max(5, rounds * 3)):
        for name in list(holders)[:: 1 if i % 2 == 0 else -1]:
            holder = holders[name]
            start = time.perf_counter()
            for text in sample:
                answer_check_ip(holder, text)
            per_round[name].append((time.perf_counter() - start) / len(sample) * 1e9)
    ns = {name: statistics.median(values) for name, values in per_round.items()}
    return {"ns_per_lookup": ns, "ratio": ns["loaded"] / ns["empty"], "lookups_per_round": len(sample)}


def check_ip(args: argparse.Namespace, tmp: Path, out: Callable[[str], None]) -> dict[str, Any]:
    rng = random.Random(5)
    listed_list = ipsum_addresses()
    listed = set(listed_list)
    overrides = make_overrides(rng, args.overrides, listed_list)
    reputation = make_reputation(rng, args.reputation, listed)
    view, load_times = load_control(tmp / "state-loaded", overrides, reputation)
    addr_file = tmp / "addresses.txt"
    addresses = write_check_addresses(addr_file, args.addresses, overrides, reputation)
    blocks = sum(1 for _, a in overrides if a == "block")
    out(
        f"/check_ip: {len(addresses)} addresses ({HIT_SHARE:.0%} in overrides, {HIT_SHARE:.0%} "
        f"reputation-blocked); loaded = {len(overrides)} overrides ({blocks} block, "
        f"{len(overrides) - blocks} allow, /24../32) + {len(reputation)} reputation blocks, written in "
        f"{load_times['overrides_s']:.1f} s + {load_times['reports_s']:.1f} s; "
        f"wrk -t1 -c{args.connections} -d{args.duration:g}s, {args.rounds} rounds, alternated"
    )
    local = in_process(view, addresses, args.rounds)
    out(
        f"in process (the answer function alone, {local['lookups_per_round']} lookups a round, alternated): "
        f"empty {local['ns_per_lookup']['empty']:.0f} ns, loaded {local['ns_per_lookup']['loaded']:.0f} ns "
        f"per lookup: **{local['ratio']:.3f}x**"
    )
    runs: dict[str, list[Run]] = {"empty": [], "loaded": []}
    script = ROOT / "bench" / "cycle.lua"
    env = {"ADDR_FILE": str(addr_file)}
    with ExitStack() as stack:
        servers = {name: stack.enter_context(api_server(tmp, name, embedded_env())) for name in runs}
        control = wait_control(servers["loaded"][0], len(overrides), len(reputation))
        wait_control(servers["empty"][0], 0, 0)
        sample = random.Random(13).sample(addresses, min(len(addresses), args.check_sample))
        checked = check_answers({n: s[0] for n, s in servers.items()}, view, sample, listed)
        out(f"answers checked: {json.dumps(checked)}")
        if any(checked[n]["wrong"] for n in runs):
            raise SystemExit("a server gave a wrong answer")
        for base, proc in servers.values():  # warm-up
            run_wrk(base, script, env, args.connections, 2, proc)
        for i in range(args.rounds):
            for name in list(runs)[:: 1 if i % 2 == 0 else -1]:
                base, proc = servers[name]
                runs[name].append(run_wrk(base, script, env, args.connections, args.duration, proc))
    med = {name: median_run(r) for name, r in runs.items()}
    empty, loaded = med["empty"], med["loaded"]
    ratios = {
        "rps": loaded.rps / empty.rps,
        "p50_ms": loaded.p50_ms / empty.p50_ms,
        "p99_ms": loaded.p99_ms / empty.p99_ms,
        "cpu_us_per_request": loaded.cpu_us_per_request / empty.cpu_us_per_request,
    }
    out("")
    out("| /check_ip, embedded, ipsum | req/s | p50 ms | p99 ms | cpu us/req | requests | errors |")
    out("|---|---:|---:|---:|---:|---:|---:|")
    for name, m in med.items():
        out(
            f"| {name} | {m.rps:.0f} | {m.p50_ms:.2f} | {m.p99_ms:.2f} | {m.cpu_us_per_request:.1f} "
            f"| {m.requests} | {m.errors} |"
        )
    out(
        f"| **loaded / empty** | **{ratios['rps']:.3f}x** | **{ratios['p50_ms']:.3f}x** "
        f"| **{ratios['p99_ms']:.3f}x** | **{ratios['cpu_us_per_request']:.3f}x** | | |"
    )
    out("")
    return {
        "overrides": len(overrides),
        "reputation": len(reputation),
        "addresses": len(addresses),
        "load_seconds": load_times,
        "control_status": control,
        "answers_checked": checked,
        "runs": {name: [asdict(r) for r in rs] for name, rs in runs.items()},
        "medians": {name: asdict(m) for name, m in med.items()},
        "ratios": ratios,
        "in_process": local,
    }


# -- part 2: reports ----------------------------------------------------------------


def publish_ipsum(url: str) -> None:
    async def publish() -> None:
        client = AsyncRedis.from_url(url)
        try:
            await RedisPublisher(client).publish(ipsum_version())
        finally:
            await client.aclose()

    asyncio.run(publish())


def check_reports(base: str, batch: int, start: int) -> None:
    """One single report and one batch (two reports per address) are all accepted and block."""
    auth = {"Authorization": f"Bearer {API_KEY}"}
    ips = [str(ipaddress.IPv4Address(start + i // 2)) for i in range(batch)]
    with httpx.Client(base_url=base, headers=auth, timeout=30) as client:
        single = client.post("/v1/reports", json={"ip": ips[0], "violation": "scan"})
        assert single.status_code == 200, single.text
        assert single.json()["score"] == 60, single.text
        many = client.post("/v1/reports", json=[{"ip": ip, "violation": "scan"} for ip in ips])
        assert many.status_code == 200, many.text
        results = many.json()["results"]
        assert len(results) == batch, many.text
        assert not any("error" in r for r in results), many.text
        assert all(r["blocked"] for r in results[1::2]), many.text


def reports(args: argparse.Namespace, tmp: Path, out: Callable[[str], None]) -> dict[str, Any]:
    script = tmp / "reports.lua"
    script.write_text(REPORTS_LUA)
    modes = ["embedded"] if args.no_redis else ["embedded", "redis"]
    bodies = {"single": 1, f"batch{args.batch}": args.batch}
    configs = [(mode, body) for mode in modes for body in bodies]
    out(
        f"reports: POST /v1/reports, wrk -t1 -c{args.report_connections} -d{args.duration:g}s, "
        f"single and lists of {args.batch}, each address reported twice (scan), fresh addresses per run; "
        f"one API process per mode ({', '.join(modes)}), {args.rounds} rounds, alternated"
    )
    runs: dict[tuple[str, str], list[Run]] = {c: [] for c in configs}
    counter = iter(range(1 << 20))

    def one(base: str, proc: subprocess.Popen[bytes], body: str, duration: float) -> Run:
        start = REPORT_BASE + next(counter) * RUN_SPAN
        env = {"BATCH": str(bodies[body]), "START": str(start), "KEY": API_KEY}
        return run_wrk(base, script, env, args.report_connections, duration, proc)

    with ExitStack() as stack:
        servers = {"embedded": stack.enter_context(api_server(tmp, "reports-embedded", embedded_env()))}
        if "redis" in modes:
            redis = stack.enter_context(redis_server(tmp / "redis"))
            publish_ipsum(redis.url)
            servers["redis"] = stack.enter_context(
                api_server(tmp, "reports-redis", {"REDIS_URL": redis.url, "BLOCKLIST_LOOKUP": "local"})
            )
        for mode in modes:
            check_reports(servers[mode][0], args.batch, REPORT_BASE - RUN_SPAN)
            for body in bodies:  # warm-up
                one(*servers[mode], body, 1)
        for i in range(args.rounds):
            for mode, body in configs[i % len(configs) :] + configs[: i % len(configs)]:
                runs[mode, body].append(one(*servers[mode], body, args.duration))
    med = {c: median_run(r) for c, r in runs.items()}
    per = {c: m.rps * bodies[c[1]] for c, m in med.items()}
    single, batch = bodies
    out("")
    out("| reports | body | req/s | reports/s | p50 ms | p99 ms | cpu us/req | requests | errors |")
    out("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for (mode, body), m in med.items():
        out(
            f"| {mode} | {body} | {m.rps:.0f} | {per[mode, body]:.0f} | {m.p50_ms:.2f} | {m.p99_ms:.2f} "
            f"| {m.cpu_us_per_request:.1f} | {m.requests} | {m.errors} |"
        )
    ratios: dict[str, float] = {}
    for mode in modes:
        ratio = ratios[f"{mode}_batch_over_single"] = per[mode, batch] / per[mode, single]
        out(f"| **{mode}** | **{batch} / single** | | **{ratio:.2f}x** | | | | | |")
    if "redis" in modes:
        for body in bodies:
            ratio = ratios[f"redis_over_embedded_{body}"] = per["redis", body] / per["embedded", body]
            out(f"| **redis / embedded** | **{body}** | | **{ratio:.2f}x** | | | | | |")
    out("")
    return {
        "runs": {f"{m}-{b}": [asdict(r) for r in rs] for (m, b), rs in runs.items()},
        "medians": {f"{m}-{b}": {**asdict(r), "reports_per_s": per[m, b]} for (m, b), r in med.items()},
        "ratios": ratios,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--addresses", type=int, default=1_000_000, help="distinct /check_ip addresses")
    parser.add_argument("--overrides", type=int, default=10_000)
    parser.add_argument("--reputation", type=int, default=100_000, help="reputation-blocked addresses")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections for /check_ip")
    parser.add_argument("--report-connections", type=int, default=16, help="wrk connections for reports")
    parser.add_argument("--batch", type=int, default=100, help="reports per batch body (at most 1000)")
    parser.add_argument("--check-sample", type=int, default=2000, help="answers checked before measuring")
    parser.add_argument("--no-redis", action="store_true", help="reports against embedded mode only")
    parser.add_argument("--quick", action="store_true", help="tiny: 1,000 overrides, 5,000 reputation, 1 s")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.addresses = 1, 1.0, 20_000
        args.overrides, args.reputation, args.check_sample = 1_000, 5_000, 300
    if not 1 < args.batch <= 1000:
        parser.error("--batch is 2..1000")
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install wrk")
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        result["check_ip"] = check_ip(args, tmp, print)
        result["reports"] = reports(args, tmp, print)
    medians = [*result["check_ip"]["medians"].values(), *result["reports"]["medians"].values()]
    errors = sum(m["errors"] for m in medians)
    print(f"errors (non-2xx or socket) over every run: {errors}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
