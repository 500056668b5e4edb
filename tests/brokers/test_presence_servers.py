"""Presence end to end: two uvicorn processes on one real redis-server, `websockets` clients.

Both processes agree on who is in a room; when one is killed with SIGKILL,
its members leave the other's `presence()` and a leave diff reaches the
members on the other.
"""

from __future__ import annotations

import json
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

TARGET = "tests.brokers.presence_app:app"
TIMEOUT = 30.0
HEARTBEAT = 1.0  # a loaded machine may stall a live process for half a second


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def two_servers(redis_server: RedisServer) -> Iterator[tuple[AsgiServer, AsgiServer]]:
    env = {"TETHER_REDIS_URL": redis_server.url, "TETHER_PRESENCE_HEARTBEAT": str(HEARTBEAT)}
    with AsgiServer(TARGET, env=env) as a, AsgiServer(TARGET, env=env) as b:
        yield a, b


def client(server: AsgiServer, room: str, nick: str) -> Any:
    return ws_connect(server.url(f"/ws/{room}?nick={nick}"))


async def frame(ws: ClientConnection) -> dict[str, Any]:
    with anyio.fail_after(TIMEOUT):
        return json.loads(await ws.recv())


async def who(ws: ClientConnection) -> dict[str, Any]:
    """What the server says is present; presence diffs that come first are skipped."""
    await ws.send(json.dumps({"who": True}))
    while "present" not in (answer := await frame(ws)):
        pass
    return answer["present"]


async def diff_until(ws: ClientConnection, key: str, kind: str) -> dict[str, Any]:
    """The first presence diff with `key` among its `kind` ("joins" or "leaves") only.

    A diff with `key` in both is a process registering its members again (it
    was late enough to be swept as dead, as on a loaded machine): not a change.
    """
    other = "leaves" if kind == "joins" else "joins"
    while True:
        received = await frame(ws)
        diff = received.get("event") == "presence_diff"
        if diff and key in received[kind] and key not in received[other]:
            return received


async def agree_then_a_killed_ones_member_leaves(a: AsgiServer, b: AsgiServer, room: str) -> None:
    """ada on `a` and bob on `b` see each other in `room`; `b` is SIGKILLed and bob leaves."""
    async with client(a, room, "ada") as ada, client(b, room, "bob") as bob:
        await diff_until(ada, "bob", "joins")  # bob's join reached ada's process
        on_a, on_b = await who(ada), await who(bob)
        assert on_a == on_b
        assert sorted(on_a) == ["ada", "bob"]
        assert on_a["ada"] != on_a["bob"]  # each payload names its own process

        b.process.kill()  # SIGKILL: no leave of its own, no goodbye to Redis
        b.process.wait(timeout=TIMEOUT)
        leave = await diff_until(ada, "bob", "leaves")
        assert leave == {
            "event": "presence_diff",
            "group": f"room:{room}",
            "joins": {},
            "leaves": {"bob": on_a["bob"]},
        }
        assert await who(ada) == {"ada": on_a["ada"]}


async def test_two_processes_agree_and_a_killed_ones_members_leave(
    two_servers: tuple[AsgiServer, AsgiServer], redis_server: RedisServer
) -> None:
    await agree_then_a_killed_ones_member_leaves(*two_servers, "lobby")
    with anyio.fail_after(TIMEOUT):
        with Redis.from_url(redis_server.url) as redis:
            while redis.exists("tether:presence:room:lobby", "tether:presence-keys:room:lobby"):
                await anyio.sleep(0.05)


async def test_connections_churning_on_two_processes_leave_no_presence_behind(
    two_servers: tuple[AsgiServer, AsgiServer], redis_server: RedisServer
) -> None:
    a, b = two_servers

    async def visit(server: AsgiServer, nick: str) -> None:
        async with client(server, "churn", nick) as ws:
            await diff_until(ws, nick, "joins")  # present: its own join came back

    with anyio.fail_after(TIMEOUT * 4):
        for batch in range(20):  # 200 connections, ten at a time, half on each process
            async with anyio.create_task_group() as tg:
                for n in range(10):
                    tg.start_soon(visit, (a, b)[n % 2], f"u{batch}-{n % 4}")
    async with client(a, "churn", "last") as last:
        await diff_until(last, "last", "joins")
        with anyio.fail_after(TIMEOUT):  # the last leaves travel after their closes
            while sorted(await who(last)) != ["last"]:
                await anyio.sleep(0.05)
    with anyio.fail_after(TIMEOUT), Redis.from_url(redis_server.url) as redis:
        while redis.exists("tether:presence:room:churn", "tether:presence-keys:room:churn"):
            await anyio.sleep(0.05)
