"""The server the client tests talk to, under uvicorn: requests, calls and a room with history.

`add`, `echo` and `sleep` answer requests (`echo` yields a varying number of times, so
that concurrent replies come back out of order); `join` joins a group and
answers with its `Recovery`; `say` publishes to a group; `ask` calls the
client's `confirm` and answers with what the client said; `close` closes
with the code asked for.
"""

from __future__ import annotations

from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from tether import RequestError, WebSocketController, on
from tether.brokers import GroupHistory, MemoryBroker


class Rpc(WebSocketController):
    encoding = "json"
    max_concurrency = 16
    reply_errors = True
    broker = MemoryBroker(history={"room:*": GroupHistory(size=1000)})

    @on("add")
    async def add(self, data: dict) -> int:
        return data["a"] + data["b"]

    @on("echo")
    async def echo(self, data: dict) -> Any:
        for _ in range(data["n"] % 4):
            await anyio.sleep(0)
        return data["n"]

    @on("sleep")
    async def sleep(self, data: dict) -> None:
        await anyio.sleep(data["seconds"])

    @on("fail")
    async def fail(self, data: dict) -> None:
        raise RequestError("refused", "as asked")

    @on("join")
    async def join_group(self, data: dict) -> dict:
        result = await self.join(data["group"], since=data.get("since"))
        return {
            "recovered": result.recovered,
            "replayed": result.replayed,
            "position": str(result.position) if result.position else None,
        }

    @on("say")
    async def say(self, data: dict) -> None:
        await self.publish(data["group"], {"type": "said", "text": data["text"]})

    @on("ask")
    async def ask(self, data: dict) -> Any:
        return await self.call("confirm", data["q"], timeout=data.get("timeout", 5))

    @on("close")
    async def close(self, data: dict) -> None:
        await self.websocket.close(data["code"])


app = Starlette(routes=[WebSocketRoute("/ws", Rpc)])
