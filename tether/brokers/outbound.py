"""`OutboundQueue`: a connection's bounded buffer between publishers and the socket."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import sys
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import anyio
from starlette.websockets import WebSocket, WebSocketState

from tether._running_loop import running_asyncio_loop
from tether.brokers._eager import EAGER_SENDS, Resume, start_send
from tether.close_codes import TRY_AGAIN_LATER

__all__ = ["OutboundQueue"]

OVERFLOWED = "outbound queue full"  # the reason of the close the `"close"` policy sends

OverflowPolicy = Literal["drop_oldest", "close"]
CONNECTED = WebSocketState.CONNECTED


class OutboundQueue:
    """A bounded, ordered queue of ASGI messages, drained into `send` by `run()`.

    It is a broker `Member`: `deliver(message)` never blocks, so a publisher
    never waits for a slow client, and the queue never holds more than
    `maxsize` messages. When it is full:

    - `policy="drop_oldest"` (default) drops the oldest queued message and
      counts it in `dropped`;
    - `policy="close"` stops accepting messages, and `run()` sends
      `{"type": "websocket.close", "code": 1013}` (Try Again Later) itself and
      returns; `overflowed` is then True so the owner can end the connection.

    The owner runs `run()` in its own task group and calls `close()` (or
    cancels) to stop it; no task is ever started from `deliver`. `deliver` and
    `close` may be called from another thread (another event loop); the
    waiting `run()` is woken thread-safely.
    """

    __slots__ = (
        "_close_on_full",
        "_context",
        "_failure",
        "_handoff",
        "_loop",
        "_maxsize",
        "_queue",
        "_send",
        "_stopped",
        "_task",
        "_thread",
        "_waiter",
        "_waiting",
        "_wake_threadsafe",
        "_websocket",
        "closed",
        "dropped",
        "overflowed",
    )

    def __init__(
        self,
        send: Callable[[dict[str, Any]], Awaitable[None]],
        *,
        maxsize: int = 1024,
        policy: OverflowPolicy = "drop_oldest",
        websocket: WebSocket | None = None,
    ) -> None:
        """Create a queue that writes to the ASGI `send` callable.

        `send` may also be Starlette's `WebSocket.send`, which keeps the
        websocket's state machine in step with the close sent on overflow.
        Or pass the raw ASGI `send` with the connection's `websocket`: the
        queue then sends only while its `application_state` is CONNECTED
        (after that it closes, dropping what waits), and sends the 1013
        close through `websocket.close`.
        """
        if maxsize < 1:
            raise ValueError(f"OutboundQueue maxsize must be at least 1, got {maxsize}")
        if policy not in ("drop_oldest", "close"):
            raise ValueError(
                f"OutboundQueue policy must be 'drop_oldest' or 'close', got {policy!r}"
            )
        self._send = send
        self._websocket = websocket
        self._maxsize = maxsize
        self._close_on_full = policy == "close"
        # For "drop_oldest" the deque's own bound does the dropping, atomically.
        self._queue: deque[dict[str, Any]] = deque(maxlen=maxsize)
        # What run() waits on: a bare future under asyncio, else an anyio Event.
        self._waiter: asyncio.Future[None] | anyio.Event | None = None
        self._waiting = False
        self._stopped = False
        self._thread: int | None = None
        # Set by run() under asyncio, where an idle queue starts sends at once.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._context: contextvars.Context | None = None
        self._handoff: Resume | None = None  # a started send that suspended
        self._failure: BaseException | None = None  # what a started send raised
        self._wake_threadsafe: Callable[[], None] | None = None
        self.closed = False
        """True once `close()` was called or `run()` has returned."""
        self.dropped = 0
        """How many messages `drop_oldest` has discarded."""
        self.overflowed = False
        """True once the `close` policy gave up on this client (close code 1013)."""

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def maxsize(self) -> int:
        """The most messages the queue holds at once."""
        return self._maxsize

    def deliver(self, message: dict[str, Any]) -> None:
        """Queue `message` for sending, without blocking; see the class for a full queue.

        Under asyncio, when `run()` is idle and this is its thread, the send
        starts at once instead (see `tether.brokers._eager`): a send that
        completes without suspending costs no task wake-up, and one that
        suspends is finished by `run()`'s task.
        """
        if self._stopped:
            return
        if self._waiting and self._task is not None and threading.get_ident() == self._thread:
            self._send_now(message)
            return
        queue = self._queue
        if len(queue) >= self._maxsize:
            if self._close_on_full:
                self.overflowed = True
                self._stopped = True
                queue.clear()
                self._wake()
                return
            self.dropped += 1
        queue.append(message)
        if self._waiting:
            self._wake()

    def _send_now(self, message: dict[str, Any]) -> None:
        websocket = self._websocket
        if websocket is not None and websocket.application_state is not CONNECTED:
            self._queue.append(message)  # run() wakes, sees the state and closes
            self._wake()
            return
        self._waiting = False  # busy: what is delivered during the send queues behind it
        context = self._context
        try:
            started = start_send(self._send, message, self._loop, self._task, context)
        except (Exception, asyncio.CancelledError) as exc:  # run() raises it, as if it had sent
            self._failure = exc
            _release(self._waiter)
            return
        if started is not None:
            self._handoff = Resume(started, context)
            _release(self._waiter)
            return
        self._waiting = True
        # A delivery from another thread, or close(), may have come in during the send.
        if self._queue or self._stopped:
            self._waiting = False
            _release(self._waiter)

    def close(self) -> None:
        """Stop `run()` after the message it is sending; queued messages are discarded."""
        self.closed = True
        if not self._stopped:
            self._stopped = True
            self._wake()

    async def run(self) -> None:
        """Send queued messages in order until `close()`, overflow or cancellation.

        Run it in the connection's task group. An exception from `send` (the
        client went away) propagates to the owner. On overflow with the
        `"close"` policy, sends the 1013 close message and returns.
        """
        if self._thread is not None:
            raise RuntimeError("OutboundQueue.run() is already running or has finished")
        self._thread = threading.get_ident()
        self._wake_threadsafe = _threadsafe_caller(self._set_event)
        queue, send, websocket = self._queue, self._send, self._websocket
        # Under asyncio a bare future is the cheapest wake-up (about a third of
        # an anyio Event's cost); a fan-out pays it once per member whose send
        # could not start at once (see deliver).
        loop = running_asyncio_loop()
        if loop is not None:
            # No task to step as (EAGER_SENDS off): deliver() queues, and this task sends.
            self._loop, self._task = loop, asyncio.current_task() if EAGER_SENDS else None
            self._context = contextvars.copy_context()
        new_event = type(anyio.Event())  # the backend's class, looked up once
        try:
            while True:
                handoff = self._handoff
                if handoff is not None:  # deliver() started a send that suspended
                    self._handoff = None
                    await handoff
                failure = self._failure
                if failure is not None:  # deliver() started a send that raised
                    self._failure = None
                    raise failure
                while queue and not self._stopped:
                    if websocket is not None and websocket.application_state is not CONNECTED:
                        self.close()  # the connection closed while messages waited
                        break
                    await send(queue.popleft())
                if self._stopped:
                    break
                waiter = self._waiter = loop.create_future() if loop else new_event()
                self._waiting = True
                # A message or close() may have come in since the inner loop ended.
                if queue or self._stopped:
                    self._waiting = False
                    continue
                await (waiter if loop else waiter.wait())
            if self.overflowed:
                await self._close_overflowed()
        finally:
            self._stopped = True
            self.closed = True
            self._waiting = False
            queue.clear()
            self._loop = self._task = self._context = self._failure = None
            if self._handoff is not None:  # cancelled before it could resume the send
                self._handoff.close()
                self._handoff = None

    async def _close_overflowed(self) -> None:
        websocket = self._websocket
        if websocket is None:
            await self._send(
                {"type": "websocket.close", "code": TRY_AGAIN_LATER, "reason": OVERFLOWED}
            )
        elif websocket.application_state is CONNECTED:  # through its state machine
            await websocket.close(TRY_AGAIN_LATER, OVERFLOWED)

    def _wake(self) -> None:
        self._waiting = False
        if threading.get_ident() == self._thread:
            _release(self._waiter)
        elif self._wake_threadsafe is not None:
            self._wake_threadsafe()

    def _set_event(self) -> None:
        _release(self._waiter)


def _release(waiter: asyncio.Future[None] | anyio.Event | None) -> None:
    """Wake the `run()` waiting on `waiter`, if it still waits."""
    if isinstance(waiter, asyncio.Future):
        if not waiter.done():  # done: cancelled along with run()
            waiter.set_result(None)
    elif waiter is not None:
        waiter.set()


def _threadsafe_caller(callback: Callable[[], None]) -> Callable[[], None]:
    """Return a function that runs `callback` soon on the current event loop, from any thread.

    It never blocks the calling thread, and does nothing once the loop is gone.
    """
    trio = sys.modules.get("trio")  # only a trio program has imported it
    if trio is not None:
        try:
            token = trio.lowlevel.current_trio_token()
        except RuntimeError:  # trio is imported, but this is not a trio run
            token = None
        if token is not None:

            def call_trio() -> None:
                with contextlib.suppress(trio.RunFinishedError):
                    token.run_sync_soon(callback)

            return call_trio

    loop = asyncio.get_running_loop()

    def call_asyncio() -> None:
        # RuntimeError: the loop is closed, so nobody is left to wake.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(callback)

    return call_asyncio
