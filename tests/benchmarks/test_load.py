"""The multi-worker load test, run tiny: two uvicorn workers share one group over Redis."""

from __future__ import annotations

import pytest

from benchmarks.load.run import markdown, run_load

pytest.importorskip("redis")


def test_two_workers_deliver_every_broadcast_to_every_client_and_leave_no_subscription() -> None:
    result = run_load(workers=(2,), clients=(40,), broadcasts=3, client_processes=2, deadline=60)
    [rung] = result["rows"]["2"]["rungs"]
    assert rung["connected"] == 40
    assert rung["received"] == rung["expected"] == 40 * 3
    assert sum(rung["spread"].values()) == 40
    assert rung["p50_ms"] <= rung["p95_ms"] <= rung["p99_ms"]
    assert rung["subscriptions_after"] == 0  # every worker unsubscribed once its clients left
    assert result["rows"]["2"]["most_clients_p95_under_500ms"] in (40, None)
    assert "| 2 | 40 |" in markdown(result)
