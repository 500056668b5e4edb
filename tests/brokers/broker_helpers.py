"""Test helpers for the broker tests: fake connections that record what they are sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from tether import WebSocket
from tether.brokers import OutboundQueue

WAIT = 10.0  # seconds: the bound on every wait in these tests


class Client:
    """A fake connection: an `OutboundQueue` whose ASGI `send` records each message."""

    def __init__(self, name: str = "client", *, stuck: bool = False, **queue_options: Any) -> None:
        """`stuck=True` makes a client whose socket accepts nothing until `unstick()`."""
        self.name = name
        self.sent: list[dict[str, Any]] = []
        self.queue = OutboundQueue(self._send, **queue_options)
        self._arrived = anyio.Event()
        self._stuck = stuck
        self._unstuck: anyio.Event | None = None

    async def _send(self, message: dict[str, Any]) -> None:
        if self._stuck:
            self._unstuck = self._unstuck or anyio.Event()
            await self._unstuck.wait()
        self.sent.append(message)
        self._arrived.set()

    def unstick(self) -> None:
        """Let a stuck client's socket accept frames again."""
        self._stuck = False
        if self._unstuck is not None:
            self._unstuck.set()

    @property
    def texts(self) -> list[str]:
        """The text frames received so far."""
        return [m["text"] for m in self.sent if "text" in m]

    async def wait_for(self, count: int, timeout: float = WAIT) -> list[dict[str, Any]]:
        """Wait until `count` messages were sent to the socket, at most `timeout` seconds."""
        with anyio.fail_after(timeout):
            while len(self.sent) < count:
                self._arrived = anyio.Event()
                await self._arrived.wait()
        return self.sent


@asynccontextmanager
async def running(*clients: Client) -> AsyncIterator[None]:
    """Run the clients' outbound queues for the duration of the block, as a server would."""
    async with anyio.create_task_group() as tg:
        for client in clients:
            tg.start_soon(client.queue.run)
        yield
        for client in clients:
            client.queue.close()


async def accepted_websocket(sent: list[dict[str, Any]]) -> WebSocket:
    """A tether `WebSocket` over a fake ASGI connection, accepted; `sent` records the wire."""
    connect = iter([{"type": "websocket.connect"}])

    async def receive() -> dict[str, Any]:
        return next(connect)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    websocket = WebSocket({"type": "websocket", "headers": []}, receive, send)
    await websocket.accept()
    return websocket
