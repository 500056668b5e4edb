"""`python -m benchmarks.instructions`: callgrind counts per message and per connection.

The counting itself (two runs under valgrind, some 20 s each on the reference
VM) is left out of the suite; these check what callgrind runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.instructions import load
from benchmarks.workloads import WORKLOADS
from tether.controllers._receive import receive_fast, receive_general

REPO_ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.instructions", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_fast_and_general_are_the_same_controller_on_either_loop() -> None:
    fast, general = load("fast", WORKLOADS["text"]), load("general", WORKLOADS["text"])
    assert fast._receive_messages is receive_fast
    assert general._receive_messages is receive_general
    assert issubclass(general, fast)


@pytest.mark.parametrize(
    ("app", "workload"),
    [
        ("general", "typed"),
        ("tether_direct", "graph"),
        ("fast", "event"),
        ("fast", "request"),
        ("concurrent", "request"),
    ],
)
def test_one_counted_run_serves_its_workload(app: str, workload: str) -> None:
    # What callgrind runs: it fails (non-zero) if a reply or a teardown is wrong.
    done = run("--child", app, workload, "--sizes", "20")
    assert done.returncode == 0, done.stderr[-2000:]
