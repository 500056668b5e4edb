"""The side-by-side Redis benchmark, run tiny: every installed peer delivers every message."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from benchmarks.redis_peers import MODULES, markdown, run_redis_peers

pytest.importorskip("redis")


def test_every_peer_delivers_every_message_across_processes() -> None:
    result = run_redis_peers(200, publishers=(1, 4), rounds=1, deadline=30, runner=asyncio.run)
    if "rows" not in result:
        pytest.skip(result["skipped"])
    installed = {peer for peer, module in MODULES.items() if importlib.util.find_spec(
        module.partition(".")[0]) is not None}  # fmt: skip
    assert set(result["rows"]) == installed
    for peer, cells in result["rows"].items():
        for tasks, cell in cells.items():
            assert "error" not in cell, (peer, tasks, cell)
            assert cell["delivered"] == cell["messages"] == 200, (peer, tasks, cell)
            assert cell["delivered_per_second"] > 0
    table = markdown(result)
    assert "tether RedisBroker" in table and "delivered/s" in table
