"""Graceful shutdown: close open connections with 1001 before the server does.

ASGI servers close WebSocket connections themselves when they stop (uvicorn
with 1012) and tell the application only afterwards. To say "going away"
first, tether chains the server's SIGTERM/SIGINT handler while the app's
lifespan runs: on the signal, every live session is cancelled, closes with
1001 and runs `on_disconnect` and teardown; then (after at most
`GRACE_SECONDS`) the server's own handler runs.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from typing import Any

import anyio

GOING_AWAY = 1001
GRACE_SECONDS = 5.0
_POLL_SECONDS = 0.01
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Sessions:
    """The cancel scopes of the live sessions in this process."""

    def __init__(self) -> None:
        self.live: set[anyio.CancelScope] = set()
        self.stopping = False

    def stop_all(self) -> None:
        """Cancel every live session; each closes itself with 1001."""
        self.stopping = True
        for scope in list(self.live):
            scope.cancel()


sessions = Sessions()


def install_signal_handlers() -> Any:
    """Chain SIGINT/SIGTERM to close sessions first; returns what `restore` needs.

    Only in the main thread of an asyncio loop (where servers handle signals);
    elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}

    def handler(sig: int, frame: Any) -> None:
        loop.call_soon_threadsafe(_begin, loop, previous[sig], sig, frame)

    for sig in _SIGNALS:
        signal.signal(sig, handler)
    return previous


def restore_signal_handlers(previous: Any) -> None:
    """Put back the handlers `install_signal_handlers` replaced."""
    if previous:
        for sig, old in previous.items():
            signal.signal(sig, old)
    sessions.stopping = False


def _begin(loop: asyncio.AbstractEventLoop, previous: Any, sig: int, frame: Any) -> None:
    sessions.stop_all()
    deadline = loop.time() + GRACE_SECONDS

    def hand_over() -> None:
        # Wait (without a task) until the sessions have closed, then let the server go on.
        if sessions.live and loop.time() < deadline:
            loop.call_later(_POLL_SECONDS, hand_over)
        elif callable(previous):
            previous(sig, frame)
        elif previous == signal.SIG_DFL:
            signal.default_int_handler(sig, frame) if sig == signal.SIGINT else _exit(sig)

    hand_over()


def _exit(sig: int) -> None:
    signal.signal(sig, signal.SIG_DFL)
    signal.raise_signal(sig)
