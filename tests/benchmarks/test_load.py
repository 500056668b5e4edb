"""The multi-worker load test, run small: uvicorn workers share one group over Redis.

Real parts throughout: `uvicorn --workers 2`, a real redis-server, client processes
with real WebSocket connections, a real SIGKILL.
"""

from __future__ import annotations

import pytest

pytest.importorskip("redis")

from benchmarks.load.leaks import rss_bound
from benchmarks.load.run import markdown, run_load

EXACT = ("tasks", "groups", "members", "sessions", "controllers", "redis_connections",
         "redis_subscriptions")  # fmt: skip


def test_two_workers_deliver_every_broadcast_to_every_client_and_come_back_to_baseline() -> None:
    result = run_load(workers=(2,), clients=(40,), broadcasts=3, deadline=60, log=lambda _: None)
    [rung] = result["rows"]["2"]["rungs"]
    assert rung["connected"] == 40 and rung["failed"] == 0
    assert rung["received"] == rung["expected"] == 40 * 3
    assert sum(seen["complete"] for seen in rung["by_worker"].values()) == 40
    assert rung["p50_ms"] <= rung["p95_ms"] <= rung["p99_ms"]
    assert rung["subscriptions_after"] == 0
    assert rung["leaks"]["ok"]
    assert result["rows"]["2"]["most_clients_p95_under_limit"] in (40, None)
    assert "| 2 | 40 |" in markdown(result)


def test_kill_9_of_one_worker_leaves_the_other_delivering_in_order_and_nothing_behind() -> None:
    result = run_load(
        workers=(2,), clients=(200,), broadcasts=6, kill_one=True, deadline=60, log=lambda _: None
    )
    [rung] = result["rows"]["2"]["rungs"]
    assert rung["connected"] == 200 and rung["failed"] == 0
    if len(rung["spread"]) < 2:
        pytest.skip("the kernel handed every connection to one worker")
    victim = str(rung["killed"])
    survivors = [pid for pid in rung["by_worker"] if pid != victim]
    assert victim in rung["by_worker"] and len(survivors) == 1
    # The killed worker's clients see the drop, after what they got, in order.
    killed = rung["by_worker"][victim]
    assert killed["dropped"] == killed["dropped_after_in_order_prefix"] == killed["connections"]
    assert killed["complete"] == 0
    # Every client of the survivor gets every broadcast, before and after the kill, in order.
    [survivor] = survivors
    kept = rung["by_worker"][survivor]
    assert kept["complete"] == kept["connections"] == rung["spread"][survivor]
    assert kept["dropped"] == 0
    # Once the clients left, the survivor is back to its baseline...
    leaks = rung["leaks"]
    assert list(leaks["workers"]) == [int(survivor)]
    counts = leaks["workers"][int(survivor)]["counts"]
    for key in EXACT:
        before, _, after = counts[key]
        assert after == before, key
    assert counts["members"][1] == counts["sessions"][1] == kept["connections"]
    before, peak, after = counts["rss"]
    assert after - before <= rss_bound(peak - before)
    # ...and so is Redis: no subscriber left on the group's channel.
    assert leaks["numsub"][0] == leaks["numsub"][2] == 0
    assert leaks["numsub"][1] == 2
    assert leaks["ok"]
    text = markdown(result)
    assert f"worker {victim} (killed)" in text and f"worker {survivor} (survived)" in text


def test_the_p95_search_reports_none_when_even_the_fewest_clients_miss_the_limit() -> None:
    result = run_load(
        workers=(1,), find_p95_ms=0.0, find_low=10, find_high=20, broadcasts=2, deadline=60,
        log=lambda _: None,
    )  # fmt: skip
    row = result["rows"]["1"]
    assert [rung["clients"] for rung in row["rungs"]] == [20, 10]  # high first, then low
    assert row["most_clients_p95_under_limit"] is None
    assert "most clients with p95 under 0 ms: none" in markdown(result)
