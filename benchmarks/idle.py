"""Idle in-process connections: N ASGI connections to one app, each parked in `receive()`.

Fan-out and footprint both need many connections open at once. Each one here is an
asyncio task running `await app(scope, receive, send)`: its `receive` plays the
connect message, then waits on one event shared by the whole batch (so after accept
every app coroutine sits in `receive()`, as it would behind a server with an idle
client), and plays the disconnect once the batch is released. `send` counts accepts,
closes and data frames.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

Message = dict[str, Any]
ASGIApp = Callable[..., Any]

CONNECT: Message = {"type": "websocket.connect"}
DISCONNECT: Message = {"type": "websocket.disconnect", "code": 1000, "reason": ""}
EXTRA_RECEIVES_ALLOWED = 3


class IdleConnections:
    """A batch of in-process connections to `app`, opened together and closed together.

    `on_frame` (optional) is called for every data frame any connection sends, as
    fan-out uses to count deliveries. `open()` returns once every connection is
    accepted and parked in `receive()`; `close()` disconnects them all and waits
    for every app call to return. Both are bounded by `timeout` seconds.
    """

    def __init__(
        self,
        app: ASGIApp,
        make_scope: Callable[[], dict[str, Any]],
        *,
        on_frame: Callable[[Message], None] | None = None,
    ) -> None:
        self.app = app
        self.make_scope = make_scope
        self.on_frame = on_frame
        self.accepted = 0
        self.closed = 0
        self.parked = 0
        self._expected = 0
        self._all_parked = asyncio.Event()
        self._released = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self, count: int, *, timeout: float = 60.0) -> None:
        """Start `count` connections; return when all are accepted and waiting in `receive()`."""
        self._expected = count
        self._all_parked.clear()
        for _ in range(count):
            client = _Client(self)
            call = _serve(self.app, self.make_scope(), client)
            self._tasks.append(asyncio.create_task(call))
        try:
            await asyncio.wait_for(self._all_parked.wait(), timeout)
        except TimeoutError:
            raise RuntimeError(self._why_not_parked(timeout)) from None
        if self.accepted != count:
            raise RuntimeError(f"{self.accepted} of {count} connections accepted")

    async def close(self, *, timeout: float = 60.0) -> None:
        """Disconnect every connection and wait for the app calls to return; raise on failure."""
        self._released.set()
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5.0)
            raise RuntimeError(f"{len(pending)} connections still open {timeout}s after release")
        failures = [task.exception() for task in done if task.exception() is not None]
        if failures:
            raise RuntimeError(f"{len(failures)} connections failed: {failures[0]!r}")

    def _parked_one(self) -> None:
        self.parked += 1
        if self.parked >= self._expected:
            self._all_parked.set()

    def _why_not_parked(self, timeout: float) -> str:
        ended = [task for task in self._tasks if task.done()]
        errors = [task.exception() for task in ended if not task.cancelled() and task.exception()]
        detail = f"; first error: {errors[0]!r}" if errors else ""
        return (
            f"only {self.parked} of {self._expected} connections parked in receive() after"
            f" {timeout}s ({self.accepted} accepted, {self.closed} closed, {len(ended)} ended)"
            f"{detail}"
        )


async def _serve(app: ASGIApp, scope: dict[str, Any], client: _Client) -> None:
    # A coroutine of our own: an ASGI app may return any awaitable (a tether controller).
    await app(scope, client.receive, client.send)


class _Client:
    """The peer of one idle connection."""

    __slots__ = ("_calls", "_pool")

    def __init__(self, pool: IdleConnections) -> None:
        self._pool = pool
        self._calls = 0

    async def receive(self) -> Message:
        calls = self._calls = self._calls + 1
        if calls == 1:
            return CONNECT
        pool = self._pool
        if not pool._released.is_set():
            pool._parked_one()
            await pool._released.wait()
            return DISCONNECT
        if calls > 2 + EXTRA_RECEIVES_ALLOWED:
            raise RuntimeError("the app kept receiving after the client disconnected")
        return DISCONNECT

    async def send(self, message: Message) -> None:
        kind = message["type"]
        pool = self._pool
        if kind == "websocket.send":
            if pool.on_frame is not None:
                pool.on_frame(message)
        elif kind == "websocket.accept":
            pool.accepted += 1
        elif kind == "websocket.close":
            pool.closed += 1
