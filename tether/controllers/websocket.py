"""tether's `WebSocket`: Starlette's, remembering how the connection was closed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.websockets import WebSocket as StarletteWebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from tether.close_codes import NORMAL_CLOSURE
from tether.controllers._shield import close_frame_shield

__all__ = ["WebSocket", "WebSocketDisconnect", "WebSocketState", "truncate_reason"]

CONNECTING = WebSocketState.CONNECTING
CONNECTED = WebSocketState.CONNECTED

MAX_REASON_BYTES = 123  # RFC 6455: a close frame's payload is at most 125 bytes
# How long sending the close frame holds off cancellation.
CLOSE_SEND_SECONDS = 1.0


def truncate_reason(reason: str | None) -> str | None:
    """Cut a close reason to the protocol's 123-byte limit, on a character boundary."""
    if reason is None:
        return None
    encoded = reason.encode()
    if len(encoded) <= MAX_REASON_BYTES:
        return reason
    return encoded[:MAX_REASON_BYTES].decode("utf-8", "ignore")


class WebSocket(StarletteWebSocket):
    """Starlette's `WebSocket`, plus what tether needs to report a close.

    The same state machine and methods (`accept`, `receive_*`, `send_*`,
    `iter_*`, `close`, `url_for`, `client_state`, `application_state`);
    additionally:

    - `accepted`: whether the handshake was accepted;
    - `subprotocol`: the subprotocol negotiated from the controller's
      `subprotocols` (accepted with it), or the one passed to `accept`;
    - `close_code` / `close_reason`: what the application closed with, once
      it has (reasons longer than 123 bytes are cut to fit the protocol).
    """

    accepted = False
    subprotocol: str | None = None
    close_code: int | None = None
    close_reason: str | None = None

    # Whether `accept` may talk to the ASGI channel itself (a subclass that
    # overrides `receive` or `send` gets them called, as in Starlette).
    _direct_accept = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._direct_accept = (
            cls.receive is StarletteWebSocket.receive and cls.send is StarletteWebSocket.send
        )

    async def accept(
        self,
        subprotocol: str | None = None,
        headers: Iterable[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """Accept the handshake; by default with the negotiated subprotocol."""
        if subprotocol is None:
            subprotocol = self.subprotocol
        if self._direct_accept and self.application_state is CONNECTING:
            # Starlette's accept, receive and send in this state, as one step:
            # every connection comes through here, and each layer is a coroutine.
            if self.client_state is CONNECTING:
                kind = (await self._receive())["type"]
                if kind != "websocket.connect":
                    expected = 'Expected ASGI message "websocket.connect"'
                    raise RuntimeError(f"{expected}, but got {kind!r}")
                self.client_state = CONNECTED
            self.application_state = CONNECTED
            await self._send(
                {"type": "websocket.accept", "subprotocol": subprotocol, "headers": headers or []}
            )
        else:
            await super().accept(subprotocol, headers)
        self.accepted = True
        self.subprotocol = subprotocol

    async def close(self, code: int = NORMAL_CLOSURE, reason: str | None = None) -> None:
        """Close with `code`; before accept, the server refuses the handshake (403)."""
        reason = truncate_reason(reason)
        self.close_code, self.close_reason = code, reason
        # Starlette counts the connection closed before the frame is sent. Cancelled in
        # between (a sibling handler failing as the session ends cancels its task group),
        # the app would think it closed while the client never hears of it.
        with close_frame_shield(CLOSE_SEND_SECONDS):
            await super().close(code, reason)

    @property
    def is_open(self) -> bool:
        """Whether the application may still send on this connection."""
        return self.application_state is WebSocketState.CONNECTED
