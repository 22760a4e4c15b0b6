"""IPv6 index layout: 64-bit halves with a /16 slot table against lists of Python ints.

The former layout kept IPv6 bounds as two lists of 128-bit Python ints and
answered with one ``bisect`` over the starts; the current one keeps them as
``array('Q')`` halves (:class:`blocklist.u128.U128Array`) searched through a
/16 slot table. Both are built here from the same compiled index (seeded
/32 to /64 networks in 2000::/3, ``--sizes``), and the same seeded addresses
(half inside a range, half random) are answered by ``check_ip`` as served (up to
``SMALL_V6`` ranges the served version also holds the bounds as Python ints
and searches those), by ``check_ip`` forced onto the halves, and by the same
function with the former IPv6 step, alternated per round in one process,
timed per call in batches (``perf_counter_ns``). Reported per size: median
ns per lookup of each, the ratio served/former (target: <= 1.0, "no
slower"), and bytes per range of each layout (bounds, masks and
scores; ``sys.getsizeof`` of the containers and of every int the lists
hold, with the former u64 masks; the slot table is fixed, 256 KiB per
version, and reported apart).

    .venv/bin/python -m bench.ipv6 --sizes 1k,10k,100k,1m --rounds 7
    .venv/bin/python -m bench.ipv6 --quick
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import statistics
import sys
import time
from bisect import bisect_right
from collections.abc import Callable
from pathlib import Path
from typing import Any

from blocklist.addresses import V4, parse_address
from blocklist.errors import InvalidAddress
from blocklist.feedparsers import FamilyEntries
from blocklist.index import compile_index
from blocklist.snapshot import Version, checksum_of
from blocklist.u128 import U128Array
from ipchecking import holder as holder_module
from ipchecking.answers import NO_DATA, Answer, check_ip, error_body
from ipchecking.holder import ALLOWED_BODY, BLOCKED_BODY, VersionHolder

SIZES = {"1k": 1_000, "10k": 10_000, "100k": 100_000, "1m": 1_000_000}
BATCH = 100


def networks(count: int, seed: int) -> FamilyEntries:
    """``count`` seeded networks (/32, /48, /56 or /64) in 2000::/3."""
    rng = random.Random(seed)
    entries = FamilyEntries()
    for _ in range(count):
        bits = rng.choice((32, 48, 56, 64))
        first = (rng.getrandbits(125) | 1 << 125) >> (128 - bits) << (128 - bits)
        entries.append(first, first | ((1 << (128 - bits)) - 1), 0)
    return entries


def former_check_ip(holder: VersionHolder, firsts: list[int], lasts: list[int], text: str) -> Answer:
    """``check_ip`` with the former IPv6 step: one bisect over a list of Python ints."""
    try:
        family, value = parse_address(text)
    except InvalidAddress as exc:
        status, headers, body = error_body(422, "invalid_address", exc.reason)
        return status, headers, body, "invalid"
    served = holder.served
    if served is None:
        return (*NO_DATA, "unavailable")
    control = holder.control
    if control.active:
        raise AssertionError("no control data here")
    if family == V4:
        raise AssertionError("IPv6 only")
    i = bisect_right(firsts, value) - 1
    if i >= 0 and value <= lasts[i]:
        return 200, served.blocked_headers, BLOCKED_BODY, "blocked"
    return 200, served.allowed_headers, ALLOWED_BODY, "allowed"


def per_range_bytes(*containers: Any) -> int:
    """Bytes of ``containers`` and, for lists, of every int they hold."""
    total = 0
    for container in containers:
        total += sys.getsizeof(container)
        if isinstance(container, list):
            total += sum(sys.getsizeof(v) for v in container)
    return total


def time_calls(call: Callable[[str], object], addresses: list[str]) -> list[float]:
    """Per-call ns of each batch of :data:`BATCH` calls."""
    out = []
    for start in range(0, len(addresses), BATCH):
        batch = addresses[start : start + BATCH]
        began = time.perf_counter_ns()
        for address in batch:
            call(address)
        out.append((time.perf_counter_ns() - began) / len(batch))
    return out


def measure(size: str, rounds: int, lookups: int, seed: int) -> dict[str, Any]:
    index = compile_index({"f": (FamilyEntries(), networks(SIZES[size], seed))})
    holder = VersionHolder()
    holder.swap(Version(1, 1.0, (), index, checksum_of(index)))
    halves_only = VersionHolder()
    default, holder_module.SMALL_V6 = holder_module.SMALL_V6, 0
    try:
        halves_only.swap(Version(1, 1.0, (), index, checksum_of(index)))
    finally:
        holder_module.SMALL_V6 = default
    fam = index.v6
    assert isinstance(fam.firsts, U128Array)
    assert isinstance(fam.lasts, U128Array)
    firsts, lasts = list(fam.firsts), list(fam.lasts)
    rng = random.Random(seed + 1)
    values = [
        fam.firsts[rng.randrange(len(fam))] + 1 if i % 2 else rng.getrandbits(125) | 1 << 125
        for i in range(lookups)
    ]
    addresses = [str(ipaddress.IPv6Address(v)) for v in values]
    for address in addresses[:2000]:  # same answers both ways
        assert check_ip(holder, address)[2] == former_check_ip(holder, firsts, lasts, address)[2], address

    def current(address: str) -> object:
        return check_ip(holder, address)

    def halves(address: str) -> object:
        return check_ip(halves_only, address)

    def former(address: str) -> object:
        return former_check_ip(holder, firsts, lasts, address)

    timings: dict[str, list[float]] = {"current": [], "halves": [], "former": []}
    for r in range(rounds):
        order = [("current", current), ("halves", halves), ("former", former)]
        for name, call in order if r % 2 == 0 else order[::-1]:
            timings[name] += time_calls(call, addresses)
    medians = {name: statistics.median(ts) for name, ts in timings.items()}
    n = len(fam)
    halves = (fam.firsts.hi, fam.firsts.lo, fam.lasts.hi, fam.lasts.lo)
    return {
        "ranges": n,
        "current_ns": medians["current"],
        "former_ns": medians["former"],
        "halves_ns": medians["halves"],
        "ratio": medians["current"] / medians["former"],
        "halves_ratio": medians["halves"] / medians["former"],
        "small_path": holder.served is not None and holder.served.v6_small is not None,
        "current_bytes_per_range": per_range_bytes(*halves, fam.masks, fam.scores) / n,
        # Served beside the index up to SMALL_V6 ranges (the fast path of small lists).
        "hot_path_extra_bytes_per_range": per_range_bytes(firsts, lasts) / n
        if holder.served is not None and holder.served.v6_small is not None
        else 0.0,
        # The former layout's masks were u64 whatever the feed count: 7 more bytes than u8.
        "former_bytes_per_range": (per_range_bytes(firsts, lasts, fam.masks, fam.scores) + 7 * n) / n,
        "slot_table_bytes": sys.getsizeof(fam.slots),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1k,10k,100k,1m")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="1k and 10k, 3 rounds, 2,000 lookups")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.rounds, args.lookups = "1k,10k", 3, 2_000
    results = {size: measure(size, args.rounds, args.lookups, args.seed) for size in args.sizes.split(",")}
    print(
        "| ranges | served ns | halves ns | former ns | served / former | halves / former "
        "| B/range index | + hot-path ints | B/range former |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results.values():
        print(
            f"| {r['ranges']:,} | {r['current_ns']:,.0f} | {r['halves_ns']:,.0f} | {r['former_ns']:,.0f} "
            f"| **{r['ratio']:.2f}x** | {r['halves_ratio']:.2f}x | {r['current_bytes_per_range']:.1f} "
            f"| {r['hot_path_extra_bytes_per_range']:.1f} | {r['former_bytes_per_range']:.1f} |"
        )
    worst = max(r["ratio"] for r in results.values())
    print(f"target current/former <= 1.0: {'met' if worst <= 1.0 else 'missed'} (worst {worst:.2f}x)")
    print(f"slot table: {next(iter(results.values()))['slot_table_bytes']:,} B per version, fixed")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
