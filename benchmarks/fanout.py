"""Fan-out: one publish to 1 … 10,000 local members, and messages/second across two processes.

In-process (`run_fanout`), in each round and for every member count, one batch of
idle connections (`benchmarks.idle`) is opened, then publishes are timed from the
call until every member's ASGI `send` has received the message; a cell is the
median of the rounds' medians:

- tether: `WebSocketController`s that `join` a group on connect, published to
  with `broker.publish` (their `MemoryBroker`);
- Django Channels: consumers in a group of the `InMemoryChannelLayer`, published
  to with `group_send`;
- Litestar: the `ChannelsPlugin`'s own websocket route on the memory backend,
  published to with `ChannelsPlugin.publish` (the app's lifespan runs around it).

Starlette, FastAPI and Lilya have no built-in groups; they are named in the report.
For comparison with the controllers, tether's broker is also timed bare: one
`OutboundQueue` per member drained into a counting `send` by its `run()` task, and
(what `publish` itself costs) the publish alone, returning once every queue holds
the message, with nothing draining them.

Across processes (`run_redis`), a `RedisBroker` publisher in this process sends to
a subscriber in another Python process through a real `redis-server` started by
`tether.testing.redis.RedisServer`; the subscriber's queue hands every message to
its `send`. Skipped, with the reason, when no `redis-server` binary is found.

`python -m benchmarks --only fanout` runs it (`python -m benchmarks.fanout` too).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import importlib
import json
import math
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from benchmarks.idle import ASGIApp, IdleConnections, Message
from benchmarks.inprocess import websocket_scope

MESSAGE = {"type": "chat", "user": "ann", "text": "hello, room", "seq": 1}
TEXT = json.dumps(MESSAGE, separators=(",", ":"))
GROUP = "room"
MEMBER_COUNTS = (1, 100, 1_000, 10_000)
DELIVERY_TIMEOUT = 60.0
OPEN_TIMEOUT = 120.0
MIN_PUBLISHES = 5

NO_BUILT_IN_GROUPS = {
    "starlette": "Starlette: no groups or pub/sub built in (encode/broadcaster is separate)",
    "fastapi": "FastAPI: none built in (Starlette's WebSocket; broadcaster is separate)",
    "lilya": "Lilya: no groups or pub/sub built in",
}


@dataclasses.dataclass(frozen=True)
class FanoutPeer:
    """A framework whose built-in groups are timed: where its member app and publish live."""

    name: str
    title: str
    module: str
    path: str
    lifespan: bool = False


PEERS = (
    FanoutPeer(
        "tether", "tether controllers, `join` + `broker.publish`",
        "benchmarks.apps.tether_controllers", "/room",
    ),
    FanoutPeer(
        "channels", "Django Channels, InMemoryChannelLayer `group_send`",
        "benchmarks.apps.channels_consumer", "/room",
    ),
    FanoutPeer(
        "litestar", "Litestar ChannelsPlugin, memory backend",
        "benchmarks.apps.litestar_listener", "/room", lifespan=True,
    ),
)  # fmt: skip
BROKER_ROWS = {
    "broker": "tether MemoryBroker → OutboundQueue → send (no controller)",
    "broker_enqueue": "tether MemoryBroker → OutboundQueue, publish returns (nothing drained)",
}
TITLES = {**{peer.name: peer.title for peer in PEERS}, **BROKER_ROWS}


class DeliveryCount:
    """Counts data frames sent to members; `done` is set when `target` of them arrived."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.wrong: Message | None = None
        self.done = asyncio.Event()

    def expect(self, target: int) -> None:
        """Start counting afresh toward `target` deliveries."""
        self.count = 0
        self.target = target
        self.done = asyncio.Event()

    def __call__(self, message: Message) -> None:
        text = message.get("text")
        if text is None and message.get("bytes") is not None:
            text = message["bytes"].decode()
        if text != TEXT:
            self.wrong = message
            return
        self.count += 1
        if self.count == self.target:
            self.done.set()


async def _settle() -> None:
    """Let every woken task finish what it was doing before the next sample."""
    for _ in range(3):
        await asyncio.sleep(0)


