"""One WebSocket connection to an app, run on the test's own event loop: `connect()`.

The session is both ends of the connection: the test's client, and the ASGI
server that runs the app, behaving as uvicorn does. After the app sends
`websocket.close` its `receive()` returns `websocket.disconnect`; after the
client disconnects the app's `send()` raises `ClientDisconnected` (an
`OSError`, which Starlette turns into `WebSocketDisconnect(1006)`); an
exception that escapes the app is re-raised in the test.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
from starlette.types import ASGIApp, Message, Scope
from starlette.websockets import WebSocketDisconnect

from tether.close_codes import ABNORMAL_CLOSURE, INTERNAL_ERROR, NORMAL_CLOSURE
from tether.testing.errors import (
    ClientDisconnected,
    HandshakeRejected,
    ReceiveTimeout,
    ServerClosed,
    describe,
)
from tether.testing.scope import HeadersArg, websocket_scope

__all__ = ["WebSocketSession", "connect"]

# What the server side puts in the client's inbox besides the app's own messages:
# a denial response, whole, and the connection dropping without a close frame.
_DENIAL = "testing.denial"
_DROPPED = "testing.dropped"


class WebSocketSession:
    """The test's side of one WebSocket connection; made by `connect()`, not directly.

    Sending never blocks. Every `receive_*` waits at most `timeout` seconds
    (the `connect(..., timeout=)` default, or the call's own `timeout=`) and
    then raises `ReceiveTimeout`; `timeout=0` takes only what has already
    arrived. Once the app has closed the connection every receive raises
    `ServerClosed(code, reason)`.

    Attributes: `scope` (the ASGI scope the app got), `subprotocol` (the one the
    app accepted, or `None`), `accept_headers` (the extra headers of
    `websocket.accept`, as `(bytes, bytes)` pairs), `close_code` and
    `close_reason` (what the app sent in `websocket.close`, set as soon as it
    sent it; `None` while open), `app_exception` (what escaped the app, if any).
    """

    def __init__(
        self, app: ASGIApp, scope: Scope, *, timeout: float, raise_app_exceptions: bool
    ) -> None:
        self.scope = scope
        self.timeout = timeout
        self.subprotocol: str | None = None
        self.accept_headers: list[tuple[bytes, bytes]] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.app_exception: Exception | None = None
        self._app = app
        self._raise_app_exceptions = raise_app_exceptions
        # client -> app and app -> client; unbounded, so neither side blocks on send
        self._to_app, self._app_inbox = anyio.create_memory_object_stream[Message](math.inf)
        self._to_client, self._inbox = anyio.create_memory_object_stream[Message](math.inf)
        # the server's view of the connection
        self._accepted = False
        self._denial: Message | None = None  # a denial response the app is sending
        self._server_closed = False  # the app sent close, finished a denial, or returned
        self._client_close: tuple[int, str] | None = None
        self._app_disconnect: Message | None = None  # what every later app receive() returns
        self._cancelled = False  # the server cancelled the app (cancel_app)
        self._protocol_error: RuntimeError | None = None  # the first, even if the app caught it
        # the client's view
        self._answered = False  # the handshake's answer has been read
        self._rejection: Exception | None = None  # what every later handshake() raises
        self._close_received: Message | None = None
        # Shielded: even when the test is cancelled the app first gets the disconnect
        # and `timeout` seconds to wind down; only then _wait_for_app() cancels it.
        self._app_scope = anyio.CancelScope(shield=True)
        self._app_done = anyio.Event()
        self._hang: AssertionError | None = None
        self._to_app.send_nowait({"type": "websocket.connect"})

    # -- the handshake -------------------------------------------------------

    async def handshake(self, *, timeout: float | None = None) -> None:
        """Wait for the app to accept; raise `HandshakeRejected` if it refused.

        `connect()` does this on entering. With `connect(...,
        wait_for_handshake=False)` the test calls it when it is ready to, or
        lets the first receive do it. Once answered it returns at once (or
        raises the same rejection again). `ReceiveTimeout` if no answer came
        within `timeout`; `ServerClosed(1006)` if the server dropped the
        connection first (`cancel_app`).
        """
        if self._rejection is not None:
            raise self._rejection
        if self._answered:
            return
        limit = self.timeout if timeout is None else timeout
        try:
            answer = await self._next(limit)
        except TimeoutError:
            if limit == 0:
                raise ReceiveTimeout("the app has not answered the handshake yet") from None
            raise ReceiveTimeout(
                f"the app neither accepted nor refused the handshake within {limit}s"
            ) from None
        kind = answer["type"]
        if kind == "websocket.accept":
            self._answered = True
            self.subprotocol = answer.get("subprotocol")
            self.accept_headers = list(answer.get("headers") or [])
            offered = self.scope["subprotocols"]
            if self.subprotocol is not None and self.subprotocol not in offered:
                raise AssertionError(
                    f"the app accepted subprotocol {self.subprotocol!r}, which the client did "
                    f"not offer (it offered {offered}); a browser would fail this connection"
                )
            return
        if kind == "websocket.close":
            code = answer.get("code", NORMAL_CLOSURE)
            self._rejection = HandshakeRejected(
                403, close_code=code, reason=answer.get("reason") or ""
            )
        elif kind == _DENIAL:
            self._rejection = HandshakeRejected(
                answer["status"], headers=answer["headers"], body=bytes(answer["body"])
            )
        else:  # dropped
            self._close_received = {"type": "websocket.close", "code": ABNORMAL_CLOSURE}
            self._rejection = self._server_closed_error("waiting for the handshake")
        raise self._rejection

    # -- sending -------------------------------------------------------------

    async def send(self, message: Message) -> None:
        """Send a raw ASGI message to the app (`websocket.receive` or `websocket.disconnect`).

        Raises `ServerClosed` once the test has received the app's close. Until
        then, what is sent after the app closed is dropped, as on a network.
        """
        if self._client_close is not None:
            raise RuntimeError("the test already closed this connection; open a new one")
        if self._close_received is not None:
            raise self._server_closed_error("sending")
        await self._to_app.send(message)

    async def send_text(self, data: str) -> None:
        """Send a text frame."""
        await self.send({"type": "websocket.receive", "text": data})

    async def send_bytes(self, data: bytes) -> None:
        """Send a binary frame."""
        await self.send({"type": "websocket.receive", "bytes": data})

    async def send_json(self, data: Any, *, mode: Literal["text", "binary"] = "text") -> None:
        """Send `data` as compact JSON, in a text frame (default) or a binary one."""
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        if mode == "text":
            await self.send_text(text)
        else:
            await self.send_bytes(text.encode())

    async def close(
        self, code: int = NORMAL_CLOSURE, reason: str = "", *, wait: bool = True
    ) -> None:
        """Close from the client side, then wait for the app to finish.

        The app receives `websocket.disconnect` with `code` and `reason` (with
        1006 if it had not accepted yet: before the handshake a client can only
        drop the connection). This returns once the app has returned (so its
        `on_disconnect` and teardown have run), or raises `AssertionError` if it
        has not within `timeout`; `wait=False` returns at once, leaving the
        wait to the end of `connect()`. Closing a connection that is already
        closed only waits.
        """
        self._disconnect(code, reason)
        if wait:
            await self._wait_for_app()
            if self._hang is not None:
                raise self._hang

    async def cancel_app(self) -> None:
        """Cancel the app, as a server does at a forced shutdown; wait for it to return.

        The app's cancellation handling runs (what it sends meanwhile still
        reaches the client). If it did not close the connection, the client
        then sees it drop: receives raise `ServerClosed` with 1006, and a
        handshake that had no answer yet raises the same. Raises
        `AssertionError` if the app does not return within `timeout`.
        """
        if not self._app_done.is_set():
            self._cancelled = True
            self._app_scope.cancel()
        await self._wait_for_app()
        if self._hang is not None:
            raise self._hang

    # -- receiving -----------------------------------------------------------

    async def receive(self, *, timeout: float | None = None) -> Message:
        """Return the next raw ASGI message the app sent, including its `websocket.close`.

        After the close has been returned once, raises `ServerClosed`.
        """
        return await self._receive("waiting for a message", timeout, raw=True)

    async def receive_text(self, *, timeout: float | None = None) -> str:
        """Return the next message, which must be a text frame."""
        message = await self._receive("waiting for a text message", timeout)
        if message.get("text") is None:
            raise AssertionError(f"expected a text message, the app sent {describe(message)}")
        return str(message["text"])

    async def receive_bytes(self, *, timeout: float | None = None) -> bytes:
        """Return the next message, which must be a binary frame."""
        message = await self._receive("waiting for a binary message", timeout)
        if message.get("bytes") is None:
            raise AssertionError(f"expected a binary message, the app sent {describe(message)}")
        return bytes(message["bytes"])

    async def receive_json(self, *, timeout: float | None = None) -> Any:
        """Return the next message (text, or UTF-8 bytes) parsed as JSON."""
        message = await self._receive("waiting for a JSON message", timeout)
        payload = message.get("text")
        if payload is None:
            payload = message["bytes"]
        return json.loads(payload)

    async def receive_nothing(self, within: float = 0.1) -> None:
        """Assert that the app sends nothing for `within` seconds.

        Raises `AssertionError` naming the message if one arrives, and
        `ServerClosed` if the app closes the connection meanwhile.
        """
        with anyio.move_on_after(within):
            message = await self._receive(f"expecting no message for {within}s", math.inf)
            raise AssertionError(
                f"expected no message for {within}s, the app sent {describe(message)}"
            )

    async def _receive(self, during: str, timeout: float | None, raw: bool = False) -> Message:
        """Next message from the app; `during` says what the test is doing, for errors."""
        if self._client_close is not None:
            raise RuntimeError(f"the test already closed this connection ({during})")
        if self._close_received is not None:
            raise self._server_closed_error(during)
        limit = self.timeout if timeout is None else timeout
        if not self._answered:
            await self.handshake(timeout=limit)
        try:
            message = await self._next(limit)
        except TimeoutError:
            if limit == 0:
                raise ReceiveTimeout(f"nothing has arrived from the app yet ({during})") from None
            raise ReceiveTimeout(f"timed out after {limit}s {during} from the app") from None
        if message["type"] == _DROPPED:
            self._close_received = {"type": "websocket.close", "code": ABNORMAL_CLOSURE}
            raise self._server_closed_error(during)
        if message["type"] == "websocket.close":
            self._close_received = message
            if not raw:
                raise self._server_closed_error(during)
        return message

    async def _next(self, limit: float) -> Message:
        """The next message in the client's inbox; `TimeoutError` after `limit` seconds."""
        if limit == 0:  # only what has arrived, without letting the app run first
            try:
                return self._inbox.receive_nowait()
            except anyio.WouldBlock:
                raise TimeoutError from None
        with anyio.fail_after(limit):
            return await self._inbox.receive()

    def _server_closed_error(self, during: str) -> ServerClosed:
        assert self._close_received is not None
        code = self._close_received.get("code", NORMAL_CLOSURE)
        return ServerClosed(code, self._close_received.get("reason") or "", during=during)

    # -- the server's side: what the app's receive() and send() do ------------

    async def _app_receive(self) -> Message:
        if self._app_disconnect is not None:
            return self._app_disconnect
        message = await self._app_inbox.receive()
        if message["type"] == "websocket.disconnect":
            self._app_disconnect = message
        return message

    async def _app_send(self, message: Message) -> None:
        kind = message["type"]
        if self._server_closed:
            self._violation(f"the app sent {kind!r} after the connection was closed")
        if self._denial is not None:
            if kind != "websocket.http.response.body":
                self._violation(f"expected 'websocket.http.response.body', the app sent {kind!r}")
            self._denial["body"] += message.get("body", b"")
            if not message.get("more_body", False):
                self._closed_by_app(ABNORMAL_CLOSURE, "")
                self._to_client.send_nowait(self._denial)
            return
        if not self._accepted:
            # As on a server, accepting or refusing works even if the client has left;
            # the app finds that out from its next receive() or send().
            if kind == "websocket.accept":
                self._accepted = True
            elif kind == "websocket.close":
                self._closed_by_app(ABNORMAL_CLOSURE, "")  # refused: no WebSocket existed
            elif kind == "websocket.http.response.start":
                if "websocket.http.response" not in self.scope["extensions"]:
                    self._violation(
                        "the app sent 'websocket.http.response.start', but the server does not "
                        "offer the 'websocket.http.response' extension"
                    )
                self._denial = {
                    "type": _DENIAL,
                    "status": message["status"],
                    "headers": list(message.get("headers", [])),
                    "body": b"",
                }
                return
            else:
                self._violation(
                    "before the handshake the app may only send 'websocket.accept', "
                    f"'websocket.close' or 'websocket.http.response.start', not {kind!r}"
                )
        elif self._client_close is not None:
            raise ClientDisconnected(f"the client disconnected (code {self._client_close[0]})")
        elif kind == "websocket.send":
            if message.get("text") is None and message.get("bytes") is None:
                self._violation("'websocket.send' needs a 'text' or a 'bytes' value")
        elif kind == "websocket.close":
            self._closed_by_app(message.get("code", NORMAL_CLOSURE), message.get("reason") or "")
        else:
            self._violation(
                f"after accepting, the app may only send 'websocket.send' or 'websocket.close', "
                f"not {kind!r}"
            )
        await self._to_client.send(message)

    def _violation(self, text: str) -> None:
        """The app broke the ASGI protocol: raise in the app, and remember it for the test."""
        error = RuntimeError(text)
        if self._protocol_error is None:
            self._protocol_error = error
        raise error

    def _closed_by_app(self, code: int, reason: str) -> None:
        """The app ended the connection: from now on its receive() reports the disconnect."""
        self._server_closed = True
        if self._accepted:
            self.close_code, self.close_reason = code, reason
        self._app_disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
        self._to_app.send_nowait(self._app_disconnect)  # wakes an app blocked in receive()

    def _disconnect(self, code: int, reason: str) -> None:
        """The client ends the connection, unless either side already has."""
        if self._client_close is None and not self._server_closed:
            if not self._accepted:  # no WebSocket yet, so no close frame: the TCP drop
                code, reason = ABNORMAL_CLOSURE, ""
            self._client_close = (code, reason)
            self._to_app.send_nowait(
                {"type": "websocket.disconnect", "code": code, "reason": reason}
            )

    # -- lifecycle -----------------------------------------------------------

    async def _serve(self) -> None:
        """Run the app, then tell the client how the connection ended, as a server would."""
        try:
            with self._app_scope:
                await self._app(self.scope, self._app_receive, self._app_send)
        except ClientDisconnected:
            pass  # our own exception from send(): the client left, as servers treat it
        except WebSocketDisconnect as exc:
            # Starlette raises it from receive_*() once the connection is gone and many
            # endpoints let it escape; servers only log that. Raised earlier, it is a bug.
            if self._app_disconnect is None and self._client_close is None:
                self.app_exception = exc
        except Exception as exc:
            self.app_exception = exc
        finally:
            self._app_done.set()
        if self._server_closed or self._client_close is not None:
            return
        self._server_closed = True
        if self._cancelled:  # the server dropped the connection: no close frame, no response
            self._to_client.send_nowait({"type": _DROPPED})
        elif self._accepted:
            code = INTERNAL_ERROR if self.app_exception is not None else NORMAL_CLOSURE
            self.close_code, self.close_reason = code, ""
            self._to_client.send_nowait({"type": "websocket.close", "code": code, "reason": ""})
        elif self._denial is not None:  # the app returned in the middle of its response
            self._to_client.send_nowait(self._denial)
        else:
            self._to_client.send_nowait(
                {
                    "type": _DENIAL,
                    "status": 500,
                    "headers": [],
                    "body": b"Internal Server Error",
                }
            )

    async def _wait_for_app(self) -> None:
        """Give the app `timeout` seconds to return; cancel it after that."""
        with anyio.move_on_after(self.timeout):
            await self._app_done.wait()
        if not self._app_done.is_set():
            self._app_scope.cancel()
            self._hang = AssertionError(
                f"the app did not return within {self.timeout}s after the connection closed, "
                "so it was cancelled; an app must return once receive() gives "
                "'websocket.disconnect' or send() raises"
            )

    async def _finish(self) -> None:
        """Leaving `connect()`: disconnect if still open and let the app wind down."""
        with anyio.CancelScope(shield=True):
            self._disconnect(NORMAL_CLOSURE, "")
            await self._wait_for_app()

    def _close_streams(self) -> None:
        for stream in (self._to_app, self._app_inbox, self._to_client, self._inbox):
            stream.close()

    def _outcome(self, failure: Exception | None) -> Exception | None:
        """The exception to raise when leaving `connect()`, most telling first."""
        if self._raise_app_exceptions:
            error = self.app_exception or self._protocol_error
            if error is not None:
                if failure is not None and failure is not error:
                    error.__context__ = failure
                return error
        return failure or self._hang


