"""Messages/second across two processes over one real redis-server: tether and its peers.

Each row publishes `count` copies of the same 57-byte JSON text from this process
(split over `tasks` concurrent publisher tasks) to one subscriber in a child process,
through a throwaway `redis-server` (`tether.testing.redis.RedisServer`). Each peer is
used as its documentation shows:

- tether: `RedisBroker.publish` to a group; the subscriber's `OutboundQueue` hands
  every message to a counting `send` (where a connection would write the frame);
- channels_redis: `RedisPubSubChannelLayer.group_send`; the subscriber's channel is
  in the group and loops on `receive`;
- python-socketio: `AsyncRedisManager(write_only=True).emit(..., room=...)` (the
  "emit from an external process" recipe); the subscriber is an `AsyncServer` whose
  client manager is an `AsyncRedisManager`, with one session in the room, and its
  engine.io `send` (the socket write) counts;
- broadcaster: `Broadcast.publish`; the subscriber iterates `Broadcast.subscribe`.

The subscriber says `ready` once its subscription is made, and the harness then waits
until Redis reports a subscriber on some channel, so nothing is published into the
void. A row's figures: published/s (until the last publish returned) and delivered/s
(until the subscriber counted the last message), the median over `rounds`; a peer that
delivers fewer than `count` within `deadline` seconds reports how many it got.

`python -m benchmarks.redis_peers --messages 20000` runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from benchmarks.fanout import TEXT

GROUP = "room"
READY_TIMEOUT = 30.0

# Each subscriber reads argv: url, count, deadline; prints "ready", then "<got> <monotonic>".
_COUNTING = """
import sys, time, asyncio
url, count, deadline = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
got = 0
done = asyncio.Event()

def counted():
    global got
    got += 1
    if got == count:
        done.set()

async def finish():
    try:
        await asyncio.wait_for(done.wait(), deadline)
    except asyncio.TimeoutError:
        pass
    print(got, time.monotonic(), flush=True)
"""

SUBSCRIBERS = {
    "tether": _COUNTING
    + """
from tether.brokers import OutboundQueue, RedisBroker

async def main():
    async def send(message):
        counted()

    queue = OutboundQueue(send, maxsize=count)
    async with RedisBroker(url) as broker:
        runner = asyncio.create_task(queue.run())
        await broker.subscribe("room", queue)
        print("ready", flush=True)
        await finish()
        queue.close()
        await runner

asyncio.run(main())
""",
    "channels_redis": _COUNTING
    + """
from channels_redis.pubsub import RedisPubSubChannelLayer

async def main():
    layer = RedisPubSubChannelLayer(hosts=[url])
    channel = await layer.new_channel()
    await layer.group_add("room", channel)
    print("ready", flush=True)

    async def receive():
        while True:
            await layer.receive(channel)
            counted()

    receiver = asyncio.create_task(receive())
    await finish()
    receiver.cancel()
    await layer.flush()

asyncio.run(main())
""",
    "socketio": _COUNTING
    + """
import socketio

async def main():
    manager = socketio.AsyncRedisManager(url)
    server = socketio.AsyncServer(client_manager=manager, async_mode="asgi")

    async def send_packet(eio_sid, packet):  # where engine.io writes to the socket
        counted()

    server.eio.send_packet = send_packet
    sid = await manager.connect("eio-1", "/")
    await server.enter_room(sid, "room")
    manager.initialize()  # starts the listener, as the first connection would
    print("ready", flush=True)
    await finish()

asyncio.run(main())
""",
    "broadcaster": _COUNTING
    + """
from broadcaster import Broadcast

async def main():
    async with Broadcast(url) as broadcast:
        async with broadcast.subscribe(channel="room") as subscriber:
            # broadcaster 0.3.1's listener with redis-py 8 sees `subscribed` still False
            # while the first SUBSCRIBE is in flight and parks until the next subscribe
            # call: a second channel wakes it (without this nothing is ever delivered).
            async with broadcast.subscribe(channel="room-wake-up"):
                pass
            print("ready", flush=True)

            async def receive():
                async for event in subscriber:
                    counted()

            receiver = asyncio.create_task(receive())
            await finish()
            receiver.cancel()

