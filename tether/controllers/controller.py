"""`WebSocketController`: one instance per connection, itself an ASGI app."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Generator, Sequence
from functools import partial
from inspect import isawaitable
from typing import Any, ClassVar, Literal

import anyio
from anyio.abc import TaskGroup
from starlette.exceptions import HTTPException
from starlette.types import Message, Receive, Scope, Send

from tether.brokers import Broker, MemoryBroker
from tether.brokers.positions import Position, Recovery
from tether.controllers._passthrough import skip_passthrough
from tether.controllers._plan import ControllerPlan, HookPlan, compile_controller
from tether.controllers._shield import teardown_shield
from tether.controllers.codecs import (
    DECODE_FAILURES,
    INVALID_PAYLOAD,
    UNSUPPORTED_DATA,
    DecodeError,
    encode_reply,
    parse_json,
    text_frame,
)
from tether.controllers.codecs import describe as describe_error
from tether.controllers.errors import (
    INTERNAL_ERROR,
    POLICY_VIOLATION,
    WebSocketDisconnect,
    WebSocketException,
    close_quietly,
    refuse_with_status,
    unwrap,
)
from tether.controllers.guards import negotiate_subprotocol
from tether.controllers.lifespan import serve_lifespan
from tether.controllers.limits import MESSAGE_TOO_BIG, RateLimit, TokenBucket, message_size
from tether.controllers.membership import Membership
from tether.controllers.routing import unroutable
from tether.controllers.shutdown import GOING_AWAY, sessions
from tether.controllers.websocket import WebSocket, WebSocketState
from tether.di.compiler import ParameterError
from tether.di.resolver import Context, ScopeState, overrides

logger = logging.getLogger("tether")

CONNECTING = WebSocketState.CONNECTING
CONNECTED = WebSocketState.CONNECTED
DISCONNECTED = WebSocketState.DISCONNECTED
NO_STATUS = 1005
ABNORMAL = 1006
ReceiveLoop = Callable[[Context, "anyio.CancelScope | None"], Awaitable["int | None"]]
# The broker of every controller that does not set its own: in-process groups.
default_broker = MemoryBroker()
# How long to wait for the server's disconnect message once the client is gone.
DRAIN_SECONDS = 1.0


class WebSocketController:
    """Subclass me: one instance serves one WebSocket connection.

    Write any of `on_connect`, `on_receive` and `on_disconnect` (async or
    plain `def`); each receives what its signature asks for. The class is an
    ASGI app: mount it in Starlette, FastAPI, Lilya or serve it directly.
    The class attributes below configure it; subclasses inherit them.

    Attributes:
        encoding: `"text"`, `"bytes"`, `"json"` or `None` (data as received).
        event_key: the key `@on` routing reads from JSON messages (`"type"`).
        websocket_class: the `WebSocket` class to build (a subclass of tether's).
        sends: message types the server sends besides return values (for AsyncAPI).
        allowed_origins: origins a browser may connect from (exact,
            `https://*.example.org` or `"*"`); None (the default) checks nothing.
            A refused origin gets HTTP 403.
        require_origin: refuse requests without an Origin header too.
        permissions: callables (DI-enabled, sync or async) run before
            `on_connect`; a falsy result refuses the handshake (403), an
            `HTTPException` refuses with its status where the server can send one.
        subprotocols: supported subprotocols, most preferred first.
        max_message_size: bytes; a larger message closes with 1009.
        rate_limit: a `RateLimit`; over it closes with 1008 (or drops).
        idle_timeout: seconds without a message before closing with 1001.
        max_concurrency: handlers in flight per connection (1: strict order).
        broker: where `join`/`publish` go; one in-process `MemoryBroker` by
            default, `RedisBroker(url)` to span processes.
        outbound_maxsize: group messages a connection may have waiting.
        outbound_policy: when they overflow, `"drop_oldest"` or `"close"` (1013).
    """

    encoding: ClassVar[str | None] = None
    event_key: ClassVar[str] = "type"
    websocket_class: ClassVar[type[WebSocket]] = WebSocket
    sends: ClassVar[Sequence[Any]] = ()
    allowed_origins: ClassVar[Sequence[str] | None] = None
    require_origin: ClassVar[bool] = False
    permissions: ClassVar[Sequence[Callable[..., Any]]] = ()
    subprotocols: ClassVar[Sequence[str]] = ()
    max_message_size: ClassVar[int | None] = None
    rate_limit: ClassVar[RateLimit | None] = None
    idle_timeout: ClassVar[float | None] = None
    max_concurrency: ClassVar[int] = 1
    broker: ClassVar[Broker] = default_broker
    outbound_maxsize: ClassVar[int] = 1024
    outbound_policy: ClassVar[Literal["drop_oldest", "close"]] = "drop_oldest"

    _membership: Membership | None = None
    # The hooks' functions with this connection's resolved values bound (None: no such
    # hook), called with `self` first: a bound method kept here would make the instance
    # a reference cycle, freed only by the garbage collector.
    _on_receive: Callable[..., Any] | None = None
    _on_disconnect: Callable[..., Any] | None = None
    _routes: dict[str, tuple[HookPlan, Callable[..., Any]]] = {}  # never mutated: rebound
    _tasks: TaskGroup | None = None
    _wants_delivery = False

    _plan: ClassVar[ControllerPlan]
    _receive_messages: ReceiveLoop  # chosen per class, in __init_subclass__

    websocket: WebSocket
    _client_code: int = ABNORMAL  # the code of the client's close, once the loop has read it

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self._error: BaseException | None = None
        self._wants_delivery = False  # in the instance: the hot loop reads it per message

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        plan = cls._plan = compile_controller(cls, WebSocketController)
        # The receive loop fitting the class (it returns None when delivery must start).
        if plan.max_concurrency > 1:
            cls._receive_messages = cls._receive_concurrently
        elif plan.plain_receive:
            cls._receive_messages = cls._receive_plain
        elif plan.ignores_messages:
            cls._receive_messages = cls._receive_ignoring
        else:
            cls._receive_messages = cls._receive_in_order

    def __await__(self) -> Generator[Any, None, None]:
        return self.dispatch().__await__()

    # -- hooks a subclass may write ------------------------------------------------

    async def on_connect(self, websocket: WebSocket) -> None:
        """Called before the receive loop; returning without accepting accepts."""

    async def on_receive(self, data: Any) -> Any:
        """Called for every message; a non-None return value is sent back."""

    async def on_disconnect(self, close_code: int) -> None:
        """Called once for every accepted connection, with the close code."""

    # -- hooks a subclass may override ---------------------------------------------

    async def on_decode_error(self, websocket: WebSocket, exc: DecodeError) -> None:
        """A message could not become `data`: by default close with `exc.code`.

        Override to answer differently; if the connection stays open, the
        receive loop goes on with the next message.
        """
        await close_quietly(websocket, exc.code, exc.reason)

    async def on_error(self, websocket: WebSocket, exc: Exception) -> None:
        """A hook raised: by default log it (logger `tether`) and close with 1011.

        Before accept the handshake is refused instead (HTTP 500 where the
        server supports denial responses, else 403).
        """
        logger.error("%s: unhandled %s", type(self).__name__, type(exc).__name__, exc_info=exc)
        if websocket.application_state is CONNECTING and await refuse_with_status(
            websocket, 500, b"Internal Server Error"
        ):
            return
        await close_quietly(websocket, INTERNAL_ERROR, "Internal error")

    # -- groups ------------------------------------------------------------------------

    async def join(self, group: str, *, since: Position | str | None = None) -> Recovery:
        """Join `group`; returns once the broker confirmed, so nothing later is missed.

        Messages published to the group are sent to this connection through a
        bounded queue (`outbound_maxsize`, `outbound_policy`). The connection
        leaves all its groups when it closes, however it closes.

        In a group that keeps history (the broker's `history=`), `since` is the
        client's last position (a `Position` or its `"<epoch>:<offset>"`
        string): every message after it still in history is sent first, in
        order, then live ones, with no gap and no duplicate. The `Recovery`
        says whether that was everything (`recovered`), and gives the group's
        position for a client that has none yet; when `recovered` is False,
        send the client its state afresh. A malformed `since` is not an
        error: it answers `reason="malformed"`.
        """
        membership = self._membership
        if membership is None:
            membership = self._membership = Membership(
                self.broker,
                self.websocket,
                self._send,
                maxsize=self.outbound_maxsize,
                policy=self.outbound_policy,
            )
            if self._tasks is not None:
                self._tasks.start_soon(self._deliver, self._tasks)
            else:
                self._wants_delivery = True  # the receive loop starts delivery
        return await membership.join(group, since)

    async def leave(self, group: str) -> None:
        """Leave `group` (nothing happens if this connection is not in it)."""
        if self._membership is not None:
            await self._membership.leave(group)

    async def publish(self, group: str, message: Any, *, exclude_self: bool = False) -> None:
        """Send `message` to every member of `group`, on every process the broker reaches.

        `str` goes out as text, `bytes` as binary, anything else as JSON.
        """
        if self._membership is not None:
            await self._membership.publish(group, message, exclude_self=exclude_self)
        else:
            await self.broker.publish(group, message)

    async def _deliver(self, tasks: TaskGroup) -> None:
        """Send the joined groups' messages until the queue closes (one task per connection)."""
        queue = self._membership.queue
        try:
            await queue.run()
        except (OSError, WebSocketDisconnect):
            # The client left (the server's send says so); the receive loop hears of it.
            self.websocket.application_state = DISCONNECTED
            return
        if queue.overflowed:
            tasks.cancel_scope.cancel()  # closed with 1013: stop receiving too

    # -- the lifecycle ---------------------------------------------------------------

    async def dispatch(self) -> None:
        """Serve the connection: connect, receive until closed, tear down."""
        kind = self.scope["type"]
        if kind == "lifespan":
            return await serve_lifespan(self._receive, self._send, self.broker)
        if kind != "websocket":
            return await _upgrade_required(self._send)
        send = self._send = skip_passthrough(self._send)
        websocket = self.websocket = self.websocket_class(self.scope, self._receive, send)
        plan = self._plan
        # An override may bring connection-scoped dependencies the class has none of.
        ctx = Context(websocket, ScopeState() if plan.connection_scoped or overrides else None)
        code: int | None = None  # for on_disconnect; None while not accepted
        try:
            try:
                if plan.guards_handshake and not await self._admit(websocket):
                    return
                kwargs = await self._bind(ctx) if plan.binds else _NO_KWARGS
                if plan.permissions:
                    await self._check_permissions(ctx)
                if plan.plain_connect:  # nothing between on_connect and its values
                    await plan.connect.func(self, **kwargs)
                elif plan.connect is not None:
                    await self._connect(kwargs, ctx)
                if websocket.application_state is CONNECTING:
                    await websocket.accept()
                if websocket.application_state is CONNECTED:
                    sessions.live.add(websocket)  # graceful shutdown closes it with 1001
                    try:
                        code = await self._receive_until_closed(ctx)
                        if code is None:  # join() asked for delivery beside the loop
                            code = await self._deliver_alongside(self._receive_messages, ctx, None)
                    finally:
                        sessions.live.discard(websocket)
                elif websocket.accepted:  # on_connect accepted, then closed
                    code = websocket.close_code
            except Exception as exc:
                code = await self._failed(unwrap(exc), ctx)
        except BaseException as exc:  # cancellation: clean up, then let it go on
            self._error = exc
            raise
        finally:
            ending = self._ending(ctx, code)
            if ending is not None:
                with teardown_shield():
                    await ending
            # Its traceback holds this frame, and so `self`: a cycle to leave behind.
            self._error = None

    def _ending(self, ctx: Context, code: int | None) -> Awaitable[None] | None:
        """What must run once the session is over (on_disconnect, leaving groups, teardown)."""
        accepted = self.websocket.accepted
        if (accepted and (code is None or self._plan.disconnect)) or self._membership is not None:
            return self._end(ctx, code)
        if ctx.connection is not None and ctx.connection.exits:
            return ctx.connection.aclose(self._error)  # only teardown: no layer around it
        return None

    async def _end(self, ctx: Context, code: int | None) -> None:
        websocket = self.websocket
        if websocket.accepted:
            if code is None:
                code = websocket.close_code or await self._client_close_code(0.1)
            if self._on_disconnect is not None:
                await self._disconnected(ctx, code)
        if self._membership is not None:
            await self._membership.close()
        if ctx.connection is not None:
            await ctx.connection.aclose(self._error)

    async def _admit(self, websocket: WebSocket) -> bool:
        """Check the origin and negotiate the subprotocol; refuse (403) on failure."""
        plan = self._plan
        if plan.origins is not None and not plan.origins.allows(websocket.headers.get("origin")):
            return await self._refuse(websocket, f"origin {websocket.headers.get('origin')!r}")
        if plan.subprotocols:
            offered = self.scope.get("subprotocols") or ()
            try:
                websocket.subprotocol = negotiate_subprotocol(plan.subprotocols, offered)
            except LookupError as exc:
                return await self._refuse(websocket, str(exc))
        return True

    async def _refuse(self, websocket: WebSocket, why: str) -> bool:
        logger.info("%s refused a connection: %s", type(self).__name__, why)
        await close_quietly(websocket, POLICY_VIOLATION, "refused")
        return False

    async def _check_permissions(self, ctx: Context) -> None:
        for permission in self._plan.permissions:
            result = permission.plan.call(**await permission.resolve(ctx))
            # A plain def may return an awaitable (a sync decorator around an async
            # check): a coroutine object is truthy, so not awaiting it would let anyone in.
            if permission.is_async or isawaitable(result):
                result = await result
            if not result:
                raise WebSocketException(POLICY_VIOLATION, f"permission denied: {permission.name}")

    async def _bind(self, ctx: Context) -> dict[str, Any]:
        """Resolve every hook's per-connection parameters, before on_connect.

        Returns on_connect's: it is called once, so it is called straight
        from them rather than bound like the other hooks.
        """
        plan = self._plan
        connect_kwargs = _NO_KWARGS
        if plan.connect is not None:
            if plan.connect.checks:
                self._check(plan.connect, ctx)
            connect_kwargs = await plan.connect.resolve_static(ctx) if plan.connect.static else {}
        if plan.receive is not None:
            self._on_receive = await self._bound(plan.receive, ctx)
        if plan.disconnect is not None:
            self._on_disconnect = await self._bound(plan.disconnect, ctx)
        if plan.routes:
            self._routes = {
                event: (hook, await self._bound(hook, ctx)) for event, hook in plan.routes.items()
            }
        return connect_kwargs

    async def _bound(self, hook: HookPlan, ctx: Context) -> Callable[..., Any]:
        if hook.checks:
            self._check(hook, ctx)
        if not hook.static:
            return hook.func
        return partial(hook.func, **await hook.resolve_static(ctx))

    @staticmethod
    def _check(hook: HookPlan, ctx: Context) -> None:
        """Read now the request values the hook's per-call dependencies will need."""
        for through, check in hook.checks:
            if not (overrides and any(call in overrides for call in through)):
                check(ctx)

    async def _connect(self, kwargs: dict[str, Any], ctx: Context) -> None:
        hook = self._plan.connect
        if hook.per_call is not None:
            await self._call(hook, partial(hook.func, **kwargs), ctx)
        elif hook.is_async:
            await hook.func(self, **kwargs)
        else:
            hook.func(self, **kwargs)

    def _receive_until_closed(self, ctx: Context) -> Awaitable[int | None]:
        """The receive loop to await: the class's own, or one guarding shutdown and idle time.

        It returns the code for on_disconnect, or None when delivery must
        start. (A plain function, and the common case awaited straight from
        `dispatch`: an idle connection holds one suspended frame per level.)
        """
        if sessions.stopping or self._plan.idle_timeout is not None:
            return self._receive_guarded(ctx)
        return self._receive_messages(ctx, None)

    async def _receive_guarded(self, ctx: Context) -> int:
        """Close at once while the server shuts down (1001); else receive with `idle_timeout`.

        The loop runs in a cancel scope whose deadline each message pushes
        back; reaching it closes with 1001.
        """
        websocket = ctx.websocket
        if not sessions.stopping:
            loop = self._receive_messages
            with anyio.CancelScope() as idle:
                code = await loop(ctx, idle)
                return await self._deliver_alongside(loop, ctx, idle) if code is None else code
            await close_quietly(websocket, GOING_AWAY, "idle timeout")
        else:
            await close_quietly(websocket, GOING_AWAY, "server shutting down")
        return websocket.close_code or await self._client_close_code(DRAIN_SECONDS)

    async def _deliver_alongside(
        self, loop: ReceiveLoop, ctx: Context, idle: anyio.CancelScope | None
    ) -> int:
        """Go on receiving, now beside a task delivering the joined groups' messages."""
        async with anyio.create_task_group() as tasks:
            self._tasks, self._wants_delivery = tasks, False
            tasks.start_soon(self._deliver, tasks)
            code = await loop(ctx, idle)
            # Let delivery finish the frame it is sending (1013, say), briefly.
            self._membership.queue.close()
            tasks.cancel_scope.deadline = anyio.current_time() + DRAIN_SECONDS
        self._tasks = None
        return code or ctx.websocket.close_code or NO_STATUS

    async def _receive_plain(self, ctx: Context, scope: anyio.CancelScope | None) -> int | None:
        """`_receive_in_order` for the common case, with nothing between the hook and the wire.

        One async `on_receive(data)`, no limits: per message this is one
        decode call, one await of the hook and one ASGI send.
        """
        websocket = ctx.websocket
        receive, send = self._receive, self._send
        decode = self._plan.receive.decode
        text_only = decode is text_frame
        on_receive = self._on_receive
        connected = CONNECTED
        while not self._wants_delivery:
            message = await receive()
            kind = message["type"]
            # The rare case first: a short jump keeps the compare specialized (3.11).
            if kind != "websocket.receive":
                if kind == "websocket.disconnect":
                    return self._client_closed(message, ctx)
                continue
            try:
                # Text frames to a str hook need no decoder call at all.
                data = message.get("text") if text_only else None
                if data is None:
                    data = decode(message)
            except DecodeError as exc:
                await self.on_decode_error(websocket, exc)
                if websocket.application_state is not connected:
                    return websocket.close_code or await self._client_close_code(DRAIN_SECONDS)
                continue
            result = await on_receive(self, data)
            if websocket.application_state is not connected:
                return websocket.close_code or await self._client_close_code(DRAIN_SECONDS)
            if result is not None:
                try:
                    await send(
                        {"type": "websocket.send", "text": result}
                        if type(result) is str
                        else encode_reply(result)
                    )
                except OSError:
                    _client_gone(websocket)
        return None

    async def _receive_ignoring(self, ctx: Context, scope: anyio.CancelScope | None) -> int | None:
        """With no hook for messages and no limits: drop them until the client leaves."""
        websocket = ctx.websocket
        receive = self._receive
        while not self._wants_delivery:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return self._client_closed(message, ctx)
            if websocket.application_state is not CONNECTED:
                return websocket.close_code or await self._client_close_code(DRAIN_SECONDS)
        return None

    async def _receive_in_order(self, ctx: Context, scope: anyio.CancelScope | None) -> int | None:
        websocket = ctx.websocket
        receive = self._receive
        handle = self._routed if self._routes else self._single
        admit = self._limiter() if self._plan.checks_messages else None
        idle = self._plan.idle_timeout
        while not self._wants_delivery:
            if idle is not None:
                scope.deadline = anyio.current_time() + idle
            message = await receive()
            if message["type"] == "websocket.receive":
                if idle is not None:
                    scope.deadline = math.inf  # a slow handler is not idleness
                if admit is not None and not await admit(message):
                    if websocket.application_state is not CONNECTED:
                        return websocket.close_code or await self._client_close_code(DRAIN_SECONDS)
                    continue
                await handle(message, ctx)
                if websocket.application_state is not CONNECTED:
                    return websocket.close_code or await self._client_close_code(DRAIN_SECONDS)
            elif message["type"] == "websocket.disconnect":
                return self._client_closed(message, ctx)
        return None

    async def _receive_concurrently(self, ctx: Context, scope: anyio.CancelScope | None) -> int:
        """Like `_receive_in_order`, with up to `max_concurrency` handlers in flight."""
        websocket = ctx.websocket
        handle = self._routed if self._routes else self._single
        admit = self._limiter() if self._plan.checks_messages else None
        idle = self._plan.idle_timeout
        slots = anyio.Semaphore(self._plan.max_concurrency)

        async def run(message: Message) -> None:
            try:
                await handle(message, ctx)
            finally:
                slots.release()

        async with anyio.create_task_group() as handlers:
            self._tasks = handlers
            if self._wants_delivery:
                self._wants_delivery = False
                handlers.start_soon(self._deliver, handlers)
            while True:
                if idle is not None:
                    scope.deadline = anyio.current_time() + idle
                message = await self._receive()
                if message["type"] == "websocket.disconnect":
                    handlers.cancel_scope.cancel()
                    return self._client_closed(message, ctx)
                if idle is not None:
                    scope.deadline = math.inf
                if admit is not None and not await admit(message):
                    if websocket.application_state is not CONNECTED:
                        break
                    continue
                await slots.acquire()  # at the limit, stop reading: back-pressure
                if websocket.application_state is not CONNECTED:
                    break
                handlers.start_soon(run, message)
            handlers.cancel_scope.cancel()
        self._tasks = None
        return websocket.close_code or await self._client_close_code(DRAIN_SECONDS)

    def _client_closed(self, message: Message, ctx: Context) -> int:
        websocket = ctx.websocket
        websocket.client_state = DISCONNECTED
        code = self._client_code = message.get("code", NO_STATUS)
        if websocket.close_code is not None:  # we closed first; this is the echo
            return websocket.close_code
        ctx.close_reason = message.get("reason") or ""
        return code

    def _limiter(self) -> Callable[[Message], Awaitable[bool]]:
        """The per-message size and rate check of this connection."""
        plan = self._plan
        max_size = plan.max_message_size
        limit = plan.rate_limit
        bucket = TokenBucket(limit, anyio.current_time()) if limit is not None else None
        websocket = self.websocket

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

    async def _single(self, message: Message, ctx: Context) -> None:
        hook, bound = self._plan.receive, self._on_receive
        if hook is None:
            return
        try:
            data = hook.decode(message)
        except DecodeError as exc:
            return await self.on_decode_error(self.websocket, exc)
        if hook.per_call is None and hook.is_async and hook.data_first:
            result = await bound(self, data)
        else:
            result = await self._call(hook, bound, ctx, data)
        if result is not None:
            await self._reply(result)

    async def _routed(self, message: Message, ctx: Context) -> None:
        try:
            hook, bound, data = self._route(message)
        except DecodeError as exc:
            return await self.on_decode_error(self.websocket, exc)
        result = await self._call(hook, bound, ctx, data)
        if result is not None:
            await self._reply(result)

    def _route(self, message: Message) -> tuple[HookPlan, Callable[..., Any], Any]:
        parsed = parse_json(self._plan.frame(message))
        event = parsed.get(self.event_key) if type(parsed) is dict else None
        # Only a string names an event: a list or an object as the key is not hashable.
        route = self._routes.get(event) if type(event) is str else None
        if route is None:
            if self._plan.receive is None:
                raise DecodeError(UNSUPPORTED_DATA, unroutable(parsed, self.event_key))
            route = (self._plan.receive, self._on_receive)
        hook, bound = route
        try:
            return hook, bound, hook.convert(parsed)
        except DECODE_FAILURES as exc:
            raise DecodeError(INVALID_PAYLOAD, describe_error(exc)) from exc

    async def _call(
        self, hook: HookPlan, bound: Callable[..., Any], ctx: Context, data: Any = None
    ) -> Any:
        """Call a hook (its function, with `self`), resolving what varies per call."""
        if hook.per_call is None:
            if hook.data_name is None:
                result = bound(self)
            elif hook.data_first:
                result = bound(self, data)
            else:
                result = bound(self, data=data)
            return await result if hook.is_async else result
        # A context of its own, so concurrent handlers never share per-call values.
        call = Context(ctx.websocket, ctx.connection)
        call.query = ctx.query
        call.data, call.close_code, call.close_reason = data, ctx.close_code, ctx.close_reason
        state = call.message = ScopeState()
        try:
            result = bound(self, **await hook.resolve_per_call(call))
            if hook.is_async:
                result = await result
        except BaseException as exc:
            with teardown_shield():
                await state.aclose(exc)
            raise
        if state.exits:  # a teardown to run (a shield costs more than most handlers)
            with teardown_shield():
                await state.aclose()
        return result

    async def _reply(self, value: Any) -> None:
        websocket = self.websocket
        if websocket.application_state is CONNECTED:
            try:
                await self._send(encode_reply(value))
            except OSError:
                _client_gone(websocket)

    # -- endings ---------------------------------------------------------------------

    async def _failed(self, exc: BaseException, ctx: Context) -> int | None:
        """Decide the close for an exception from a hook; return on_disconnect's code."""
        websocket = ctx.websocket
        if isinstance(exc, WebSocketDisconnect):  # the client is gone
            if websocket.client_state is DISCONNECTED:
                # A send that failed says 1006; the loop may have read the client's own code.
                code = exc.code if self._client_code == ABNORMAL else self._client_code
            else:
                code = await self._client_close_code(DRAIN_SECONDS)
            return code if websocket.accepted else None
        if isinstance(exc, (WebSocketException, HTTPException)):
            self._error = exc  # thrown into generator dependencies at teardown
        if isinstance(exc, WebSocketException):
            await close_quietly(websocket, exc.code, exc.reason)
            if not websocket.accepted:
                return None
            return websocket.close_code or await self._client_close_code(DRAIN_SECONDS)
        if isinstance(exc, HTTPException) and websocket.application_state is CONNECTING:
            logger.info("%s refused a connection: %s", type(self).__name__, exc.detail)
            if not await refuse_with_status(websocket, exc.status_code, exc.detail):
                await close_quietly(websocket, POLICY_VIOLATION, exc.detail)
            return None
        if isinstance(exc, ParameterError):
            logger.warning("%s refused a connection: %s", type(self).__name__, exc)
            await close_quietly(websocket, POLICY_VIOLATION, str(exc))
            return websocket.close_code if websocket.accepted else None
        self._error = exc
        try:
            await self.on_error(websocket, exc)  # type: ignore[arg-type]
        except Exception:
            logger.exception("%s.on_error raised", type(self).__name__)
        await close_quietly(websocket, INTERNAL_ERROR, "Internal error")
        if not websocket.accepted:
            return None
        return websocket.close_code or await self._client_close_code(DRAIN_SECONDS)

    async def _client_close_code(self, within: float) -> int:
        """The close code the server reports once the client has gone."""
        websocket = self.websocket
        if websocket.client_state is not DISCONNECTED:
            with anyio.move_on_after(within):
                for _ in range(256):  # skip frames still queued behind the close
                    message = await self._receive()
                    if message["type"] == "websocket.disconnect":
                        websocket.client_state = DISCONNECTED
                        return message.get("code", NO_STATUS)
        return self._client_code  # the loop may have read the client's close already

    async def _disconnected(self, ctx: Context, code: int) -> None:
        hook = self._plan.disconnect
        bound = self._on_disconnect
        if hook is None or bound is None:
            return
        ctx.close_code = code
        if ctx.close_reason is None:
            ctx.close_reason = self.websocket.close_reason or ""
        try:
            await self._call(hook, bound, ctx)
        except Exception:
            logger.exception("%s.on_disconnect raised", type(self).__name__)


_NO_KWARGS: dict[str, Any] = {}  # never mutated


def _client_gone(websocket: WebSocket) -> None:
    # As Starlette's WebSocket.send does: a failed send means the client left.
    websocket.application_state = DISCONNECTED
    raise WebSocketDisconnect(ABNORMAL)


async def _upgrade_required(send: Callable[[Message], Awaitable[None]]) -> None:
    body = b"This endpoint only accepts WebSocket connections."
    await send(
        {
            "type": "http.response.start",
            "status": 426,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"upgrade", b"websocket"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
