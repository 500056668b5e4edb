"""Exceptions a hook may raise, and the one place that closes for them."""

from __future__ import annotations

import logging
import sys
from typing import Any

from starlette.exceptions import WebSocketException
from starlette.websockets import WebSocketDisconnect, WebSocketState

from tether.close_codes import NORMAL_CLOSURE
from tether.controllers.websocket import WebSocket

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

__all__ = ["WebSocketDisconnect", "WebSocketException", "close_quietly", "unwrap"]

logger = logging.getLogger("tether")


def unwrap(exc: BaseException) -> BaseException:
    """The exception that matters inside an `ExceptionGroup`.

    A `WebSocketException` raised in a task group arrives wrapped; without
    unwrapping, its close code would be lost and become 1011.
    """
    while isinstance(exc, BaseExceptionGroup):
        inner = exc.exceptions
        chosen = next(
            (e for e in inner if isinstance(e, (WebSocketException, WebSocketDisconnect))),
            inner[0],
        )
        exc = chosen
    return exc


async def close_quietly(websocket: WebSocket, code: int, reason: str | None = None) -> None:
    """Close (or, before accept, refuse) unless the connection is already gone.

    A server that refuses to send `code` (daphne sends only 1000 and
    3000-4999) gets a normal close (1000) instead, with the same reason.
    """
    if websocket.application_state in (WebSocketState.CONNECTING, WebSocketState.CONNECTED):
        try:
            await websocket.close(code, reason)
        except (WebSocketDisconnect, OSError):
            # The client left first: there is nobody to tell, and no close was sent.
            websocket.close_code = websocket.close_reason = None
        except Exception:
            if code == NORMAL_CLOSURE or not websocket.accepted:
                raise
            logger.warning("the server refused close code %d; closing with 1000", code)
            websocket.close_code = NORMAL_CLOSURE
            try:  # the state machine already counts the connection as closed
                await websocket._send(
                    {"type": "websocket.close", "code": NORMAL_CLOSURE, "reason": reason or ""}
                )
            except (WebSocketDisconnect, OSError):
                websocket.close_code = websocket.close_reason = None


async def refuse_with_status(websocket: WebSocket, status: int, body: Any = b"") -> bool:
    """Refuse the handshake with an HTTP response, where the server can send one.

    Returns False when the server lacks the `websocket.http.response`
    extension (the caller then closes before accept: the server answers 403).
    """
    if "websocket.http.response" not in websocket.scope.get("extensions", {}):
        return False
    from starlette.responses import Response

    content = body if isinstance(body, (bytes, str)) else str(body)
    await websocket.send_denial_response(Response(content, status_code=status))
    return True
