"""Wall-clock cost of metrics: one workload's controller with and without `metrics`.

    python -m benchmarks.metered                  # text, fast path and general loop
    python -m benchmarks.metered --rounds 15 --messages 20000

The controller of `benchmarks.instructions` (`fast` / `metered`, `general` /
`metered_general`), served directly, rounds interleaved so that the shared
machine's drift hits both alike; prints the median rate of each and the
ratio. Prefer `python -m benchmarks.instructions metered text` on a noisy
machine: instruction counts do not drift.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from benchmarks.inprocess import time_messages
from benchmarks.instructions import load
from benchmarks.workloads import WORKLOADS


async def rates(pairs: list[tuple[str, str]], workload_name: str, rounds: int, count: int) -> None:
    """Print the median messages per second of each app of each pair, and their ratio."""
    workload = WORKLOADS[workload_name]
    names = [name for pair in pairs for name in pair]
    apps = {name: load(name, workload) for name in names}
    for app in apps.values():  # warm up: specialized bytecode, filled caches
        await time_messages(app, workload, 2_000)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        # Every other round in reverse, so neither app always runs right after the other.
        for name in names if round_ % 2 == 0 else names[::-1]:
            samples[name].append(await time_messages(apps[name], workload, count))
    for off, on in pairs:
        without, with_ = statistics.median(samples[off]), statistics.median(samples[on])
        print(
            f"{workload_name}: {off} {without:,.0f} msg/s, {on} {with_:,.0f} msg/s, "
            f"metrics cost {(without / with_ - 1) * 100:+.1f}% per message"
        )


def main(argv: list[str] | None = None) -> int:
    """Compare the loops with and without metrics."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.metered")
    parser.add_argument("--workload", default="text", choices=["text", "json", "typed"])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--messages", type=int, default=10_000)
    args = parser.parse_args(argv)
    pairs = [("fast", "metered"), ("general", "metered_general")]
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(rates(pairs, args.workload, args.rounds, args.messages))
    else:
        uvloop.run(rates(pairs, args.workload, args.rounds, args.messages))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
