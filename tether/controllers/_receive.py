"""The receive loops: one general loop, and one fast path for the common shape.

A loop reads messages until the session is over and returns the close
code for `on_disconnect` (decided in `_endings`: by `client_closed` when the
client left, by `close_code` when the app closed), or returns None at once
when `join()` asked for group delivery and there is no task group yet to run
it in (the caller then opens one and calls the loop again).

`WebSocketController.__init_subclass__` picks the loop for each class:
`receive_fast` where the class has the common shape (one async
`on_receive(data)` and no limits), else `receive_general`; a class with
`metrics` takes `receive_fast_metered` instead of `receive_fast`, so the
fast path without metrics pays nothing for them. All must behave the same
on every input they share; `tests/controllers/test_receive.py` runs the
same scenarios through each.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio
from starlette.types import Message

from tether.close_codes import MESSAGE_TOO_BIG, POLICY_VIOLATION
from tether.controllers._endings import client_closed, client_gone, close_code
from tether.controllers._plan import ControllerPlan
from tether.controllers.codecs import DecodeError, text_frame
from tether.controllers.errors import close_quietly
from tether.controllers.limits import TokenBucket, message_size
from tether.controllers.websocket import WebSocket, WebSocketState
from tether.di.resolver import Context
from tether.frames import encode_frame

if TYPE_CHECKING:
    from tether.controllers.controller import WebSocketController

CONNECTED = WebSocketState.CONNECTED


async def receive_general(
    controller: WebSocketController, ctx: Context, idle: anyio.CancelScope | None
) -> int | None:
    """Every shape of controller: routed or not, limits, idle timeout, concurrent handlers.

    Per message: push the idle deadline back, check size and rate, then call
    the class's handler (`@on` routing, or `on_receive`) in this task, or,
    with `max_concurrency > 1`, in the task group the caller opened, once a
    slot is free. The loop ends when the client leaves or the connection is
    no longer open on the app's side.
    """
    websocket = ctx.websocket
    receive = controller._receive
    plan = controller._plan
    admit = limiter(plan, websocket) if plan.checks_messages else None
    # With metrics: counts what arrives (its send counts replies). Read through the
    # plan: without metrics, `controller._stats` would be a lookup on the class.
    stats = controller._stats if plan.meter is not None else None
    arrived = None
    if stats is not None:
        stats.opened()  # accepted: now it counts as open
        arrived = stats.received
    timeout = plan.idle_timeout
    slots = HandlerSlots(plan.max_concurrency) if plan.max_concurrency > 1 else None
    while not controller._wants_delivery:
        if timeout is not None:
            idle.deadline = anyio.current_time() + timeout
        message = await receive()
        if message["type"] != "websocket.receive":
            if message["type"] == "websocket.disconnect":
                return client_closed(controller, message, ctx)
            continue
        if arrived is not None:
            next(arrived)
        if timeout is not None:
            idle.deadline = math.inf  # a slow handler is not idleness
        if admit is not None and not await admit(message):
            pass  # closed (1009, 1008), or dropped by a lenient rate limit
        elif slots is None:
            await controller._handle(message, ctx)
        else:
            calls = controller._calls
            if calls is not None and calls.waiting and controller._took_reply(message):
                continue  # a reply to `call`: it must not wait for a slot its caller holds
            if not slots.free:  # at the limit, stop reading: back-pressure
                await slots.freed()
            if websocket.application_state is CONNECTED:
                slots.free -= 1
                controller._tasks.start_soon(_in_slot, controller, message, ctx, slots)
        if websocket.application_state is not CONNECTED:
            return await close_code(controller)
    return None


async def receive_fast(
    controller: WebSocketController, ctx: Context, idle: anyio.CancelScope | None
) -> int | None:
    """`receive_general` for the common shape, with nothing between the hook and the wire.

    One async `on_receive(data)`, no limits, no idle timeout, one message at
    a time: per message this is one decode call (none for text to a `str`
    hook), one await of the hook and one ASGI send.
    """
    websocket = ctx.websocket
    receive, send = controller._receive, controller._send
    decode = controller._plan.receive.decode
    text_only = decode is text_frame
    on_receive = controller._on_receive
    connected = CONNECTED
    while not controller._wants_delivery:
        message = await receive()
        kind = message["type"]
        # The rare case first: a short jump keeps the compare specialized (3.11).
        if kind != "websocket.receive":
            if kind == "websocket.disconnect":
                return client_closed(controller, message, ctx)
            continue
        try:  # text frames to a str hook need no decoder call at all
            data = message["text"] if text_only else None
        except KeyError:  # a binary frame: the decoder refuses it
            data = None
        try:
            if data is None:
                data = decode(message)
        except DecodeError as exc:
            await controller.on_decode_error(websocket, exc)
            if websocket.application_state is not connected:
                return await close_code(controller)
            continue
        result = await on_receive(controller, data)
        if websocket.application_state is not connected:
            return await close_code(controller)
        try:
            if type(result) is str:
                await send({"type": "websocket.send", "text": result})
            elif result is not None:
                await send(encode_frame(result))
        except OSError:
            client_gone(websocket)
    return None


async def receive_fast_metered(
    controller: WebSocketController, ctx: Context, idle: anyio.CancelScope | None
) -> int | None:
    """`receive_fast` for a class with `metrics`: the same loop, counting frames in and out.

    The loop iterates over the connection's `ConnectionStats.turns`, so
    counting what arrives costs one iterator step; a turn that brings no
    data frame is marked `skipped`, and a frame that gets no reply steps
    `unanswered` (see `tether.metrics.connection` for why not `+= 1`).
    Replies go to the server's `send` directly, not through the counting
    one. Keep it line for line with `receive_fast`.
    """
    websocket = ctx.websocket
    receive = controller._receive
    stats = controller._stats
    send = stats.raw_send
    unanswered = stats.unanswered
    decode = controller._plan.receive.decode
    text_only = decode is text_frame
    on_receive = controller._on_receive
    connected = CONNECTED
    stats.opened()  # accepted: now it counts as open
    stats.looping = 1
    try:
        for _ in stats.turns:
            if controller._wants_delivery:
                stats.skipped += 1
                return None
            try:
                message = await receive()
            except BaseException:
                stats.skipped += 1
                raise
            kind = message["type"]
            if kind != "websocket.receive":
                stats.skipped += 1
                if kind == "websocket.disconnect":
                    return client_closed(controller, message, ctx)
                continue
            try:
                data = message["text"] if text_only else None
            except KeyError:
                data = None
            try:
                if data is None:
                    data = decode(message)
            except DecodeError as exc:
                next(unanswered)
                await controller.on_decode_error(websocket, exc)
                if websocket.application_state is not connected:
                    return await close_code(controller)
                continue
            try:
                result = await on_receive(controller, data)
            except BaseException:
                next(unanswered)
                raise
            if websocket.application_state is not connected:
                next(unanswered)
                return await close_code(controller)
            if result is not None:
                try:
                    await send(
                        {"type": "websocket.send", "text": result}
                        if type(result) is str
                        else encode_frame(result)
                    )
                except BaseException as exc:
                    next(unanswered)
                    if isinstance(exc, OSError):
                        client_gone(websocket)
                    raise
            else:
                next(unanswered)
        return None  # pragma: no cover - the turns never run out
    finally:
        stats.looping = 0


class HandlerSlots:
    """How many more handlers may start (`max_concurrency`), and a wait for one to end.

    Not an `anyio.Semaphore`: its `acquire` passes through two cancel scopes per
    message even when a slot is free, and the loop's `receive()` is a
    checkpoint already. Only the loop takes slots, so `free` is read and
    decremented without a lock.
    """

    __slots__ = ("_ended", "free")

    def __init__(self, count: int) -> None:
        self.free = count
        self._ended: anyio.Event | None = None

    async def freed(self) -> None:
        """Return once a slot is free."""
        while not self.free:
            ended = self._ended = anyio.Event()
            await ended.wait()

    def release(self) -> None:
        """A handler ended: its slot is free again."""
        self.free += 1
        ended = self._ended
        if ended is not None:
            self._ended = None
            ended.set()


async def _in_slot(
    controller: WebSocketController, message: Message, ctx: Context, slots: HandlerSlots
) -> None:
    try:
        await controller._handle(message, ctx)
    finally:
        slots.release()


def limiter(plan: ControllerPlan, websocket: WebSocket) -> Callable[[Message], Awaitable[bool]]:
    """One connection's size and rate check: False when a message must not be handled."""
    max_size = plan.max_message_size
    limit = plan.rate_limit
    bucket = TokenBucket(limit, anyio.current_time()) if limit is not None else None

    async def admit(message: Message) -> bool:
        if max_size is not None and message_size(message) > max_size:
            await close_quietly(websocket, MESSAGE_TOO_BIG, "message too big")
            return False
        if bucket is not None and not bucket.take(anyio.current_time()):
            if limit.action == "close":
                await close_quietly(websocket, POLICY_VIOLATION, "rate limit exceeded")
            return False
        return True

    return admit