async def time_publishes(
    publish: Callable[[], Awaitable[None]],
    counter: DeliveryCount,
    members: int,
    *,
    budget: float,
    most: int,
) -> list[float]:
    """Seconds from each publish until `members` deliveries were counted, one per sample.

    A first, untimed publish warms up and sizes the sample: as many publishes as fit
    in `budget` seconds, at least 5 and at most `most`.
    """
    samples: list[float] = []
    count = 1
    index = -1
    gc.collect()
    while index < count:
        counter.expect(members)
        started = time.perf_counter()
        await publish()
        await asyncio.wait_for(counter.done.wait(), DELIVERY_TIMEOUT)
        elapsed = time.perf_counter() - started
        if counter.wrong is not None:
            raise AssertionError(f"a member received {counter.wrong!r}, expected {TEXT!r}")
        await _settle()
        if counter.count != members:
            raise AssertionError(f"{counter.count} deliveries to {members} members")
        if index < 0:
            count = max(MIN_PUBLISHES, min(most, int(budget / max(elapsed, 1e-6))))
        else:
            samples.append(elapsed)
        index += 1
    return samples


@contextlib.asynccontextmanager
async def asgi_lifespan(app: ASGIApp) -> AsyncIterator[None]:
    """Run the ASGI lifespan protocol around the block: startup before, shutdown after."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                   inbox.get, outbox.put))  # fmt: skip
    try:
        await inbox.put({"type": "lifespan.startup"})
        reply = await asyncio.wait_for(outbox.get(), 30)
        if reply["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"lifespan startup failed: {reply}")
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(outbox.get(), 30)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(task, 5)
        if not task.done():
            task.cancel()


async def peer_fanout(
    peer: FanoutPeer, module: Any, members: int, *, budget: float, most: int
) -> list[float]:
    """Open `members` connections to the peer's member app; time publishes to all of them."""
    app, publish = module.fanout_app, module.fanout_publish
    counter = DeliveryCount()
    lifespan = asgi_lifespan(app) if peer.lifespan else contextlib.nullcontext()
    async with lifespan:
        pool = IdleConnections(app, lambda: websocket_scope(peer.path), on_frame=counter)
        try:
            await pool.open(members, timeout=OPEN_TIMEOUT)
            await _settle()
            return await time_publishes(
                lambda: publish(TEXT), counter, members, budget=budget, most=most
            )
        finally:
            await pool.close(timeout=OPEN_TIMEOUT)


async def broker_fanout(members: int, *, budget: float, most: int) -> list[float]:
    """The bare broker: `members` OutboundQueues, each drained into a counting `send`."""
    from tether.brokers import MemoryBroker, OutboundQueue

    broker = MemoryBroker()
    counter = DeliveryCount()

    async def send(message: Message) -> None:
        counter(message)

    queues = [OutboundQueue(send, maxsize=64) for _ in range(members)]
    tasks = [asyncio.create_task(queue.run()) for queue in queues]
    try:
        for queue in queues:
            await broker.subscribe(GROUP, queue)
        await _settle()
        return await time_publishes(
            lambda: broker.publish(GROUP, TEXT), counter, members, budget=budget, most=most
        )
    finally:
        for queue in queues:
            queue.close()
        await asyncio.wait(tasks, timeout=30)


async def broker_enqueue(members: int, publishes: int) -> list[float]:
    """Seconds per publish into `members` OutboundQueues that nothing drains (publish returns)."""
    from tether.brokers import MemoryBroker, OutboundQueue

    async def discard(message: Message) -> None:
        return None

    broker = MemoryBroker()
    queues = [OutboundQueue(discard, maxsize=publishes + 1) for _ in range(members)]
    for queue in queues:
        await broker.subscribe(GROUP, queue)
    await broker.publish(GROUP, TEXT)  # warm the group's snapshot
    samples = []
    clock = time.perf_counter
    gc.collect()
    for _ in range(publishes):
        started = clock()
        await broker.publish(GROUP, TEXT)
        samples.append(clock() - started)
    if not all(len(queue) == publishes + 1 for queue in queues):
        raise AssertionError("a queue missed a message")
    return samples


