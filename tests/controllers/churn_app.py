"""A Starlette app served by uvicorn in test_churn.

`/ws` is a controller with a generator dependency, a Query and a Header;
`/stats` reports the server process's own figures: running asyncio tasks,
RSS, and how often the dependency was set up and torn down.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Iterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

import tether
from tether import Header, Provide, Query, WebSocketController

BUFFER_BYTES = int(os.environ.get("CHURN_BUFFER_BYTES", 16 * 1024))
COUNTS = {"setups": 0, "teardowns": 0, "connects": 0, "disconnects": 0}


def session() -> Iterator[bytearray]:
    """A per-connection resource with some weight, so a leak would show in RSS."""
    COUNTS["setups"] += 1
    try:
        yield bytearray(BUFFER_BYTES)
    finally:
        COUNTS["teardowns"] += 1


class Churn(WebSocketController):
    encoding = "text"

    async def on_connect(
        self,
        name: str = Query(),
        agent: str = Header(alias="x-agent"),
        buffer: bytearray = Provide(session),
    ) -> None:
        COUNTS["connects"] += 1

    async def on_receive(self, data: str, name: str = Query()) -> str:
        return f"{name}:{data}"

    async def on_disconnect(self, close_code: int) -> None:
        COUNTS["disconnects"] += 1


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def stats(request: Request) -> JSONResponse:
    gc.collect()
    objects = gc.get_objects()
    return JSONResponse(
        {
            "tasks": len(asyncio.all_tasks()),
            "rss": rss_bytes(),
            "objects": len(objects),
            "controllers": sum(isinstance(o, WebSocketController) for o in objects),
            **COUNTS,
        }
    )


app = Starlette(
    routes=[WebSocketRoute("/ws", Churn), Route("/stats", stats)], lifespan=tether.lifespan
)
