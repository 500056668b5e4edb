"""Durable groups end to end: uvicorn processes on one real redis-server, `websockets` clients.

A client that drops and comes back with its last position gets what it
missed, in order and once; a Redis restart loses nothing when Redis
persists its data, and is announced as a new epoch when it does not.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from asgi_server import AsgiServer
from redis import Redis
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from tether.testing.redis import RedisServer

pytestmark = pytest.mark.anyio

TARGET = "tests.brokers.durable_app:app"
TIMEOUT = 30.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def kill(redis: RedisServer) -> None:
    """SIGKILL the redis-server, as a crash would: no shutdown save, no goodbye to clients."""
    with Redis.from_url(redis.url) as client:
        pid = int(client.info("server")["process_id"])
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + TIMEOUT
    while redis.running and time.monotonic() < deadline:
        time.sleep(0.02)
    redis.stop()  # forget the dead process; start() brings one up on the same port


def serve(redis: RedisServer) -> AsgiServer:
    return AsgiServer(TARGET, env={"TETHER_REDIS_URL": redis.url})


@pytest.fixture
def two_servers(redis_server: RedisServer) -> Iterator[tuple[AsgiServer, AsgiServer]]:
    with serve(redis_server) as a, serve(redis_server) as b:
        yield a, b


def client(server: AsgiServer, room: str, since: str | None = None) -> Any:
    path = f"/ws/{room}" + (f"?since={since}" if since else "")
    return ws_connect(server.url(path), max_queue=None)


async def receive(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    """The next `count` frames, within TIMEOUT."""
    with anyio.fail_after(TIMEOUT):
        return [json.loads(await ws.recv()) for _ in range(count)]


async def joined(ws: ClientConnection) -> dict[str, Any]:
    [answer] = await receive(ws, 1)
    assert answer["type"] == "recovery"
    return answer


@pytest.mark.parametrize("away", [1.0, 10.0])
async def test_a_client_back_after_a_drop_gets_the_thousand_it_missed_then_live_ones(
    two_servers: tuple[AsgiServer, AsgiServer], away: float
) -> None:
    a, b = two_servers
    room = f"drop{int(away)}"
    async with client(b, room) as talker:
        await joined(talker)
        async with client(a, room) as ada:
            first = await joined(ada)
            await talker.send(json.dumps({"n": -1}))
            [seen] = await receive(ada, 1)
            since = f"{seen['epoch']}:{seen['offset']}"
            assert first["position"] == f"{seen['epoch']}:{seen['offset'] - 1}"
        dropped_at = anyio.current_time()

        for n in range(1000):  # published by the other process while ada is away
            await talker.send(json.dumps({"n": n}))
        echoes = await receive(talker, 1001)
        assert echoes[-1]["data"] == {"n": 999}
        await anyio.sleep(max(0.0, away - (anyio.current_time() - dropped_at)))

        async with client(a, room, since=since) as ada:
            frames = await receive(ada, 1001)  # the answer and the replay, in some order
            [answer] = [f for f in frames if f.get("type") == "recovery"]
            replay = [f for f in frames if f.get("type") != "recovery"]
            await talker.send(json.dumps({"n": "live"}))
            [live] = await receive(ada, 1)
    assert (answer["recovered"], answer["replayed"]) == (True, 1000)
    assert [f["data"]["n"] for f in replay] == list(range(1000))
    assert [f["offset"] for f in replay] == list(range(seen["offset"] + 1, seen["offset"] + 1001))
    assert (live["data"], live["offset"]) == ({"n": "live"}, seen["offset"] + 1001)


Outcome = tuple[list[dict[str, Any]], list[dict[str, Any]], str, dict[str, Any]]


async def talk_through_an_outage(redis: RedisServer) -> Outcome:
    """Two processes, a listener and a talker on each; Redis is killed and comes back
    while both talkers publish. Returns what each listener got, a position from
    before the outage, and the answer to a client recovering from it afterwards."""
    per_phase = 30
    with serve(redis) as a, serve(redis) as b:
        async with (
            client(a, "outage") as listen_a,
            client(b, "outage") as listen_b,
            client(a, "outage") as talk_a,
            client(b, "outage") as talk_b,
        ):
            for ws in (listen_a, listen_b, talk_a, talk_b):
                await joined(ws)

            async def phase(number: int) -> None:
                for n in range(number * per_phase, (number + 1) * per_phase):
                    await talk_a.send(json.dumps({"from": "a", "n": n}))
                    await talk_b.send(json.dumps({"from": "b", "n": n}))

            await phase(0)
            before = await receive(listen_a, 2 * per_phase)
            kill(redis)
            await phase(1)  # the servers keep these in their outboxes
            await anyio.sleep(0.3)
            redis.start()
            await phase(2)
            got_a = before + await receive(listen_a, 4 * per_phase)
            got_b = await receive(listen_b, 6 * per_phase)
            position = f"{before[-1]['epoch']}:{before[-1]['offset']}"
            async with client(a, "outage", since=position) as late:
                answer = await joined(late)
    return got_a, got_b, position, answer


async def test_with_persistence_every_member_gets_every_message_in_order_through_an_outage() -> (
    None
):
    with RedisServer(persistent=True) as redis:
        got_a, got_b, _, answer = await talk_through_an_outage(redis)
    for got in (got_a, got_b):
        assert [f["offset"] for f in got] == list(range(1, 181))
        assert len({f["epoch"] for f in got}) == 1
        for who in ("a", "b"):
            assert [f["data"]["n"] for f in got if f["data"]["from"] == who] == list(range(90))
    assert answer["recovered"] is True


async def test_without_persistence_an_outage_is_told_as_a_new_epoch() -> None:
    with RedisServer() as redis:
        got_a, got_b, position, answer = await talk_through_an_outage(redis)
    old_epoch = position.split(":")[0]
    for got in (got_a, got_b):
        assert got[0]["epoch"] == old_epoch and got[-1]["epoch"] != old_epoch
    assert (answer["recovered"], answer["reason"]) == (False, "epoch")
    assert answer["position"].split(":")[0] == got_a[-1]["epoch"]
