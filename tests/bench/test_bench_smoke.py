"""The benchmark suite runs end to end at a tiny size (figures are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(900)
def test_every_benchmark_runs_at_a_tiny_size(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=850,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name in (
        "layers", "http_throughput", "distributed", "startup_memory", "scale", "soak", "history", "control",
        "compile", "updating", "ipv6", "batch", "export",
    ):  # fmt: skip
        assert f"== bench.{name}: exit 0" in result.stdout
    throughput = json.loads((tmp_path / "http_throughput.json").read_text())
    assert set(throughput) == {
        "naive", "ceiling", "ceiling-headers", "ceiling-granian",
        "ours", "ours-local", "ours-live", "ours-granian",
    }  # fmt: skip
    # Every configuration answered every request with a 2xx.
    assert all(run["errors"] == 0 for run in throughput.values()), throughput
    batch = json.loads((tmp_path / "batch.json").read_text())
    assert all(run["errors"] == 0 for run in batch["medians"].values()), batch
    export = json.loads((tmp_path / "export.json").read_text())
    assert all(run["errors"] == 0 for run in export["polls"]["medians"].values()), export
    assert export["ipsum"]["networks"] > 0
    # The soak checked every answer against the version it came from, through a Redis restart.
    soak = json.loads((tmp_path / "soak.json").read_text())
    assert soak["wrong_answers"] == 0
    assert soak["outcomes"] == {"ok": soak["requests"]}

    # The update benchmark changed versions only in its changing runs, and each got served.
    groups = json.loads((tmp_path / "updating.json").read_text())["groups"]
    assert len(groups) == 3, groups.keys()  # embedded, distributed ipsum, distributed 10k
    for group in groups.values():
        steady, changing = group["runs"]["steady"], group["runs"]["changing"]
        assert all(run["changes"] == 0 for run in steady), steady
        assert all(run["made"] >= 1 and run["settled"] for run in changing), changing
        assert all(run["non_2xx"] == 0 for run in steady + changing)
