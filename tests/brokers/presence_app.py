"""A room with presence behind a RedisBroker, served by uvicorn in test_presence_servers.

`/ws/{room}?nick=NAME` makes the connection present in `room:{room}` under
`NAME` and sends it the room's presence diffs; `{"who": true}` answers
`{"present": ...}`, what `presence()` says on this process. With
`TETHER_REDIS_CLUSTER=1` the broker is a `RedisClusterBroker` on that URL.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

import tether
from tether import Query, WebSocket, WebSocketController
from tether.brokers import RedisBroker, RedisClusterBroker


class Room(WebSocketController):
    encoding = "json"
    broker = (RedisClusterBroker if os.environ.get("TETHER_REDIS_CLUSTER") else RedisBroker)(
        os.environ["TETHER_REDIS_URL"],
        presence_heartbeat=float(os.environ.get("TETHER_PRESENCE_HEARTBEAT", "5")),
    )

    async def on_connect(self, websocket: WebSocket, room: str, nick: str = Query()) -> None:
        await websocket.accept()
        await self.join(
            f"room:{room}", presence={"pid": os.getpid()}, presence_key=nick, presence_events=True
        )

    async def on_receive(self, data: dict, room: str) -> dict:
        return {"present": await self.presence(f"room:{room}")}


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with tether.lifespan(app), Room.broker:
        yield


app = Starlette(routes=[WebSocketRoute("/ws/{room}", Room)], lifespan=lifespan)
