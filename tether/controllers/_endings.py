"""How a session ends: the close code `on_disconnect` gets, and what runs afterwards.

Every way out of a connection comes through here: the client's close (read
by a receive loop), the app's own close, a failed send, an exception from a
hook, and cancellation. `client_closed` and `close_code` decide the code when
a receive loop ends; `failed` decides the close for an exception; `ending`
is what `dispatch` runs, shielded, at the very end.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

import anyio
from starlette.exceptions import HTTPException
from starlette.types import Message

from tether.close_codes import ABNORMAL_CLOSURE, INTERNAL_ERROR, NO_STATUS, POLICY_VIOLATION
from tether.controllers.errors import (
    WebSocketDisconnect,
    WebSocketException,
    close_quietly,
    refuse_with_status,
)
from tether.controllers.requests import CallClosed
from tether.controllers.websocket import WebSocket, WebSocketState
from tether.di.compiler import ParameterError
from tether.di.resolver import Context

if TYPE_CHECKING:
    from tether.controllers.controller import WebSocketController

logger = logging.getLogger("tether")

DISCONNECTED = WebSocketState.DISCONNECTED
# How long to wait for the server's disconnect message once the client is gone.
DRAIN_SECONDS = 1.0
# The same wait while the connection is being cancelled: teardown must not linger.
CANCELLED_DRAIN_SECONDS = 0.1


def client_closed(controller: WebSocketController, message: Message, ctx: Context) -> int:
    """The code for `on_disconnect` when a receive loop read the client's disconnect."""
    websocket = controller.websocket
    websocket.client_state = DISCONNECTED
    code = controller._client_code = message.get("code", NO_STATUS)
    if websocket.close_code is not None:  # we closed first; this is the echo
        return websocket.close_code
    ctx.close_reason = message.get("reason") or ""
    return code


async def close_code(controller: WebSocketController, within: float = DRAIN_SECONDS) -> int:
    """The code for `on_disconnect` once the app has closed, or stopped receiving.

    The app's own close code if it closed; else the client's, as a loop read
    it or, when the loop stopped first (a failed send), as the server reports
    it within `within` seconds (1006 if it does not).
    """
    websocket = controller.websocket
    if websocket.close_code is not None:
        return websocket.close_code
    if websocket.client_state is not DISCONNECTED:
        with anyio.move_on_after(within):
            for _ in range(256):  # skip frames still queued behind the close
                message = await controller._receive()
                if message["type"] == "websocket.disconnect":
                    websocket.client_state = DISCONNECTED
                    return message.get("code", NO_STATUS)
    return controller._client_code


def client_gone(websocket: WebSocket) -> None:
    """A send raised `OSError`: as Starlette's `WebSocket.send` does, the client left."""
    websocket.application_state = DISCONNECTED
    raise WebSocketDisconnect(ABNORMAL_CLOSURE)


async def failed(controller: WebSocketController, exc: BaseException, ctx: Context) -> int | None:
    """Close for an exception from a hook; return on_disconnect's code (None: not accepted)."""
    websocket = ctx.websocket
    name = type(controller).__name__
    if isinstance(exc, CallClosed):  # a call its closing connection left unanswered
        return await close_code(controller) if websocket.accepted else None
    if isinstance(exc, WebSocketDisconnect):  # the client is gone
        if websocket.client_state is DISCONNECTED:
            # A send that failed says 1006; the loop may have read the client's own code.
            client_code = controller._client_code
            code = exc.code if client_code == ABNORMAL_CLOSURE else client_code
        else:
            code = await close_code(controller)
        return code if websocket.accepted else None
    if isinstance(exc, (WebSocketException, HTTPException)):
        controller._error = exc  # thrown into generator dependencies at teardown
    if isinstance(exc, WebSocketException):
        await close_quietly(websocket, exc.code, exc.reason)
        return await close_code(controller) if websocket.accepted else None
    stats = controller._stats
    if isinstance(exc, HTTPException) and websocket.application_state is WebSocketState.CONNECTING:
        logger.info("%s refused a connection: %s", name, exc.detail)
        if stats is not None:
            stats.refuse("http")
        if not await refuse_with_status(websocket, exc.status_code, exc.detail):
            await close_quietly(websocket, POLICY_VIOLATION, exc.detail)
        return None
    if isinstance(exc, ParameterError):
        logger.warning("%s refused a connection: %s", name, exc)
        if stats is not None:
            stats.refuse("parameter")
        await close_quietly(websocket, POLICY_VIOLATION, str(exc))
        return websocket.close_code if websocket.accepted else None
    controller._error = exc
    if stats is not None:
        stats.failed(exc, accepted=websocket.accepted)
    try:
        await controller.on_error(websocket, exc)  # type: ignore[arg-type]
    except Exception:
        logger.exception("%s.on_error raised", name)
    await close_quietly(websocket, INTERNAL_ERROR, "Internal error")
    return await close_code(controller) if websocket.accepted else None


def ending(
    controller: WebSocketController, ctx: Context, code: int | None, stats: object = None
) -> Awaitable[None] | None:
    """What must run once the session is over (on_disconnect, leaving groups, teardown).

    None when nothing must: `dispatch` then enters no shield at all. With
    metrics (`stats`: the connection's `ConnectionStats`), recording how the
    session ended comes last.
    """
    accepted = controller.websocket.accepted
    membership = controller._membership
    if (
        (accepted and (code is None or controller._plan.disconnect))
        or membership is not None
        or stats is not None
    ):
        return _end(controller, ctx, code)
    if ctx.connection is not None and ctx.connection.exits:
        return ctx.connection.aclose(controller._error)  # only teardown: no layer around it
    return None


async def _end(controller: WebSocketController, ctx: Context, code: int | None) -> None:
    try:
        if controller.websocket.accepted:
            if code is None:  # cancelled before the loop could tell
                code = await close_code(controller, CANCELLED_DRAIN_SECONDS)
            if controller._on_disconnect is not None:
                await _disconnected(controller, ctx, code)
        if controller._membership is not None:
            await controller._membership.close()
        if ctx.connection is not None:
            await ctx.connection.aclose(controller._error)
    finally:
        if controller._stats is not None:  # with metrics: how it ended, once all is done
            controller._stats.ended(controller.websocket, code)


async def _disconnected(controller: WebSocketController, ctx: Context, code: int) -> None:
    hook = controller._plan.disconnect
    bound = controller._on_disconnect
    if hook is None or bound is None:
        return
    ctx.close_code = code
    if ctx.close_reason is None:
        ctx.close_reason = controller.websocket.close_reason or ""
    try:
        await controller._call(hook, bound, ctx)
    except Exception as exc:
        if controller._stats is not None:
            controller._stats.meter.error(exc)
        logger.exception("%s.on_disconnect raised", type(controller).__name__)
