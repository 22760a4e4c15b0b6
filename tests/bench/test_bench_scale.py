"""bench.scale at its quick sizes: the publish is compared with redis-cli --pipe on equal end states."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_scale_quick_compares_publish_with_the_pipe_and_leaner_encodings(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    sizes = json.loads(out.read_text())["sizes"]
    assert set(sizes) == {"10k", "100k"}
    for name, row in sizes.items():
        pipe = row["pipe"]
        # The run exits non-zero if the two end states differ; this is what it compared.
        assert pipe["end_states_equal"]
        assert pipe["zcards"] == {"4": row["ranges_v4"], "6": row["ranges_v6"]}, name
        assert len(pipe["pipe_rounds_s"]) == len(pipe["publish_rounds_s"]) == 2
        assert pipe["ratio"] == pytest.approx(pipe["publish_s"] / pipe["pipe_s"])
        lean = row["lean"]
        assert lean["ranges_v4"] == row["ranges_v4"]
        # Every encoding's lookups were checked against the index; the leaner ones are smaller.
        assert lean["packed"]["per_range"] < lean["bucketed"]["per_range"] < lean["zset"]["per_range"]
    assert "publish/pipe at 100k:" in result.stdout
