"""`Client`: a tether connection from Python that reconnects, on the `websockets` package.

One background task per client keeps a connection open: it connects, reads
frames, and when the connection drops waits (`Backoff`) and connects again,
re-joining the groups joined with `join` from their last positions. Replies
to `request` are matched by id; frames the server sends are handed to the
handlers registered with `on` and `on_call`, or else to `async for`.
The wire format is docs/protocol.md's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from inspect import isawaitable
from types import TracebackType
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette import status
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from tether.client.backoff import Backoff
from tether.close_codes import (
    INVALID_PAYLOAD,
    MESSAGE_TOO_BIG,
    NORMAL_CLOSURE,
    POLICY_VIOLATION,
    UNSUPPORTED_DATA,
)
from tether.controllers.requests import (
    BAD_REQUEST,
    HANDLER_RAISED,
    UNKNOWN_EVENT,
    CallError,
    CallTimeout,
    RequestError,
    error_reply,
    ok_reply,
    valid_id,
)
from tether.frames import dumps, loads

__all__ = ["Client", "ClientClosed"]

logger = logging.getLogger("tether.client")

Handler = TypeVar("Handler", bound=Callable[..., Any])

# Close codes after which connecting again cannot help: the server meant it
# (1000), or would refuse the same client again (protocol, data, policy, size;
# 4000-4999 are the application's own). Anything else is retried.
FINAL_CLOSE_CODES = frozenset(
    {
        NORMAL_CLOSURE,
        status.WS_1002_PROTOCOL_ERROR,
        UNSUPPORTED_DATA,
        INVALID_PAYLOAD,
        POLICY_VIOLATION,
        MESSAGE_TOO_BIG,
        status.WS_1010_MANDATORY_EXT,
    }
)


class ClientClosed(ConnectionError):
    """The client is closed, or gave up reconnecting (`reason` says which)."""


def is_final(code: int | None) -> bool:
    """Whether a close code from the server means: do not reconnect."""
    return code is not None and (code in FINAL_CLOSE_CODES or 4000 <= code <= 4999)


class Client:
    """A connection to a tether server that reconnects, for `async with`.

    ```python
    async with Client("ws://127.0.0.1:8000/ws/lobby") as client:
        total = await client.request("add", {"a": 1, "b": 2}, timeout=5)
        await client.join("room:lobby")
        async for message in client:
            ...
    ```

    Entering connects (retrying as `backoff` says) and raises
    `ClientClosed` if no attempt succeeds. While it is open, a dropped
    connection is connected again after `backoff.delay(n)` seconds, unless
    the server closed with a final code (1000, 1002, 1003, 1007-1010,
    4000-4999) or refused the handshake with a 4xx status; after
    `backoff.max_attempts` failures in a row the client gives up. Leaving
    the block closes with 1000 and ends everything the client runs.

    Arguments: `url` may be a function of the client, called for each
    attempt (to add a `since` query parameter, a fresh token); `event_key`
    and `request_key` are the server's (`"type"`, `"ref"`); `reconnect=False` makes any drop final;
    `max_queue` bounds the frames waiting for `async for` (at the bound,
    reading stops: back-pressure); `headers`, `subprotocols` and
    `open_timeout` go to the handshake.
    """

    def __init__(
        self,
        url: str | Callable[[Client], str],
        *,
        event_key: str = "type",
        request_key: str = "ref",
        reconnect: bool = True,
        backoff: Backoff | None = None,
        open_timeout: float = 10.0,
        max_queue: int = 1024,
        headers: Mapping[str, str] | None = None,
        subprotocols: Sequence[str] | None = None,
        max_size: int | None = 2**20,
    ) -> None:
        self.url = url
        self.event_key = event_key
        self.request_key = request_key
        self.reconnect = reconnect
        self.backoff = backoff or Backoff()
        self.open_timeout = open_timeout
        self.max_queue = max_queue
        self.headers = dict(headers or {})
        self.subprotocols = list(subprotocols) if subprotocols else None
        self.max_size = max_size
        self.positions: dict[str, str] = {}
        """The last position (`"<epoch>:<offset>"`) seen per group with history."""
        self.groups: dict[str, Any] = {}
        """The groups joined with `join` (and re-joined after each reconnect)."""
        self.connects = 0
        """How many connections the client has opened (2 and up: reconnects)."""
        self.close_code: int | None = None
        """The server's close code of the last connection that ended."""
        self._handlers: dict[str, Callable[..., Any]] = {}
        self._call_handlers: dict[str, Callable[..., Any]] = {}
        self._pending: dict[int, tuple[anyio.Event, list[Any]]] = {}
        self._next_id = 0
        self._websocket: ClientConnection | None = None
        self._open = anyio.Event()  # set while a connection is open
        self._first = anyio.Event()  # set once the first attempt succeeded or failed for good
        self._closed: ClientClosed | None = None
        self._tasks: TaskGroup | None = None
        self._lost = anyio.Event()  # set when the current connection drops
        self._messages_in: MemoryObjectSendStream[Any]
        self._messages: MemoryObjectReceiveStream[Any]

    # -- registering handlers -----------------------------------------------------------

    def on(self, event: str) -> Callable[[Handler], Handler]:
        """Call the decorated function (sync or async) with each server message of `event`.

        It gets the whole message (a dict), as server handlers do; messages are
        handled one at a time, in order. Messages with no handler go to `async for`.
        """

        def register(func: Handler) -> Handler:
            self._handlers[event] = func
            return func

        return register

    def on_call(self, event: str) -> Callable[[Handler], Handler]:
        """Answer the server's `self.call(event, data)` with the decorated function.

        It gets the call's `data`; its return value is the reply. Raising
        `RequestError` answers with that error, anything else with
        `internal_error`. Calls run concurrently, so a handler may `request`.
        A call with no handler is answered `unknown_event`.
        """

        def register(func: Handler) -> Handler:
            self._call_handlers[event] = func
            return func

        return register

    # -- sending -------------------------------------------------------------------------

    async def send(self, event: str, data: Any = None) -> None:
        """Send an event: `{event_key: event, **data}` for a dict, else `{..., "data": data}`.

        While reconnecting, waits for the connection; raises `ClientClosed`
        once the client is closed.
        """
        await self.send_json(self._envelope(event, data, None))

    async def send_json(self, message: Any) -> None:
        """Send any JSON value as one text frame (waits for a connection as `send` does)."""
        text = dumps(message)
        while True:
            websocket, lost = await self._connection()
            try:
                return await websocket.send(text)
            except ConnectionClosed:
                await lost.wait()  # the reader sees the drop; then wait for the next connection

    async def request(self, event: str, data: Any = None, *, timeout: float = 5.0) -> Any:
        """Send a request and return the data of the server's reply.

        The frame is `send`'s with the request id under `request_key`.
        Raises `CallTimeout` (naming the event) when no reply comes within
        `timeout` seconds, including time spent reconnecting; `CallError`
        when the server answers with an error; `ConnectionError` when the
        connection drops before the reply (the server will not answer on the
        next one; whether to retry is yours).
        """
        self._next_id += 1
        request_id = self._next_id
        done, outcome = self._pending[request_id] = (anyio.Event(), [])
        try:
            with anyio.move_on_after(timeout):
                websocket, _ = await self._connection()
                await websocket.send(dumps(self._envelope(event, data, request_id)))
                await done.wait()
        except ConnectionClosed:
            raise ConnectionError(f"request {event!r}: the connection dropped") from None
        finally:
            self._pending.pop(request_id, None)
        if not done.is_set():
            raise CallTimeout(event, timeout)
        ok, value = outcome
        if ok is None:
            raise ConnectionError(f"request {event!r}: the connection dropped before the reply")
        if ok:
            return value
        error = value if type(value) is dict else {}
        raise CallError(
            event, str(error.get("code", BAD_REQUEST)), str(error.get("message", "")),
            error.get("data"),
        )  # fmt: skip

    async def join(self, group: str, *, event: str = "join", timeout: float = 5.0) -> Any:
        """Ask the server to join `group` (a `join` request), and re-join after reconnects.

        Sends `{event_key: event, "group": group, "since": position}`, the
        position being the last one seen in that group (None at first). The
        server's `@on("join")` handler calls `self.join(group, since=since)`
        and answers with what it likes (docs/clients.md shows one); that
        answer is returned. After every reconnect the client sends it again.
        """
        self.groups[group] = event
        return await self.request(
            event, {"group": group, "since": self.positions.get(group)}, timeout=timeout
        )

    def _envelope(self, event: str, data: Any, request_id: int | None) -> dict[str, Any]:
        message: dict[str, Any] = {self.event_key: event}
        if request_id is not None:
            message[self.request_key] = request_id
        if type(data) is dict:
            message.update(data)
        elif data is not None:
            message["data"] = data
        return message

    async def _connection(self) -> tuple[ClientConnection, anyio.Event]:
        """The open connection and the event its drop sets, once there is one."""
        while True:
            if self._closed is not None:
                raise self._closed
            websocket = self._websocket
            if websocket is not None:
                return websocket, self._lost
            await self._open.wait()

    # -- receiving -----------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        """Server messages that no `on` handler took: dicts, strings, bytes; ends at close.

        A group message with a position (an envelope) is given as its `data`
        (or `bytes`); its position is kept in `positions`.
        """
        async for message in self._messages:
            yield message

    async def receive(self, *, timeout: float | None = None) -> Any:
        """The next message `async for` would give; raises `TimeoutError` or `ClientClosed`."""
        with anyio.fail_after(timeout):
            try:
                return await self._messages.receive()
            except anyio.EndOfStream:
                raise self._closed or ClientClosed("closed") from None

    # -- the lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        self._messages_in, self._messages = anyio.create_memory_object_stream(self.max_queue)
        self._tasks = await anyio.create_task_group().__aenter__()
        self._tasks.start_soon(self._run)
        await self._first.wait()
        if self._websocket is None:
            closed = self._closed
            await self.__aexit__(None, None, None)
            raise closed or ClientClosed("could not connect")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
        tasks, self._tasks = self._tasks, None
        if tasks is not None:
            tasks.cancel_scope.cancel()
            # Not handed the block's exception: it goes on as it was, not in an ExceptionGroup.
            await tasks.__aexit__(None, None, None)

    async def close(self) -> None:
        """Close with 1000; pending requests fail, `async for` ends, nothing reconnects."""
        if self._closed is None:
            self._closed = ClientClosed("the client is closed")
        websocket, self._websocket = self._websocket, None
        if websocket is not None:
            with anyio.move_on_after(5, shield=True):
                await websocket.close(NORMAL_CLOSURE)
        self._fail_pending()
        self._open.set()  # wake whoever waits for a connection: they see `_closed`
        self._messages_in.close()

    async def _run(self) -> None:
        failures = 0
        while self._closed is None:
            try:
                websocket = await connect(
                    self.url(self) if callable(self.url) else self.url,
                    open_timeout=self.open_timeout,
                    additional_headers=self.headers or None,
                    subprotocols=self.subprotocols,
                    max_size=self.max_size,
                    proxy=None,
                )
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                failures += 1
                final = not self.reconnect or self.backoff.gives_up(failures)
                if isinstance(exc, InvalidStatus) and exc.response.status_code < 500:
                    final = True  # refused (403, 404): the same handshake would be refused again
                if final:
                    return self._give_up(f"could not connect: {exc}")
                logger.info("tether client: connect failed (%s), attempt %d", exc, failures)
                await anyio.sleep(self.backoff.delay(failures))
                continue
            except Exception as exc:  # a bad URL, a bad option: no attempt can succeed
                return self._give_up(f"could not connect: {exc!r}")
            failures = 0
            self.connects += 1
            await self._serve(websocket)
            self.close_code = websocket.close_code
            if self._closed is not None:
                return
            if not self.reconnect or is_final(websocket.close_code):
                return self._give_up(f"the server closed with {websocket.close_code}")
            await anyio.sleep(self.backoff.delay(1))

    async def _serve(self, websocket: ClientConnection) -> None:
        """One connection: read frames, run handlers, re-join groups; return when it drops.

        What was read before the drop is still handed on, in order (so the
        positions kept are those of messages really delivered); server calls
        and re-joins die with the connection, which can no longer answer.
        """
        inbox_in, inbox = anyio.create_memory_object_stream[Any](self.max_queue)
        self._lost = lost = anyio.Event()
        try:
            async with anyio.create_task_group() as delivery:
                delivery.start_soon(self._dispatch, inbox)
                async with anyio.create_task_group() as calls, inbox_in:
                    self._websocket = websocket
                    self._open.set()
                    self._first.set()
                    if self.groups:
                        calls.start_soon(self._rejoin)
                    try:
                        async for frame in websocket:
                            message = self._take(frame)
                            if message is _TAKEN:
                                continue
                            if type(message) is dict and "call" in message:
                                calls.start_soon(self._answer, message)
                            else:  # at max_queue, reading waits: back-pressure
                                await inbox_in.send(message)
                    except ConnectionClosed:
                        pass
                    self._dropped(websocket, lost)
                    calls.cancel_scope.cancel()
        finally:
            self._dropped(websocket, lost)

    def _dropped(self, websocket: ClientConnection, lost: anyio.Event) -> None:
        if self._websocket is websocket:
            self._websocket = None
            self._open = anyio.Event()
        lost.set()
        self._fail_pending()

    def _take(self, frame: str | bytes) -> Any:
        """Resolve a reply at once (`_TAKEN`); else the message, for the caller to hand on."""
        message: Any = frame
        if type(frame) is str:
            try:
                message = loads(frame)
            except ValueError:
                return frame
        if (
            type(message) is dict
            and self.request_key in message
            and "ok" in message
            and self.event_key not in message
        ):
            request_id = message[self.request_key]
            waiter = self._pending.get(request_id) if valid_id(request_id) else None
            if waiter is not None:
                done, outcome = waiter
                ok = message.get("ok") is True
                outcome[:] = [ok, message.get("data") if ok else message.get("error")]
                done.set()
            elif request_id is None:
                logger.warning("tether client: the server refused a frame: %s", message)
            return _TAKEN
        return message

    async def _dispatch(self, inbox: MemoryObjectReceiveStream[Any]) -> None:
        key = self.event_key
        async for message in inbox:
            if type(message) is dict and "offset" in message and "group" in message:
                self.positions[message["group"]] = f"{message['epoch']}:{message['offset']}"
                message = message["data"] if "data" in message else message.get("bytes")
            event = message.get(key) if type(message) is dict else None
            handler = self._handlers.get(event) if type(event) is str else None
            if handler is None:
                await self._messages_in.send(message)
                continue
            try:
                result = handler(message)
                if isawaitable(result):
                    await result
            except Exception:
                logger.exception("tether client: the handler of %r raised", event)

    async def _answer(self, message: dict[str, Any]) -> None:
        """Run the handler of a server call and send its reply."""
        call_id, event = message["call"], message.get(self.event_key)
        handler = self._call_handlers.get(event) if type(event) is str else None
        if handler is None:
            reply = error_reply(call_id, UNKNOWN_EVENT, f"no handler for {event!r}", "call")
        else:
            try:
                result = handler(message.get("data"))
                if isawaitable(result):
                    result = await result
            except RequestError as exc:
                reply = {"call": call_id, "ok": False, "error": exc.as_error()}
            except Exception:
                logger.exception("tether client: the call handler of %r raised", event)
                reply = error_reply(call_id, HANDLER_RAISED, "internal error", "call")
            else:
                reply = ok_reply(call_id, result, "call")
        websocket = self._websocket
        if websocket is not None:
            # If the connection is gone, so is the call: the server's waiter fails there.
            with contextlib.suppress(ConnectionClosed):
                await websocket.send(dumps(reply))

    async def _rejoin(self) -> None:
        for group, event in list(self.groups.items()):
            try:
                await self.join(group, event=event)
            except (CallError, CallTimeout, ConnectionError) as exc:
                logger.warning("tether client: re-joining %r failed: %s", group, exc)

    def _fail_pending(self) -> None:
        for done, outcome in self._pending.values():
            if not done.is_set():
                outcome[:] = [None, None]
                done.set()

    def _give_up(self, why: str) -> None:
        logger.warning("tether client: %s; giving up", why)
        self._closed = ClientClosed(why)
        self._first.set()
        self._open.set()
        self._messages_in.close()


# What `_take` answers for a frame it dealt with itself (a reply).
_TAKEN = object()
