"""A room with history behind a RedisBroker, served by uvicorn in test_durable_servers.

`/ws/{room}?since=<epoch>:<offset>` joins `room:{room}`, recovering what was
missed after `since`, and first sends `{"type": "recovery", ...}` with the
answer; every JSON message a client sends is published to the room.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

import tether
from tether import Query, WebSocket, WebSocketController
from tether.brokers import GroupHistory, RedisBroker


class Room(WebSocketController):
    encoding = "json"
    outbound_maxsize = 4096
    broker = RedisBroker(
        os.environ["TETHER_REDIS_URL"],
        history={"room:*": GroupHistory(size=5000, ttl=600)},
        reconnect_delay=0.05,
        max_reconnect_delay=0.2,
    )

    async def on_connect(
        self, websocket: WebSocket, room: str, since: str | None = Query(None)
    ) -> None:
        await websocket.accept()
        result = await self.join(f"room:{room}", since=since)
        await websocket.send_json(
            {
                "type": "recovery",
                "recovered": result.recovered,
                "reason": result.reason,
                "replayed": result.replayed,
                "position": str(result.position) if result.position else None,
            }
        )

    async def on_receive(self, data: dict, room: str) -> None:
        await self.publish(f"room:{room}", data)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with tether.lifespan(app), Room.broker:
        yield


app = Starlette(routes=[WebSocketRoute("/ws/{room}", Room)], lifespan=lifespan)
