"""Presence in the metrics: distinct keys and connections per group, read at scrape time."""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tether import Query, WebSocket, WebSocketController
from tether.brokers import Broker, MemoryBroker, RedisBroker
from tether.metrics import TetherMetrics
from tether.testing import connect
from tether.testing.redis import RedisServer

pytestmark = pytest.mark.anyio


class Present(WebSocketController):
    """Present in `room` under `name`; "leave" leaves it, any other text joins `<room>-plain`."""

    encoding = "text"

    async def on_connect(
        self, websocket: WebSocket, room: str = Query(), name: str = Query()
    ) -> None:
        await websocket.accept()
        await self.join(room, presence={"name": name}, presence_key=name)
        await websocket.send_text("present")

    async def on_receive(self, data: str, room: str = Query()) -> str:
        if data == "leave":
            await self.leave(room)
        else:
            await self.join(f"{room}-plain")
        return data


def present_class(broker: Broker, registry: CollectorRegistry, group_sizes: bool = True) -> type:
    metrics = TetherMetrics(registry=registry, group_sizes=group_sizes)
    return type("Present", (Present,), {"broker": broker, "metrics": metrics})


def presence(registry: CollectorRegistry, broker: str, group: str) -> tuple[Any, Any]:
    labels = {"broker": broker, "group": group}
    return (
        registry.get_sample_value("tether_presence_keys", labels),
        registry.get_sample_value("tether_presence_connections", labels),
    )


async def open_all(stack: AsyncExitStack, cls: type, room: str, *users: str) -> list[Any]:
    sessions = []
    for user in users:
        ws = await stack.enter_async_context(connect(cls, f"/?room={room}&name={user}"))
        assert await ws.receive_text() == "present"
        sessions.append(ws)
    return sessions


async def test_memory_broker_presence_is_counted_per_group_by_key_and_connection() -> None:
    registry = CollectorRegistry()
    cls = present_class(MemoryBroker(), registry)
    async with AsyncExitStack() as stack:
        # ada on a laptop and a phone is one key with two connections.
        ada_laptop, _, bob = await open_all(stack, cls, "lobby", "ada", "ada", "bob")
        await open_all(stack, cls, "attic", "cy")
        assert presence(registry, "MemoryBroker", "lobby") == (2, 3)
        assert presence(registry, "MemoryBroker", "attic") == (1, 1)

        # A plain join is a member of a group, but not present in it.
        await bob.send_text("plain")
        assert await bob.receive_text() == "plain"
        group_size = {"broker": "MemoryBroker", "group": "lobby-plain"}
        assert registry.get_sample_value("tether_group_size", group_size) == 1
        assert presence(registry, "MemoryBroker", "lobby-plain") == (None, None)

        await ada_laptop.send_text("leave")
        assert await ada_laptop.receive_text() == "leave"
        assert presence(registry, "MemoryBroker", "lobby") == (2, 2)
        await bob.close()
        assert presence(registry, "MemoryBroker", "lobby") == (1, 1)
    # Everyone gone: the group has no series left.
    assert presence(registry, "MemoryBroker", "lobby") == (None, None)
    assert presence(registry, "MemoryBroker", "attic") == (None, None)


async def test_presence_series_are_per_group_so_they_come_only_with_group_sizes() -> None:
    registry = CollectorRegistry()
    cls = present_class(MemoryBroker(), registry, group_sizes=False)
    async with connect(cls, "/?room=lobby&name=ada") as ws:
        assert await ws.receive_text() == "present"
        assert presence(registry, "MemoryBroker", "lobby") == (None, None)
        assert registry.get_sample_value("tether_groups", {"broker": "MemoryBroker"}) == 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # redis.asyncio is asyncio-only
async def test_redis_broker_counts_the_presence_of_its_own_process(
    redis_server: RedisServer,
) -> None:
    # Two brokers on one Redis stand for two processes, each with its own registry.
    room = f"room-{uuid.uuid4().hex[:8]}"
    here, there = RedisBroker(redis_server.url), RedisBroker(redis_server.url)
    here_registry, there_registry = CollectorRegistry(), CollectorRegistry()
    here_cls = present_class(here, here_registry)
    there_cls = present_class(there, there_registry)
    async with here, there, AsyncExitStack() as stack:
        await open_all(stack, here_cls, room, "ada", "ada")
        (bob,) = await open_all(stack, there_cls, room, "bob")
        assert presence(here_registry, "RedisBroker", room) == (1, 2)
        assert presence(there_registry, "RedisBroker", room) == (1, 1)
        # The group's whole presence is in Redis, which a scrape does not ask.
        assert await here.presence_count(room) == 2

        await bob.send_text("leave")
        assert await bob.receive_text() == "leave"
        assert presence(there_registry, "RedisBroker", room) == (None, None)
        assert presence(here_registry, "RedisBroker", room) == (1, 2)
    assert presence(here_registry, "RedisBroker", room) == (None, None)
