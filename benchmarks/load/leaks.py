"""The leak check of the load test: each surviving worker back to its baseline.

A snapshot holds, per worker, the counts it reports (`benchmarks.load.counts`)
and its Redis connections as `CLIENT LIST` shows them (each worker names its
connections `tether-load-<pid>`): how many, and how many channels they are
subscribed to; plus `PUBSUB NUMSUB` of the group's channel. Once the clients
have left, every count must equal the baseline taken before they came, and
RSS must be back within `rss_bound` of it (memory the allocator keeps for
reuse is not a leak, a share of every connection kept is).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from benchmarks.load.app import CLIENT_NAME, GROUP
from benchmarks.load.counts import ask_counts

CHANNEL = f"tether:{GROUP}"
# Counts that must come back exactly; RSS is checked against `rss_bound`.
EXACT = ("tasks", "groups", "members", "sessions", "controllers", "redis_connections",
         "redis_subscriptions")  # fmt: skip
RSS_FIXED_SLACK = 8 << 20  # the allocator's arenas, caches and buffers warmed up by the load
# The first round leaves pymalloc's arenas fragmented: up to about a third of the peak
# growth stayed (4 workers), and a second round peaked no higher. A worker that kept
# half of what its connections took would fail.
RSS_SHARE_OF_GROWTH = 0.5


def rss_bound(peak_growth: int) -> int:
    """How far above its baseline a worker's RSS may stay once its clients have left."""
    return RSS_FIXED_SLACK + int(RSS_SHARE_OF_GROWTH * max(peak_growth, 0))


async def redis_state(url: str, pids: list[int]) -> dict[str, Any]:
    """`PUBSUB NUMSUB` of the group's channel and each worker's `CLIENT LIST` entries."""
    from redis.asyncio import Redis

    async with Redis.from_url(url) as client:
        [(_, numsub)] = await client.pubsub_numsub(CHANNEL)
        listed = await client.client_list()
    workers: dict[int, dict[str, int]] = {}
    for pid in pids:
        mine = [c for c in listed if c.get("name") == CLIENT_NAME.format(pid=pid)]
        workers[pid] = {
            "redis_connections": len(mine),
            "redis_subscriptions": sum(int(c["sub"]) + int(c["psub"]) for c in mine),
        }
    return {"numsub": int(numsub), "workers": workers}


async def snapshot(url: str, directory: Path, pids: list[int]) -> dict[str, Any]:
    """Every worker's counts and Redis state, and the channel's subscriber count."""
    counts = await ask_counts(directory, pids)
    redis = await redis_state(url, pids)
    return {
        "numsub": redis["numsub"],
        "workers": {pid: {**counts[pid], **redis["workers"][pid]} for pid in pids},
    }


def _same(baseline: dict[str, Any], now: dict[str, Any]) -> bool:
    return now["numsub"] == baseline["numsub"] and all(
        now["workers"][pid][key] == baseline["workers"][pid][key]
        for pid in now["workers"]
        for key in EXACT
    )


async def settled_baseline(url: str, directory: Path, pids: list[int], timeout: float = 30) -> Any:
    """A snapshot taken twice in a row with the same counts (startup has finished)."""
    deadline = time.monotonic() + timeout
    previous = await snapshot(url, directory, pids)
    while True:
        await asyncio.sleep(0.2)
        now = await snapshot(url, directory, pids)
        if _same(previous, now) or time.monotonic() > deadline:
            return now
        previous = now


async def back_to_baseline(
    url: str, directory: Path, baseline: dict[str, Any], pids: list[int], timeout: float = 60
) -> dict[str, Any]:
    """Wait (at most `timeout` s) until the workers in `pids` are back to `baseline`.

    Closing handshakes finish asynchronously, so the counts are polled; the
    last snapshot is returned either way, and `compare` says what differs.
    """
    kept = {"numsub": baseline["numsub"], "workers": {p: baseline["workers"][p] for p in pids}}
    deadline = time.monotonic() + timeout
    while True:
        now = await snapshot(url, directory, pids)
        if _same(kept, now) or time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.2)


def compare(
    baseline: dict[str, Any], peak: dict[str, Any], after: dict[str, Any]
) -> dict[str, Any]:
    """Per surviving worker: baseline, peak and after of each count, and whether all came back."""
    workers: dict[int, Any] = {}
    for pid, now in after["workers"].items():
        before = baseline["workers"][pid]
        high = peak["workers"].get(pid, now)
        bound = rss_bound(high["rss"] - before["rss"])
        rows = {key: (before[key], high[key], now[key]) for key in (*EXACT, "objects", "rss")}
        ok = all(before[key] == now[key] for key in EXACT) and now["rss"] - before["rss"] <= bound
        workers[pid] = {"counts": rows, "rss_bound": bound, "ok": ok}
    numsub = (baseline["numsub"], peak["numsub"], after["numsub"])
    return {
        "numsub": numsub,
        "workers": workers,
        "ok": numsub[0] == numsub[2] and all(w["ok"] for w in workers.values()),
    }
