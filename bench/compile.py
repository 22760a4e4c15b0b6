"""Compile time of the IPv4 sweep: numpy against the pure-Python sweep, alternated.

The entries are ``bench.scale``'s generator at one size (2 % IPv6, 1 %
duplicates, shuffled). Each round compiles the IPv4 family with the numpy
sweep and with the Python one (in alternating order), and the IPv6 family
(always Python); both IPv4 results are checked equal. At 10M the Python
sweep takes minutes: ``--python-max`` caps the sizes it runs at.

    .venv/bin/python -m bench.compile --sizes 1m,10m --rounds 3
    .venv/bin/python -m bench.compile --quick
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from bench.scale import SIZES, synthetic_entries
from blocklist import index as index_module


def compile_v4(entries: Any, vectorised: bool) -> tuple[float, Any]:
    """Seconds to compile the IPv4 family one way, and the result."""
    sweep = index_module.sweep_v4
    if not vectorised:
        index_module.sweep_v4 = lambda *_: None  # type: ignore[assignment]
    try:
        start = time.perf_counter()
        family = index_module._compile_family(4, [entries], 0)
        return time.perf_counter() - start, family
    finally:
        index_module.sweep_v4 = sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100k,1m,10m")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--python-max", default="1m", help="largest size the Python sweep runs at")
    parser.add_argument("--quick", action="store_true", help="10k and 100k, 1 round")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.rounds = "10k,100k", 1
    python_max = SIZES[args.python_max]
    results: dict[str, Any] = {}
    print("| ranges | numpy IPv4 s | Python IPv4 s | Python / numpy | IPv6 (Python) s |")
    print("|---:|---:|---:|---:|---:|")
    for name in args.sizes.split(","):
        size = SIZES[name]
        v4, v6 = synthetic_entries(size, args.seed)
        runs: dict[str, list[float]] = {"numpy": [], "python": [], "v6": []}
        for i in range(args.rounds):
            ways = [True, False] if size <= python_max else [True]
            for vectorised in ways if i % 2 == 0 else ways[::-1]:
                seconds, family = compile_v4(v4, vectorised)
                runs["numpy" if vectorised else "python"].append(seconds)
                if vectorised:
                    fast = family
                elif (family.firsts, family.lasts, family.masks, family.scores) != (
                    fast.firsts,
                    fast.lasts,
                    fast.masks,
                    fast.scores,
                ):
                    raise SystemExit(f"{name}: the two sweeps disagree")
            start = time.perf_counter()
            index_module._compile_family(6, [v6], 0)
            runs["v6"].append(time.perf_counter() - start)
        med = {k: statistics.median(v) for k, v in runs.items() if v}
        ratio = med["python"] / med["numpy"] if "python" in med else None
        results[name] = {"entries_v4": len(v4), "entries_v6": len(v6), "runs": runs, "medians": med}
        python = f"{med['python']:.2f}" if "python" in med else "(not run)"
        shown = f"**{ratio:.1f}x**" if ratio else ""
        print(f"| {name} | {med['numpy']:.2f} | {python} | {shown} | {med['v6']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
