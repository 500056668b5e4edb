"""`ConnectionStats`: what one metered connection counts, from handshake to teardown.

A controller class with `metrics` set makes one per connection, in
`dispatch`; without `metrics` none exists and nothing here runs. Messages
are counted on this object (read by the registry's collector at scrape
time, so a long-lived connection shows up while it lives), and everything
else is recorded once per connection event, never per message.

Why messages are counted by stepping iterators (`itertools.repeat(None,
n)`: a step decrements a C integer and returns None; the count is `n`
minus its length hint, readable from the scraping thread at any time)
rather than with `count += 1`: past 256, `+= 1` creates a new int object,
about 190 CPU instructions, and the echo fast path costs 6,768
instructions a message. The loop iterates over `turns` (one step per
message, nearly free as a `for` loop); a turn without a data frame is
marked in `skipped` (rare), a frame without a reply steps `unanswered`,
and replies are frames minus unanswered. The general loop steps
`received`, and `send` (every other frame out) steps `sent`.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from itertools import repeat
from operator import length_hint
from typing import TYPE_CHECKING, Any

from starlette.types import Message

from tether.brokers.positions import Recovery

if TYPE_CHECKING:
    from tether.brokers.outbound import OutboundQueue
    from tether.controllers.websocket import WebSocket
    from tether.metrics.prometheus import ControllerMeter

__all__ = ["ConnectionStats"]

_ENDLESS = sys.maxsize  # a count no connection reaches


def _steps(counter: repeat[None]) -> int:
    """How many times `next()` was called on a counter made as `repeat(None, _ENDLESS)`."""
    return _ENDLESS - length_hint(counter)


class ConnectionStats:
    """One connection's counts and its span; the meter of its class sums them.

    `frames_received` and `frames_sent` are the data frames so far (group
    deliveries and the hooks' own sends included in `frames_sent`).
    `refusal` is why the handshake was refused, set where that is decided;
    `queue` is the connection's outbound queue once it joined a group.
    """

    __slots__ = (
        "counted",
        "looping",
        "meter",
        "queue",
        "raw_send",
        "received",
        "refusal",
        "sent",
        "skipped",
        "span",
        "turns",
        "unanswered",
    )

    def __init__(
        self, meter: ControllerMeter, send: Callable[[Message], Awaitable[None]], span: Any = None
    ) -> None:
        self.meter = meter
        self.raw_send = send
        self.received = repeat(None, _ENDLESS)  # stepped by the general loop
        self.sent = repeat(None, _ENDLESS)  # stepped by `send`
        # The fast path's counters, see the module docstring.
        self.turns = repeat(None, _ENDLESS)
        self.unanswered = repeat(None, _ENDLESS)
        self.skipped = 0
        self.looping = 0  # 1 while the fast path runs: its current turn is still waiting
        self.refusal: str | None = None
        self.queue: OutboundQueue | None = None
        self.span = span
        self.counted = False  # whether the accept was counted (connections, open)

    def send(self, message: Message) -> Awaitable[None]:
        """The ASGI `send`, counting data frames: the connection's `send`, with metrics.

        A plain function handing back the real send's awaitable, so counting
        adds no coroutine to the frame's way out. The loops count what they
        receive, and the fast path its replies, inline.
        """
        if message["type"] == "websocket.send":
            next(self.sent)
        return self.raw_send(message)

    @property
    def frames_received(self) -> int:
        """Data frames received so far."""
        return _steps(self.received) + self._fast_frames()

    @property
    def frames_sent(self) -> int:
        """Data frames sent so far: replies, group messages, the hooks' own sends."""
        return _steps(self.sent) + self._fast_frames() - _steps(self.unanswered)

    def _fast_frames(self) -> int:
        return max(0, _steps(self.turns) - self.skipped - self.looping)

    def refuse(self, reason: str) -> None:
        """Say why the handshake is refused (the first reason given wins)."""
        if self.refusal is None:
            self.refusal = reason

    def opened(self) -> None:
        """The handshake was accepted."""
        if not self.counted:
            self.counted = True
            self.meter.opened(self)

    def failed(self, exc: BaseException, *, accepted: bool) -> None:
        """A hook raised `exc` (not a disconnect, not a `WebSocketException`): a handler error."""
        self.meter.error(exc)
        if not accepted:
            self.refuse("error")
        if self.span is not None:
            self.meter.tracing.failed(self.span, exc)

    def joined(self, since: object, recovery: Recovery) -> None:
        """A `join` returned; with `since`, it was a recovery with this outcome."""
        self.meter.joined(since, recovery)

    def ended(self, websocket: WebSocket, code: int | None) -> None:
        """The session is over (after on_disconnect and teardown): record how it ended."""
        if websocket.accepted:
            self.opened()  # accepted and closed within on_connect: still a connection
        self.meter.ended(self, websocket, code)
