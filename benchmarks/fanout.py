"""Fan-out cost of tether's brokers.

    python benchmarks/fanout.py            # both parts
    python benchmarks/fanout.py --memory   # MemoryBroker only
    python benchmarks/fanout.py --redis    # Redis only (starts its own redis-server)

MemoryBroker: the time for one `publish` to reach 1, 100, 1,000 and 10,000 local
members, each an `OutboundQueue` (the publish returns once every queue holds the
message; nothing drains them, as the socket writes are not part of fan-out).

Redis: messages per second from a publisher in this process to a subscriber in
another process, timed from the first publish until the subscriber's queue has
handed the last message to its `send`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import anyio

from tether.brokers import MemoryBroker, OutboundQueue, encode_frame

MESSAGE = {"type": "chat", "user": "ann", "text": "hello, room", "seq": 1}


async def _discard(message: dict[str, Any]) -> None:
    return None


async def memory_fanout(members: int, publishes: int) -> list[float]:
    """Seconds per publish to `members` queues, one sample per publish."""
    broker = MemoryBroker()
    queues = [OutboundQueue(_discard, maxsize=publishes) for _ in range(members)]
    for queue in queues:
        await broker.subscribe("room", queue)
    await broker.publish("room", MESSAGE)  # warm the group's snapshot
    for queue in queues:
        queue._queue.clear()
    samples = []
    clock = time.perf_counter
    for _ in range(publishes):
        start = clock()
        await broker.publish("room", MESSAGE)
        samples.append(clock() - start)
    assert all(len(queue) == publishes for queue in queues)
    return samples


def run_memory(backend: str) -> None:
    print(f"MemoryBroker fan-out into OutboundQueues ({backend})")
    print(f"{'members':>8} {'publishes':>9} {'median/publish':>15} {'per member':>11} {'p90':>10}")
    for members in (1, 100, 1_000, 10_000):
        publishes = max(100, min(2_000, 1_000_000 // members))
        samples = anyio.run(memory_fanout, members, publishes, backend=backend)
        median = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10)[-1]
        print(
            f"{members:>8} {publishes:>9} {median * 1e6:>12.1f} µs "
            f"{median / members * 1e9:>8.0f} ns {p90 * 1e6:>7.1f} µs"
        )


SUBSCRIBER = """
import sys, time, anyio
from tether.brokers import OutboundQueue, RedisBroker

url, group, count = sys.argv[1], sys.argv[2], int(sys.argv[3])

async def main():
    got = 0
    done = anyio.Event()

    async def send(message):
        nonlocal got
        got += 1
        if got == count:
            done.set()

    queue = OutboundQueue(send, maxsize=count)
    async with RedisBroker(url) as broker, anyio.create_task_group() as tg:
        tg.start_soon(queue.run)
        await broker.subscribe(group, queue)
        print("ready", flush=True)
        with anyio.move_on_after(120):
            await done.wait()
        print(got, time.monotonic(), flush=True)
        queue.close()

anyio.run(main)
"""


async def redis_throughput(url: str, count: int, publishers: int) -> tuple[float, float]:
    """(published/s, delivered/s) for `count` messages into one other process."""
    from tether.brokers import RedisBroker

    group = f"bench-{publishers}"
    process = await anyio.open_process([sys.executable, "-c", SUBSCRIBER, url, group, str(count)])
    assert process.stdout is not None
    from anyio.streams.buffered import BufferedByteReceiveStream

    output = BufferedByteReceiveStream(process.stdout)
    async with process:
        with anyio.fail_after(30):
            assert await output.receive_until(b"\n", 1024) == b"ready"
        async with RedisBroker(url) as broker:
            await broker.publish("warm-up", "x")
            per_task = count // publishers

            async def publish_some() -> None:
                for _ in range(per_task):
                    await broker.publish(group, MESSAGE)

            start = time.monotonic()
            async with anyio.create_task_group() as tg:
                for _ in range(publishers):
                    tg.start_soon(publish_some)
            published = time.monotonic() - start
        with anyio.fail_after(120):
            got, finished = (await output.receive_until(b"\n", 1024)).split()
            await process.wait()
    assert int(got) == count, f"subscriber got {got.decode()} of {count}"
    return count / published, count / (float(finished) - start)


def run_redis(count: int) -> None:
    from tether.redis_server import RedisServer

    size = len(encode_frame(MESSAGE)["text"].encode())
    print(f"\nRedisBroker, two processes, {count:,} JSON messages of {size} bytes")
    print(f"{'publisher tasks':>15} {'published/s':>12} {'delivered/s':>12}")
    with RedisServer() as server:
        for publishers in (1, 8):
            sent, delivered = anyio.run(redis_throughput, server.url, count, publishers)
            print(f"{publishers:>15} {sent:>12,.0f} {delivered:>12,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", action="store_true", help="MemoryBroker only")
    parser.add_argument("--redis", action="store_true", help="Redis only")
    parser.add_argument("--backend", default="asyncio", choices=("asyncio", "trio"))
    parser.add_argument("--count", type=int, default=20_000, help="messages through Redis")
    args = parser.parse_args()
    both = not (args.memory or args.redis)
    if args.memory or both:
        run_memory(args.backend)
    if args.redis or both:
        run_redis(args.count)


if __name__ == "__main__":
    main()
