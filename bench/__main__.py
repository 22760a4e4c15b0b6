"""Run every benchmark, one after the other: ``python -m bench``.

    .venv/bin/python -m bench              # the full suite, about 30 minutes (10M ranges, a 4-minute soak)
    .venv/bin/python -m bench --quick      # every benchmark at a tiny size (a smoke run, ~3 minutes)
    .venv/bin/python -m bench --only http_throughput,layers

Each benchmark runs as its own process (so none inherits another's memory
or threads) and its output is printed and kept, with its JSON where it
writes one, in ``--out`` (default ``bench/out/``, not versioned). The exit
code is non-zero if any benchmark failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: name -> (arguments of the full run, arguments of the quick run); "{json}" is the JSON output path.
SUITE: dict[str, tuple[list[str], list[str]]] = {
    "layers": (["--rounds", "7"], ["--quick"]),
    "http_throughput": (
        ["--rounds", "3", "--duration", "10", "--json", "{json}"],
        ["--addresses", "20000", "--rounds", "1", "--duration", "1", "--json", "{json}"],
    ),
    "distributed": (["--rounds", "5", "--json", "{json}"], ["--quick", "--json", "{json}"]),
    "startup_memory": (["--rounds", "5"], ["--rounds", "1"]),
    "scale": (["--json", "{json}"], ["--quick", "--json", "{json}"]),
    "soak": (["--duration", "240", "--interval", "2", "--json", "{json}"], ["--quick", "--json", "{json}"]),
    "history": (["--rounds", "3", "--duration", "10", "--json", "{json}"], ["--quick", "--json", "{json}"]),
    "compile": (["--rounds", "3", "--json", "{json}"], ["--quick", "--json", "{json}"]),
    "ipv6": (["--rounds", "7", "--json", "{json}"], ["--quick", "--json", "{json}"]),
    "control": (["--rounds", "3", "--duration", "10", "--json", "{json}"], ["--quick", "--json", "{json}"]),
    "updating": (["--rounds", "3", "--duration", "10", "--json", "{json}"], ["--quick", "--json", "{json}"]),
    "batch": (["--rounds", "3", "--duration", "10", "--json", "{json}"], ["--quick", "--json", "{json}"]),
    "export": (["--rounds", "3", "--duration", "10", "--json", "{json}"], ["--quick", "--json", "{json}"]),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every benchmark at a tiny size")
    parser.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(SUITE))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()
    chosen = [n for n in args.only.split(",") if n] or list(SUITE)
    unknown = set(chosen) - set(SUITE)
    if unknown:
        parser.error(f"unknown benchmarks: {sorted(unknown)}")
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in chosen:
        full, quick = SUITE[name]
        json_path = args.out / f"{name}.json"
        argv = [a.replace("{json}", str(json_path)) for a in (quick if args.quick else full)]
        print(f"== bench.{name} {' '.join(argv)}", flush=True)
        begin = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", f"bench.{name}", *argv],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        (args.out / f"{name}.txt").write_text(result.stdout + result.stderr)
        print(result.stdout, end="", flush=True)
        if result.returncode != 0:
            failed.append(name)
            print(result.stderr[-4000:], file=sys.stderr)
        print(f"== bench.{name}: exit {result.returncode}, {time.monotonic() - begin:.0f} s\n", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
