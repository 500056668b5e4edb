"""The benchmark harness runs end to end on a tiny workload and writes its table and JSON.

No timing is asserted (the machines are shared and noisy): only that every app and
workload has its row, that the baseline is raw ASGI, and where the files go.
The harness runs as `python -m benchmarks` in a subprocess, exactly as a user runs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.pages import SHOWN

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
APPS = ("raw", "starlette", "fastapi", "litestar", "lilya", "channels", "tether", "tether_direct")
PEERS = ("raw", "starlette", "fastapi", "litestar", "lilya", "channels")
WORKLOADS = ("text", "json", "typed", "graph", "bare")


def _results_snapshot() -> dict[str, float]:
    """The committed results and the pages that show them (`benchmarks/pages.py`)."""
    files = [*RESULTS_DIR.iterdir(), *(shown.page for shown in SHOWN.values())]
    return {str(p): p.stat().st_mtime for p in files}


def run_harness(out: Path, *flags: str, timeout: float = 240) -> dict[str, Any]:
    """Run `python -m benchmarks FLAGS --out OUT`; return the JSON it wrote."""
    before = _results_snapshot()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *flags, "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert _results_snapshot() == before, "the harness wrote into benchmarks/results/ or its pages"
    assert (out / "latest.md").is_file()
    return json.loads((out / "latest.json").read_text())


def test_inprocess_quick_run_has_a_row_per_app_and_workload(tmp_path: Path) -> None:
    results = run_harness(
        tmp_path, "--quick", "--only", "inprocess", "--messages", "40", "--connections", "8"
    )

    assert results["machine"]["cpu"] and results["machine"]["python"].startswith("CPython")
    assert "e2e" not in results
    inprocess = results["inprocess"]
    assert set(inprocess) == set(WORKLOADS)
    for workload, rows in inprocess.items():
        assert set(rows) | set(results["skipped"]) == set(APPS), workload
        assert rows["raw"]["ratio_to_raw"] == 1.0
        for app in PEERS:
            assert rows[app]["error"] is None, (workload, app, rows[app]["error"])
            assert rows[app]["median"] > 0 and rows[app]["ratio_to_raw"] > 0
        if "tether" in rows:  # the controller under test: a result or a reported failure
            assert rows["tether"]["median"] or rows["tether"]["error"]
    for app in ("raw", "starlette", "fastapi", "litestar", "channels"):
        assert inprocess["graph"][app]["teardowns_ok"] is True, app

    markdown = (tmp_path / "latest.md").read_text()
    assert "## In-process" in markdown
    for title in (
        "raw ASGI",
        "Starlette WebSocketEndpoint",
        "FastAPI",
        "Litestar",
        "Django Channels",
    ):
        assert f"| {title}" in markdown
    assert "text echo (msg/s)" in markdown and "connect + DI graph (conn/s)" in markdown


def test_e2e_quick_run_interleaves_the_apps_and_measures_round_trips_and_handshakes(
    tmp_path: Path,
) -> None:
    results = run_harness(
        tmp_path,
        "--quick",
        "--only",
        "e2e",
        "--apps",
        "tether_direct",
        "--ws",
        "websockets",
        "--duration",
        "0.2",
        "--e2e-slices",
        "3",
        "--e2e-connections",
        "1,4",
    )

    assert "inprocess" not in results
    rows = results["e2e"]["websockets"]
    assert set(rows) == {"raw", "tether_direct"}
    for app, row in rows.items():
        assert row["error"] is None, (app, row["error"])
        assert set(row["round_trips"]) == {"1", "4"}
        for trip in row["round_trips"].values():
            assert trip["per_second"] > 0 and trip["ratio_to_raw"] > 0
            assert trip["p50_ms"] is not None and trip["p99_ms"] >= trip["p50_ms"]
        assert row["handshakes_per_second"] > 0 and row["handshakes_ratio_to_raw"] > 0
        (run,) = row["runs"]  # one round in a quick run, its time cut into 3 slices
        assert [len(trip["slice_rates"]) for trip in run["round_trips"]] == [3, 3]
        assert len(run["handshakes"]["slice_rates"]) == 3
    assert all(trip["ratio_to_raw"] == 1.0 for trip in rows["raw"]["round_trips"].values())

    markdown = (tmp_path / "latest.md").read_text()
    assert "## End-to-end: uvicorn `--ws websockets`" in markdown
    assert "| raw ASGI |" in markdown and "| tether, served directly |" in markdown


def test_fanout_quick_run_times_every_member_count_without_redis(tmp_path: Path) -> None:
    results = run_harness(
        tmp_path,
        "--quick",
        "--only",
        "fanout",
        "--fanout-members",
        "1,5",
        "--fanout-seconds",
        "0.01",
        "--redis-messages",
        "0",
    )

    assert "inprocess" not in results and "footprint" not in results
    fanout = results["fanout"]
    assert fanout["members"] == [1, 5]
    assert fanout["redis"] == {"skipped": "--redis-messages 0"}
    assert {"tether", "broker", "broker_enqueue"} <= set(fanout["rows"])
    for row, cells in fanout["rows"].items():
        for members in ("1", "5"):
            cell = cells[members]
            if row in ("tether", "broker", "broker_enqueue"):
                assert cell.get("error") is None, (row, members, cell)
            if "median_seconds" in cell:
                assert cell["median_seconds"] > 0 and cell["publishes"] >= 1
    assert set(fanout["no_groups"]) == {"starlette", "fastapi", "lilya"}

    markdown = (tmp_path / "latest.md").read_text()
    assert "## Fan-out (in-process)" in markdown
    assert "| tether controllers" in markdown
    assert "Redis" in markdown and "Skipped: --redis-messages 0" in markdown


def test_footprint_quick_run_reports_bytes_per_connection_and_the_share_above_raw(
    tmp_path: Path,
) -> None:
    results = run_harness(
        tmp_path, "--quick", "--only", "footprint", "--footprint-connections", "20"
    )

    footprint = results["footprint"]
    assert footprint["method"] == "tracemalloc"
    assert footprint["counts"] == [20]
    rows = footprint["rows"]
    assert set(rows) >= set(PEERS)
    if "tether" in rows:  # the controller under test: bare, with a dependency, unrouted
        assert {"tether_dep", "tether_direct"} <= set(rows)
    for name in rows:
        cell = rows[name]["20"]
        assert "error" not in cell, (name, cell)
        assert cell["bytes"] > 0 and "share_above_raw" in cell
    assert rows["raw"]["20"]["share_above_raw"] == 0

    markdown = (tmp_path / "latest.md").read_text()
    assert "## Memory per idle connection (in-process, tracemalloc)" in markdown
    assert "framework share of memory per idle connection" in markdown


def test_a_peer_growing_faster_than_linearly_is_scaled_so_before_its_next_count() -> None:
    from benchmarks.fanout import estimate_seconds

    # Linear from one point; never below linear; Django Channels' growth (20 ms at 100,
    # 441 ms at 1,000 members) puts a publish to 10,000 near 10 s, not 4.4 s.
    assert estimate_seconds([(1_000, 0.3)], 10_000) == pytest.approx(3.0)
    assert estimate_seconds([(100, 0.02), (1_000, 0.1)], 10_000) == pytest.approx(1.0)
    assert estimate_seconds([(100, 0.02), (1_000, 0.441)], 10_000) == pytest.approx(9.72, rel=0.01)