@asynccontextmanager
async def connect(
    app: ASGIApp,
    path: str = "/",
    *,
    headers: HeadersArg | None = None,
    subprotocols: Iterable[str] | None = None,
    cookies: Mapping[str, str] | None = None,
    state: Mapping[str, Any] | None = None,
    timeout: float = 5.0,
    base_url: str = "ws://testserver",
    root_path: str = "",
    client: tuple[str, int] | None = None,
    extensions: Mapping[str, Any] | None = None,
    wait_for_handshake: bool = True,
    raise_app_exceptions: bool = True,
) -> AsyncIterator[WebSocketSession]:
    """Open a WebSocket connection to `app`, run in the calling task's event loop.

    ```python
    async with connect(app, "/ws/room?x=1", headers={"x-agent": "t"},
                       subprotocols=["a", "b"], cookies={"sid": "1"}) as ws:
        await ws.send_text("hi")
        assert await ws.receive_text() == "hi"
    ```

    - `path` may carry a query string, or be a full `ws://host:port/path` URL;
      otherwise it is joined to `base_url` (host and scheme of the scope).
    - `headers` (a mapping or `(name, value)` pairs), `cookies` and
      `subprotocols` become the handshake's headers; `state` is copied into
      `scope["state"]` (pass the lifespan state, or use `AppClient`).
    - `extensions` is the scope's `extensions` (default: the
      `websocket.http.response` denial extension, as uvicorn offers; `{}` for a
      server without it).
    - `timeout` bounds the handshake, every receive (unless the call gives its
      own), and the wait for the app to return after the connection closed.

    Entering waits for the app's answer: `HandshakeRejected` if it refused,
    `ReceiveTimeout` if it did not answer. With `wait_for_handshake=False`
    entering returns at once, so a test can close while the app is still
    deciding; `ws.handshake()` (or the first receive) waits for the answer.
    Leaving disconnects with code 1000 (if still open) and waits for the app
    to return, so its disconnect handling and teardown run; an app that does
    not return in time is cancelled and reported. If the app raised, its
    exception is re-raised here (set `raise_app_exceptions=False` to see only
    what a client would: close code 1011, or HTTP 500 during the handshake);
    so is a breach of the ASGI protocol (a send after the close, say), even
    one the app caught. Two exceptions are not errors, as for servers:
    `ClientDisconnected`, and a `WebSocketDisconnect` escaping after the app
    was told the connection is gone.
    """
    scope = websocket_scope(
        path,
        base_url=base_url,
        root_path=root_path,
        headers=headers,
        subprotocols=list(subprotocols or []),
        cookies=cookies,
        state=state,
        client=client,
        extensions=extensions,
    )
    session = WebSocketSession(
        app, scope, timeout=timeout, raise_app_exceptions=raise_app_exceptions
    )
    # Exceptions are raised only after the task group has exited, so the test
    # sees them as they are rather than wrapped in an ExceptionGroup.
    failure: Exception | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(session._serve)
        try:
            if wait_for_handshake:
                await session.handshake()
            yield session
        except Exception as exc:
            failure = exc
        finally:
            await session._finish()
    session._close_streams()
    outcome = session._outcome(failure)
    if outcome is not None:
        raise outcome
