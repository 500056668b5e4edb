"""Live data for many clients: one producer, one group, any number of viewers.

The producer is a task of the app's lifespan: it starts with the app, is
cancelled when the app shuts down, and publishes through the broker
directly (`broker.publish(group, ...)`), outside any controller. Each
connection only joins the group; tether delivers every reading to it
through a bounded queue, so a slow viewer never holds up the others.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from itertools import count
from pathlib import Path

import anyio
import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route, WebSocketRoute

import tether
from examples.favicon import favicon_route
from tether import WebSocketController
from tether.brokers import Broker, MemoryBroker

GROUP = "dashboard"


class Reading(msgspec.Struct, tag_field="type", tag="reading"):
    """One measurement: the `seq`-th reading, `value` (0-100) taken at `at` (Unix time)."""

    seq: int
    value: float
    at: float


class Dashboard(WebSocketController):
    """Live readings: every connected client receives every `Reading`."""

    sends = [Reading]
    broker = MemoryBroker()  # RedisBroker(url) would let a producer feed several processes
    outbound_maxsize = 100  # a viewer that falls behind loses its oldest readings

    async def on_connect(self) -> None:
        await self.join(GROUP)


async def produce(broker: Broker, interval: float) -> None:
    """Publish a new `Reading` to the dashboard group every `interval` seconds, until cancelled."""
    value = 50.0
    for seq in count(1):
        value = min(100.0, max(0.0, value + random.uniform(-4.0, 4.0)))
        await broker.publish(GROUP, Reading(seq=seq, value=round(value, 1), at=time.time()))
        await anyio.sleep(interval)


PAGE = (Path(__file__).parent / "page.html").read_bytes()


async def dashboard_page(request: Request) -> HTMLResponse:
    """The page that shows the readings as they arrive."""
    return HTMLResponse(PAGE)


def create_app(interval: float = 0.5) -> Starlette:
    """Build the dashboard app; its producer publishes a reading every `interval` seconds."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with tether.lifespan(app), anyio.create_task_group() as tasks:
            tasks.start_soon(produce, Dashboard.broker, interval)
            yield
            tasks.cancel_scope.cancel()  # shutdown: stop the producer, then leave

    return Starlette(
        routes=[Route("/", dashboard_page), WebSocketRoute("/ws", Dashboard), favicon_route()],
        lifespan=lifespan,
    )


app = create_app()