asyncio.run(main())
""",
}

TITLES = {
    "tether": "tether RedisBroker",
    "channels_redis": "channels_redis RedisPubSubChannelLayer",
    "socketio": "python-socketio AsyncRedisManager",
    "broadcaster": "broadcaster (Redis backend)",
}
MODULES = {
    "tether": "redis",
    "channels_redis": "channels_redis.pubsub",
    "socketio": "socketio",
    "broadcaster": "broadcaster",
}

Publish = Callable[[], Awaitable[None]]


async def _publisher(peer: str, url: str) -> tuple[Publish, Callable[[], Awaitable[None]]]:
    """The peer's publish of TEXT to the group, and how to close what it opened."""
    if peer == "tether":
        from tether.brokers import RedisBroker

        broker = RedisBroker(url)
        await broker.start()
        return (lambda: broker.publish(GROUP, TEXT)), broker.stop
    if peer == "channels_redis":
        from channels_redis.pubsub import RedisPubSubChannelLayer

        layer = RedisPubSubChannelLayer(hosts=[url])
        message = {"type": "chat.message", "text": TEXT}
        return (lambda: layer.group_send(GROUP, message)), layer.flush
    if peer == "socketio":
        import socketio

        manager = socketio.AsyncRedisManager(url, write_only=True)

        async def close() -> None:
            return None

        return (lambda: manager.emit("chat", TEXT, room=GROUP, namespace="/")), close
    if peer == "broadcaster":
        from broadcaster import Broadcast

        broadcast = Broadcast(url)
        await broadcast.connect()
        return (lambda: broadcast.publish(channel=GROUP, message=TEXT)), broadcast.disconnect
    raise ValueError(f"unknown peer {peer!r}")


async def _subscribed(url: str) -> None:
    """Wait until Redis has a subscriber on some channel (the child's subscription)."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            channels = await client.pubsub_channels()
            if channels and any(count for _, count in await client.pubsub_numsub(*channels)):
                return
            await asyncio.sleep(0.01)
        raise TimeoutError("the subscriber never showed up in PUBSUB NUMSUB")
    finally:
        await client.aclose()


async def one_run(peer: str, url: str, count: int, tasks: int, deadline: float) -> dict[str, Any]:
    """Publish `count` messages over `tasks` tasks to a child subscriber; what arrived, how fast."""
    per_task = count // tasks
    count = per_task * tasks
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SUBSCRIBERS[peer], url, str(count), str(deadline),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        ready = await asyncio.wait_for(process.stdout.readline(), READY_TIMEOUT)
        if ready.strip() != b"ready":
            raise RuntimeError(f"the {peer} subscriber said {ready!r}")
        await _subscribed(url)
        publish, close = await _publisher(peer, url)
        try:

            async def publish_some() -> None:
                for _ in range(per_task):
                    await publish()

            started = time.monotonic()
            await asyncio.gather(*(publish_some() for _ in range(tasks)))
            published = time.monotonic() - started
        finally:
            await close()
        line = await asyncio.wait_for(process.stdout.readline(), deadline + READY_TIMEOUT)
        got, finished = line.split()
        await asyncio.wait_for(process.wait(), READY_TIMEOUT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return {
        "messages": count,
        "delivered": int(got),
        "published_per_second": count / published,
        "delivered_per_second": int(got) / (float(finished) - started),
    }


def available(peers: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The peers whose packages import here, and why the others are skipped."""
    found, skipped = [], {}
    for peer in peers:
        try:
            importlib.import_module(MODULES[peer])
        except ImportError as exc:
            skipped[peer] = f"not installed ({exc})"
            continue
        found.append(peer)
    return found, skipped


