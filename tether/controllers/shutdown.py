"""Graceful shutdown: close open connections with 1001 before the server does.

ASGI servers close WebSocket connections themselves when they stop (uvicorn
with 1012) and tell the application only afterwards. To say "going away"
first, tether chains the server's SIGTERM/SIGINT handler while the app's
lifespan runs: on the signal, a task owned by the lifespan closes every live
session with 1001 (each then runs `on_disconnect` and its teardown as on any
close), waits for them to end (at most `GRACE_SECONDS`), and only then hands
the signal to the server's own handler.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import anyio

from tether._running_loop import running_asyncio_loop
from tether.close_codes import GOING_AWAY
from tether.controllers.errors import close_quietly
from tether.controllers.websocket import WebSocket

GRACE_SECONDS = 5.0
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Sessions:
    """The live sessions of this process: a set add and discard per connection."""

    def __init__(self) -> None:
        self.live: set[WebSocket] = set()
        self.stopping = False

    async def close_all(self, grace: float = GRACE_SECONDS) -> None:
        """Close every live session with 1001, then wait (bounded) until they have ended."""
        self.stopping = True
        for websocket in list(self.live):
            await close_quietly(websocket, GOING_AWAY, "server shutting down")
        with anyio.move_on_after(grace):
            while self.live:
                await anyio.sleep(0.01)


sessions = Sessions()


async def close_sessions_on_signal(task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
    """Run for the app's lifetime: on SIGINT/SIGTERM, close sessions, then pass the signal on.

    Only in the main thread under asyncio (where servers handle signals);
    elsewhere it just waits to be cancelled.
    """
    caught: list[tuple[Any, int, Any]] = []
    arrived = anyio.Event()
    previous = _install(caught, arrived)
    task_status.started()
    try:
        await arrived.wait()
        await sessions.close_all()  # stays stopping: the process is going away
    finally:
        _restore(previous)
        if not caught:  # the app ended without a signal: the next one starts afresh
            sessions.stopping = False
    for handler, sig, frame in caught:
        _hand_over(handler, sig, frame)


def _install(caught: list[tuple[Any, int, Any]], arrived: anyio.Event) -> dict[int, Any] | None:
    if threading.current_thread() is not threading.main_thread():
        return None
    loop = running_asyncio_loop()
    if loop is None:
        return None
    previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}

    def handler(sig: int, frame: Any) -> None:
        caught.append((previous[sig], sig, frame))
        loop.call_soon_threadsafe(arrived.set)

    for sig in _SIGNALS:
        signal.signal(sig, handler)
    return previous


def _restore(previous: dict[int, Any] | None) -> None:
    for sig, old in (previous or {}).items():
        signal.signal(sig, old)


def _hand_over(handler: Any, sig: int, frame: Any) -> None:
    if callable(handler):
        handler(sig, frame)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(sig)  # the default handler is back in place
