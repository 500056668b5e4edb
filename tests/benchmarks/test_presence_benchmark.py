"""The presence benchmark runs alone on a tiny workload and writes its table and JSON.

No timing is asserted: only that a diff costs every member the same whatever
the group's size while a snapshot grows, and that Redis keeps no key once
everyone left. It runs as `python -m benchmarks.presence`, as a user runs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_presence_benchmark_measures_join_bytes_and_redis_memory(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.presence", "--sizes", "10,100",
         "--heartbeat", "0.5", "--out", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "presence.json").read_text())
    small, large = results["join"]["10"], results["join"]["100"]
    assert small["diff_bytes_per_member"] == large["diff_bytes_per_member"] > 0
    assert large["snapshot_bytes_per_member"] > 5 * small["snapshot_bytes_per_member"]
    redis = results["redis"]
    assert redis["payload_bytes"] > 0
    for cell in redis["memory"].values():
        assert cell["bytes_per_member"] > 0 and cell["keys_left_after_all_left"] == 0
    assert redis["kill"]["seconds"] > 0
    assert "## Presence" in (tmp_path / "presence.md").read_text()