def _summary(batches: Sequence[Sequence[float]], members: int) -> dict[str, Any]:
    """A cell's figures from its rounds: each round a batch of publish times, in seconds."""
    round_medians = [statistics.median(batch) for batch in batches]
    median = statistics.median(round_medians)
    every = [seconds for batch in batches for seconds in batch]
    return {
        "median_seconds": median,
        "round_medians": round_medians,
        "p90_seconds": statistics.quantiles(every, n=10)[-1] if len(every) > 1 else median,
        "per_member_ns": median / members * 1e9,
        "publishes": len(every),
        "samples": every,
    }


def load_peers(names: Sequence[str] | None) -> tuple[list[tuple[FanoutPeer, Any]], dict[str, str]]:
    """Import each peer's app module; return the usable ones and why the others were skipped."""
    loaded, skipped = [], {}
    for peer in PEERS:
        if names is not None and peer.name not in names and peer.name != "tether":
            continue
        try:
            module = importlib.import_module(peer.module)
            module.fanout_app, module.fanout_publish  # noqa: B018 (the module must have both)
        except Exception as exc:  # a peer that won't load is reported, not fatal
            skipped[peer.name] = f"{type(exc).__name__}: {exc}"
            continue
        loaded.append((peer, module))
    return loaded, skipped


def estimate_seconds(timed: Sequence[tuple[int, float]], count: int) -> float:
    """One publish to `count` members, scaled from the last two (members, seconds) timed.

    Linear at least; faster where the peer grew faster between its last two counts
    (Django Channels' in-memory layer grows about as members^1.3), so a peer whose
    publishes grow superlinearly is not kept busy for minutes at the next count.
    """
    fewer, seconds = timed[-1]
    exponent = 1.0
    if len(timed) >= 2:
        least, first = timed[-2]
        if least < fewer and first > 0 and seconds > first:
            exponent = max(1.0, math.log(seconds / first) / math.log(fewer / least))
    return seconds * (count / fewer) ** exponent