def run_redis_peers(
    count: int,
    *,
    peers: Sequence[str] = tuple(SUBSCRIBERS),
    publishers: Sequence[int] = (1, 64),
    rounds: int = 3,
    deadline: float = 60.0,
    runner: Callable[..., Any] = asyncio.run,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every peer, side by side, through one redis-server; the rounds interleave the peers."""
    from tether.testing.redis import RedisServer, find_redis_server

    try:
        executable = find_redis_server()
    except FileNotFoundError as exc:
        return {"skipped": str(exc)}
    found, skipped = available(peers)
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {
        peer: {tasks: [] for tasks in publishers} for peer in found
    }
    errors: dict[str, dict[int, str]] = {p: {} for p in found}
    with RedisServer(executable=executable) as server:
        for round_number in range(1, rounds + 1):
            for tasks in publishers:
                for peer in found:
                    if tasks in errors[peer]:
                        continue
                    try:
                        result = runner(one_run(peer, server.url, count, tasks, deadline))
                    except Exception as exc:  # reported in the table, not fatal to the run
                        errors[peer][tasks] = f"{type(exc).__name__}: {exc}"
                        log(f"  redis peers: {peer}, {tasks} task(s) failed: {exc}")
                        continue
                    runs[peer][tasks].append(result)
                    log(
                        f"redis peers round {round_number}/{rounds}: {peer}, {tasks} task(s): "
                        f"{result['delivered_per_second']:,.0f} delivered/s "
                        f"({result['delivered']:,}/{result['messages']:,})"
                    )
    rows: dict[str, dict[str, Any]] = {}
    for peer in found:
        rows[peer] = {}
        for tasks in publishers:
            if tasks in errors[peer]:
                rows[peer][str(tasks)] = {"error": errors[peer][tasks]}
                continue
            done = runs[peer][tasks]
            rows[peer][str(tasks)] = {
                "published_per_second": statistics.median(r["published_per_second"] for r in done),
                "delivered_per_second": statistics.median(r["delivered_per_second"] for r in done),
                "delivered": min(r["delivered"] for r in done),
                "messages": done[0]["messages"],
                "runs": done,
            }
    return {
        "messages": count,
        "message_bytes": len(TEXT.encode()),
        "rounds": rounds,
        "publishers": list(publishers),
        "rows": rows,
        "skipped": skipped,
    }


def markdown(result: dict[str, Any]) -> str:
    """The result as a table: delivered/s per publisher count, with the ratio tether/peer."""
    if "skipped" in result and "rows" not in result:
        return f"Skipped: {result['skipped']}\n"
    publishers = result["publishers"]
    rows = result["rows"]
    head = "| subscriber's library | " + " | ".join(
        f"{t} publisher task(s): delivered/s (tether / peer)" for t in publishers
    )
    lines = [head + " |", "|---|" + "---:|" * len(publishers)]
    tether = rows.get("tether", {})
    for peer, cells in rows.items():
        out = []
        for tasks in publishers:
            cell = cells[str(tasks)]
            if "error" in cell:
                out.append(f"error: {cell['error']}")
                continue
            text = f"{cell['delivered_per_second']:,.0f}"
            if cell["delivered"] < cell["messages"]:
                text += f" ({cell['delivered']:,}/{cell['messages']:,} arrived)"
            ours = tether.get(str(tasks), {}).get("delivered_per_second")
            if ours and peer != "tether" and cell["delivered_per_second"]:
                text += f" ({ours / cell['delivered_per_second']:.1f}x)"
            out.append(text)
        lines.append(f"| {TITLES[peer]} | " + " | ".join(out) + " |")
    for peer, why in result.get("skipped", {}).items():
        lines.append(f"\n- {TITLES[peer]}: skipped, {why}")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: `python -m benchmarks.redis_peers [--messages N] [--rounds R] ...`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--publishers", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--peers", nargs="+", default=list(SUBSCRIBERS), choices=SUBSCRIBERS)
    parser.add_argument("--deadline", type=float, default=60.0)
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args(argv)
    try:
        import uvloop

        runner: Callable[..., Any] = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = run_redis_peers(
        args.messages,
        peers=args.peers,
        publishers=args.publishers,
        rounds=args.rounds,
        deadline=args.deadline,
        runner=runner,
    )
    print(markdown(result))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(result, file, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
