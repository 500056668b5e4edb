"""The durable-groups benchmark runs alone on a tiny workload and writes its table and JSON.

No timing is asserted (the machines are shared and noisy): only that every
measurement has its cell, and that the recovery delivered everything it missed.
It runs as `python -m benchmarks.durable` in a subprocess, exactly as a user runs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_durable_benchmark_measures_publish_cost_and_recovery(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.durable", "--members", "1,5", "--publishes", "20",
         "--rounds", "2", "--redis-publishes", "20", "--missed", "50", "--out", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "durable.json").read_text())
    assert set(results["publish"]) == {"1", "5"}
    for cell in [*results["publish"].values(), results["redis"]]:
        assert cell["history_on"] > 0 and cell["history_off"] > 0
        assert cell["ratio"] == cell["history_on"] / cell["history_off"]
        assert len(cell["runs"]["kept"]) == len(cell["runs"]["plain"]) == 2
    assert set(results["recovery"]) == {"memory", "redis"}
    assert all(
        cell["missed"] == 50 and cell["seconds"] > 0 for cell in results["recovery"].values()
    )
    table = (tmp_path / "durable.md").read_text()
    assert "## Durable groups" in table and "over Redis" in table and "recovery" in table