async def run_fanout(
    members: Sequence[int],
    *,
    peers: Sequence[str] | None = None,
    budget: float = 0.3,
    most: int = 200,
    rounds: int = 3,
    cell_seconds: float = 20.0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Time publishes to each member count for every peer and the bare broker, in rounds.

    Each round opens a fresh batch of connections per peer and member count, in
    turn, so a noisy moment on the machine lands on one round of every peer rather
    than on all of one peer's samples. Returns `{"members", "rounds", "rows": {row:
    {str(n): summary or {"error"} or {"skipped"}}}, "skipped", "no_groups"}`; a
    cell's `median_seconds` is the median of its rounds' medians.
    A peer whose publishes, scaled from its previous member counts, would keep one
    cell busy longer than `cell_seconds` is skipped at the larger count, with why
    (see `estimate_seconds`: a peer that grows faster than linearly is scaled so).
    """
    loaded, skipped = load_peers(peers)
    names = [peer.name for peer, _ in loaded] + ["broker", "broker_enqueue"]
    samples: dict[str, dict[int, list[list[float]]]] = {n: {c: [] for c in members} for n in names}
    rows: dict[str, dict[str, Any]] = {name: {} for name in names}
    previous: dict[str, list[tuple[int, float]]] = {}
    for round_number in range(1, rounds + 1):
        for count in members:
            started = time.perf_counter()
            for peer, module in loaded:
                cell = rows[peer.name]
                if "skipped" in cell.get(str(count), {}) or "error" in cell.get(str(count), {}):
                    continue
                if peer.name in previous and previous[peer.name][-1][0] < count:
                    fewer, seconds = previous[peer.name][-1]
                    estimate = estimate_seconds(previous[peer.name], count) * (MIN_PUBLISHES + 1)
                    if estimate > cell_seconds:
                        cell[str(count)] = {
                            "skipped": f"one publish to {fewer:,} took {seconds:.3f} s, so"
                            f" {MIN_PUBLISHES + 1} to {count:,} would take over {estimate:.0f} s"
                        }
                        log(
                            f"  fan-out {peer.name} @{count:,} skipped (estimated {estimate:.0f} s)"
                        )
                        continue
                try:
                    found = await peer_fanout(peer, module, count, budget=budget, most=most)
                    samples[peer.name][count].append(found)
                    timed = previous.setdefault(peer.name, [])
                    if not timed or timed[-1][0] < count:  # the first round's, in rising order
                        timed.append((count, statistics.median(found)))
                except Exception as exc:  # a failing peer is reported in its cell
                    cell[str(count)] = {"error": f"{type(exc).__name__}: {exc}"}
                    log(f"  fan-out {peer.name} @{count} failed: {exc}")
                gc.collect()
            samples["broker"][count].append(await broker_fanout(count, budget=budget, most=most))
            publishes = max(20, min(2_000, 200_000 // count))
            samples["broker_enqueue"][count].append(await broker_enqueue(count, publishes))
            log(
                f"fan-out round {round_number}/{rounds}: {count:,} members"
                f" in {time.perf_counter() - started:.1f}s"
            )
    for name, by_count in samples.items():
        for count, batches in by_count.items():
            if batches and str(count) not in rows[name]:
                rows[name][str(count)] = _summary(batches, count)
    return {
        "members": list(members),
        "rounds": rounds,
        "message_bytes": len(TEXT.encode()),
        "rows": rows,
        "skipped": skipped,
        "no_groups": NO_BUILT_IN_GROUPS,
    }


# --- across two processes, through Redis ------------------------------------------------

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
    """(published/s, delivered/s) for `count` messages from here to a subscriber process.

    `count` is rounded down to a multiple of `publishers`, each task publishing its share.
    """
    import anyio
    from anyio.streams.buffered import BufferedByteReceiveStream

    from tether.brokers import RedisBroker

    per_task = count // publishers
    count = per_task * publishers
    group = f"bench-{publishers}-{time.monotonic_ns()}"
    process = await anyio.open_process([sys.executable, "-c", SUBSCRIBER, url, group, str(count)])
    assert process.stdout is not None
    output = BufferedByteReceiveStream(process.stdout)
    async with process:
        try:
            with anyio.fail_after(30):
                ready = await output.receive_until(b"\n", 1024)
            if ready != b"ready":
                raise RuntimeError(f"the subscriber said {ready!r}")
            async with RedisBroker(url) as broker:
                await broker.publish("warm-up", "x")

                async def publish_some() -> None:
                    for _ in range(per_task):
                        await broker.publish(group, TEXT)

                started = time.monotonic()
                async with anyio.create_task_group() as tasks:
                    for _ in range(publishers):
                        tasks.start_soon(publish_some)
                published = time.monotonic() - started
            with anyio.fail_after(120):
                got, finished = (await output.receive_until(b"\n", 1024)).split()
                await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
    if int(got) != count:
        raise RuntimeError(f"the subscriber got {got.decode()} of {count}")
    return count / published, count / (float(finished) - started)


def run_redis(
    count: int,
    *,
    publishers: Sequence[int] = (1, 8),
    rounds: int = 3,
    runner: Callable[..., Any] = asyncio.run,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Messages/second through a throwaway redis-server, median over `rounds`; or why skipped."""
    try:
        from tether.testing.redis import RedisServer, find_redis_server

        executable = find_redis_server()
        import redis  # noqa: F401 (RedisBroker needs it)
    except (FileNotFoundError, ImportError) as exc:
        log(f"fan-out: Redis skipped: {exc}")
        return {"skipped": str(exc)}
    rows: dict[str, Any] = {}
    with RedisServer(executable=executable) as server:
        for tasks in publishers:
            try:
                runs = [runner(redis_throughput(server.url, count, tasks)) for _ in range(rounds)]
            except Exception as exc:  # reported in the table, not fatal to the run
                rows[str(tasks)] = {"error": f"{type(exc).__name__}: {exc}"}
                log(f"  fan-out: Redis, {tasks} publisher task(s) failed: {exc}")
                continue
            rows[str(tasks)] = {
                "published_per_second": statistics.median(run[0] for run in runs),
                "delivered_per_second": statistics.median(run[1] for run in runs),
                "runs": runs,
            }
            log(
                f"fan-out: Redis, {tasks} publisher task(s): "
                f"{rows[str(tasks)]['delivered_per_second']:,.0f} delivered/s"
            )
    return {"messages": count, "message_bytes": len(TEXT.encode()), "rounds": rounds, "rows": rows}


if __name__ == "__main__":
    from benchmarks.run import main

    raise SystemExit(main(["--only", "fanout", *sys.argv[1:]]))
