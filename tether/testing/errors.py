"""What the test client raises, and how it describes what the app sent."""

from __future__ import annotations

from starlette.types import Message
from starlette.websockets import WebSocketDisconnect

from tether.close_codes import NORMAL_CLOSURE

__all__ = [
    "ClientDisconnected",
    "HandshakeRejected",
    "LifespanFailed",
    "ReceiveTimeout",
    "ServerClosed",
]

# A denial body is shown in full up to this many characters: enough for an
# error message that names a parameter, short enough for one test report line.
BODY_SHOWN = 500


class ServerClosed(WebSocketDisconnect):
    """The app closed the connection while the test was receiving (or sending) on it.

    `code` and `reason` are what the app sent in `websocket.close` (1006 and
    `""` when the connection dropped without a close, see
    `WebSocketSession.cancel_app`). It subclasses Starlette's
    `WebSocketDisconnect`, so tests written for Starlette's `TestClient`
    (`pytest.raises(WebSocketDisconnect)`) keep working.
    """

    def __init__(self, code: int, reason: str = "", *, during: str = "") -> None:
        super().__init__(code, reason)
        self.during = during

    def __str__(self) -> str:
        text = f"the server closed the connection with code {self.code}"
        if self.reason:
            text += f" ({self.reason!r})"
        if self.during:
            text += f" while the test was {self.during}"
        return text


class HandshakeRejected(Exception):
    """The app refused the WebSocket handshake; raised when entering `connect()`.

    The message says why, right after the status: the close reason (for a
    tether controller, the `ParameterError` naming the parameter) or the
    denial response's body.

    - `status`: the HTTP status a server would answer: 403 when the app sent
      `websocket.close` before accepting, the response's status when it used the
      `websocket.http.response` denial extension, 500 when the app returned or
      crashed without answering (only seen with `raise_app_exceptions=False`).
    - `headers` and `body`: the denial response's (empty for a plain close);
      `text` is the body decoded as UTF-8.
    - `close_code` and `reason`: what the app's `websocket.close` carried
      (`None` and `""` for a denial response). A real server drops them (the
      browser sees a bare 403), which is why the test client shows them.
    """

    def __init__(
        self,
        status: int,
        *,
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
        close_code: int | None = None,
        reason: str = "",
    ) -> None:
        self.status = status
        self.headers = headers or []
        self.body = body
        self.close_code = close_code
        self.reason = reason
        # The message goes into args too, so repr(), logs and pytest's report show the why.
        super().__init__(self._message())

    @property
    def text(self) -> str:
        """The response body decoded as UTF-8."""
        return self.body.decode("utf-8", errors="replace")

    def _message(self) -> str:
        text = f"the app rejected the WebSocket handshake with HTTP {self.status}"
        if self.close_code is not None:
            sent = f"it sent websocket.close with code {self.close_code} before accepting"
            if self.reason:
                return f"{text}: {self.reason} ({sent})"
            return f"{text} ({sent}, giving no reason)"
        if self.body:
            body = self.text
            text += f": {body if len(body) <= BODY_SHOWN else body[: BODY_SHOWN - 3] + '...'}"
        return text


class ReceiveTimeout(AssertionError):
    """Nothing came from the app within the timeout; the message names what was awaited."""


class ClientDisconnected(OSError):
    """Raised inside the app by `send()` once the test client has disconnected.

    Like uvicorn's exception of the same name: Starlette's `WebSocket` turns an
    `OSError` from `send` into `WebSocketDisconnect(1006)`. If it escapes the
    app, the test client ignores it, as servers do.
    """


class LifespanFailed(RuntimeError):
    """The app's lifespan startup or shutdown failed.

    `phase` is `"startup"` or `"shutdown"`; `message` is the app's
    `lifespan.<phase>.failed` message (or what went wrong, e.g. a timeout).
    The exception the app raised, if any, is chained as `__cause__`.
    """

    def __init__(self, phase: str, message: str) -> None:
        super().__init__(f"lifespan {phase} failed: {message}")
        self.phase = phase
        self.message = message


def short(value: object, limit: int = 80) -> str:
    """`repr(value)`, cut to `limit` characters for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(message: Message) -> str:
    """A message from the app, in words, for an assertion's error."""
    if message["type"] == "websocket.send":
        if message.get("text") is not None:
            return f"a text message {short(message['text'])}"
        return f"a binary message {short(message['bytes'])}"
    if message["type"] == "websocket.close":
        return f"websocket.close with code {message.get('code', NORMAL_CLOSURE)}"
    return short(message)
