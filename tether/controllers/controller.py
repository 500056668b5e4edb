"""`WebSocketController`: one instance per connection, itself an ASGI app.

The lifecycle is `dispatch`: admit, bind, check permissions, `on_connect`,
accept, the receive loop (`_receive`), then the endings (`_endings`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from contextlib import nullcontext
from functools import partial
from inspect import isawaitable
from typing import Any, ClassVar, Literal
from uuid import uuid4

import anyio
from anyio.abc import TaskGroup
from starlette.types import Message, Receive, Scope, Send

from tether.brokers import Broker, MemoryBroker
from tether.brokers.positions import Position, Recovery
from tether.close_codes import (
    ABNORMAL_CLOSURE,
    GOING_AWAY,
    INTERNAL_ERROR,
    INVALID_PAYLOAD,
    POLICY_VIOLATION,
    UNSUPPORTED_DATA,
)
from tether.controllers._endings import DRAIN_SECONDS, client_gone, close_code, ending, failed
from tether.controllers._passthrough import skip_passthrough
from tether.controllers._plan import ControllerPlan, HookPlan, compile_controller
from tether.controllers._receive import receive_fast, receive_fast_metered, receive_general
from tether.controllers._shield import teardown_shield
from tether.controllers.codecs import DECODE_FAILURES, DecodeError, parse_json
from tether.controllers.codecs import describe as describe_error
from tether.controllers.errors import (
    WebSocketDisconnect,
    WebSocketException,
    close_quietly,
    refuse_with_status,
    unwrap,
)
from tether.controllers.guards import negotiate_subprotocol
from tether.controllers.lifespan import serve_lifespan
from tether.controllers.limits import RateLimit
from tether.controllers.membership import Membership
from tether.controllers.requests import (
    BAD_REQUEST,
    DUPLICATE_ID,
    HANDLER_RAISED,
    INVALID_DATA,
    UNKNOWN_EVENT,
    CallClosed,
    PendingCalls,
    RequestError,
    error_reply,
)
from tether.controllers.routing import unroutable
from tether.controllers.shutdown import sessions
from tether.controllers.websocket import WebSocket, WebSocketState
from tether.di.resolver import Context, ScopeState, overrides
from tether.frames import dumps, encode_frame, loads
from tether.metrics.connection import ConnectionStats
from tether.metrics.prometheus import TetherMetrics, meter_of

logger = logging.getLogger("tether")

CONNECTING = WebSocketState.CONNECTING
CONNECTED = WebSocketState.CONNECTED
DISCONNECTED = WebSocketState.DISCONNECTED
ReceiveLoop = Callable[[Context, "anyio.CancelScope | None"], Awaitable["int | None"]]
# The broker of every controller that does not set its own: in-process groups.
default_broker = MemoryBroker()
# Where no idle deadline is needed, the loop runs under this instead of a cancel scope.
_NO_DEADLINE = nullcontext()


class WebSocketController:
    """Subclass me: one instance serves one WebSocket connection.

    Write any of `on_connect`, `on_receive` and `on_disconnect` (async or
    plain `def`); each receives what its signature asks for. The class is an
    ASGI app: mount it in Starlette, FastAPI, Lilya or serve it directly.
    The class attributes below configure it; subclasses inherit them.

    Attributes:
        encoding: `"text"`, `"bytes"`, `"json"` or `None` (data as received).
        event_key: the key `@on` routing reads from JSON messages (`"type"`).
        websocket_class: the `WebSocket` class to build (a subclass of tether's);
            if it overrides `receive` or `send`, every frame goes through them.
        sends: message types the server sends besides return values (for AsyncAPI).
        calls: the calls the server makes with `call`, for AsyncAPI: each event
            and the `(data, result)` types of its payload and of the client's reply.
        groups: the groups the class joins, for AsyncAPI: each group name or
            `"prefix*"` pattern and the type published there, or a
            `Group(type, history=..., presence_events=...)`.
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
        request_key: the key of a request's id (`"ref"`): a routed message
            carrying it is a request, answered with the same id (see the wire
            protocol page); None: no requests.
        reply_errors: answer a request whose handler
            raised, whose event is unknown or whose data is invalid with an
            error reply and stay connected, instead of closing (1011, 1003, 1007).
        metrics: a `tether.metrics.TetherMetrics`: Prometheus metrics (and
            spans) for this class's connections; None (the default) records nothing.
    """

    encoding: ClassVar[str | None] = None
    event_key: ClassVar[str] = "type"
    websocket_class: ClassVar[type[WebSocket]] = WebSocket
    sends: ClassVar[Sequence[Any]] = ()
    calls: ClassVar[Mapping[str, tuple[Any, Any]]] = {}  # never mutated: rebound
    groups: ClassVar[Mapping[str, Any]] = {}  # never mutated: rebound
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
    request_key: ClassVar[str | None] = "ref"
    reply_errors: ClassVar[bool] = False
    metrics: ClassVar[TetherMetrics | None] = None

    _membership: Membership | None = None
    _presence_key: str | None = None
    # The hooks' functions with this connection's resolved values bound (None: no such
    # hook), called with `self` first: a bound method kept here would make the instance
    # a reference cycle, freed only by the garbage collector.
    _on_receive: Callable[..., Any] | None = None
    _on_disconnect: Callable[..., Any] | None = None
    _routes: dict[str, tuple[HookPlan, Callable[..., Any]]] = {}  # never mutated: rebound
    _tasks: TaskGroup | None = None
    _calls: PendingCalls | None = None  # this connection's calls awaiting the client's reply
    # Request ids whose handler runs (only with max_concurrency > 1: else one at a time).
    _in_flight: set[Any] | None = None
    _wants_delivery = False
    _stats: ConnectionStats | None = None  # with `metrics`: this connection's counts

    _plan: ClassVar[ControllerPlan]
    # Chosen per class, in __init_subclass__: the receive loop, and the general
    # loop's handler for a message (`_routed` with @on routes, else `_single`).
    _receive_messages: ReceiveLoop
    _handle: Callable[[Message, Context], Awaitable[None]]
    # Whether the class may take the fast path (the loop tests turn it off).
    _fast_path: ClassVar[bool] = True

    websocket: WebSocket
    _client_code: int = ABNORMAL_CLOSURE  # the code of the client's close, once a loop read it

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self._error: BaseException | None = None
        self._wants_delivery = False  # in the instance: the hot loop reads it per message

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        plan = cls._plan = compile_controller(cls, WebSocketController)
        fast = cls._fast_path and plan.plain_receive
        meter = plan.meter = meter_of(cls)
        if fast and meter is not None:
            # The metered fast path sends to the server itself; through a websocket_class
            # that overrides send, the general loop keeps every frame going through it.
            fast = not plan.through_websocket
        if fast:
            cls._receive_messages = receive_fast if meter is None else receive_fast_metered
        else:
            cls._receive_messages = receive_general
        cls._handle = cls._routed if plan.routes else cls._single

    def __await__(self) -> Generator[Any, None, None]:
        return self.dispatch().__await__()

    # Servers that cannot tell an ASGI 3 class from an ASGI 2 or WSGI app look for
    # these: asgiref's marker (daphne), and a coroutine `app.__call__` (hypercorn).
    _asgi_single_callable: ClassVar[bool] = True

    async def __call__(self) -> None:
        """Serve the connection: the same as awaiting the instance."""
        await self.dispatch()

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

    async def join(
        self,
        group: str,
        *,
        since: Position | str | None = None,
        presence: Any = None,
        presence_key: str | None = None,
        presence_events: bool = False,
    ) -> Recovery:
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

        Presence: with `presence` (a small JSON payload: a dict of an id, a
        name, a device) or `presence_key`, the connection is also present in
        the group under `presence_key` (default: a key of its own), on every
        process, until it leaves or closes; see `presence()`. A payload that is
        not JSON-able, or over 1,024 bytes of JSON, raises `TypeError` or
        `ValueError` here, before joining, and so does a broker that keeps no
        presence (`NotImplementedError`). `presence_events=True` sends the
        connection the group's presence diffs (`{"event": "presence_diff",
        ...}` frames, see the protocol page) as others come and go.
        """
        membership = self._membership
        if membership is None:
            membership = self._membership = Membership(
                self.broker,
                self.websocket,
                self._send,
                maxsize=self.outbound_maxsize,
                policy=self.outbound_policy,
                stats=self._stats,
            )
            if self._tasks is not None:
                self._tasks.start_soon(self._deliver, self._tasks)
            else:
                self._wants_delivery = True  # the receive loop starts delivery
        if presence is None and presence_key is None and not presence_events:
            return await membership.join(group, since)
        present = presence is not None or presence_key is not None
        if present and presence_key is None:
            presence_key = self._presence_key = self._presence_key or uuid4().hex
        return await membership.join_present(
            group, since, presence_key or "", presence, present=present, events=presence_events
        )

    async def presence(self, group: str) -> dict[str, list[Any]]:
        """Who is present in `group`, on every process: `{key: [payload, ...]}`.

        A key present from several connections has one payload per connection.
        """
        return await self.broker.presence(group)

    async def presence_count(self, group: str) -> int:
        """How many distinct keys are present in `group`; cheap at any size."""
        return await self.broker.presence_count(group)

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
        plan = self._plan
        stats = None
        if plan.meter is not None:  # every frame sent is counted (and the session traced)
            stats = self._stats = plan.meter.connect(self.scope, send)
            send = self._send = stats.send
        websocket = self.websocket = self.websocket_class(self.scope, self._receive, send)
        if plan.through_websocket:
            self._receive, self._send = websocket.receive, websocket.send
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
                        # Awaited from here when nothing must surround it (an idle
                        # connection holds one suspended frame per level).
                        if plan.loop_alone and not sessions.stopping:
                            code = await self._receive_messages(ctx, None)
                        if code is None:  # the loop needs something around it, see there
                            code = await self._receive_within(ctx)
                    finally:
                        sessions.live.discard(websocket)
                elif websocket.accepted:  # on_connect accepted, then closed
                    code = websocket.close_code
            except Exception as exc:
                code = await failed(self, unwrap(exc), ctx)
        except BaseException as exc:  # cancellation: clean up, then let it go on
            self._error = exc
            raise
        finally:
            rest = ending(self, ctx, code, stats)
            if rest is not None:
                with teardown_shield():
                    await rest
            # Its traceback holds this frame, and so `self`: a cycle to leave behind.
            self._error = None

    async def _admit(self, websocket: WebSocket) -> bool:
        """Check the origin and negotiate the subprotocol; refuse (403) on failure."""
        plan = self._plan
        if plan.origins is not None and not plan.origins.allows(websocket.headers.get("origin")):
            origin = websocket.headers.get("origin")
            return await self._refuse(websocket, f"origin {origin!r}", "origin")
        if plan.subprotocols:
            offered = self.scope.get("subprotocols") or ()
            try:
                websocket.subprotocol = negotiate_subprotocol(plan.subprotocols, offered)
            except LookupError as exc:
                return await self._refuse(websocket, str(exc), "subprotocol")
        return True

    async def _refuse(self, websocket: WebSocket, why: str, reason: str) -> bool:
        logger.info("%s refused a connection: %s", type(self).__name__, why)
        if self._stats is not None:
            self._stats.refuse(reason)
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
                if self._stats is not None:
                    self._stats.refuse("permission")
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

    async def _receive_within(self, ctx: Context) -> int:
        """Run the receive loop inside what this session needs around it; return the code.

        While the server shuts down: nothing, close at once with 1001. With
        `idle_timeout`: a cancel scope whose deadline each message pushes back;
        reaching it closes with 1001. With joined groups or `max_concurrency > 1`:
        a task group beside the loop, for the delivery task and the handlers.
        """
        websocket = ctx.websocket
        if sessions.stopping:
            await close_quietly(websocket, GOING_AWAY, "server shutting down")
            return await close_code(self)
        plan = self._plan
        code = None
        with anyio.CancelScope() if plan.idle_timeout is not None else _NO_DEADLINE as idle:
            if plan.max_concurrency == 1:
                code = await self._receive_messages(ctx, idle)
            if code is None:
                try:
                    async with anyio.create_task_group() as tasks:
                        self._tasks, self._wants_delivery = tasks, False
                        if self._membership is not None:
                            tasks.start_soon(self._deliver, tasks)
                        code = await self._receive_messages(ctx, idle)  # join() starts delivery
                        if self._calls is not None:
                            self._calls.close()  # no reply can come now
                        if self._membership is not None:
                            self._membership.queue.close()
                        if plan.max_concurrency > 1 and websocket.close_code is None:
                            tasks.cancel_scope.cancel()  # the client left: handlers serve nobody
                        else:  # let what is in flight finish its frame (a close, a 1013), briefly
                            tasks.cancel_scope.deadline = anyio.current_time() + DRAIN_SECONDS
                finally:
                    self._tasks = None
                    if self._calls is not None:
                        self._calls.close()
        if code is None:  # cancelled: the idle deadline passed, or delivery closed with 1013
            await close_quietly(websocket, GOING_AWAY, "idle timeout")
            return await close_code(self)
        return code

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
        plan = self._plan
        try:
            # `parse_json(plan.frame(message))`, without the two calls for a text frame.
            raw = message.get("text") if plan.text_frames else None
            if raw is None:
                raw = plan.frame(message)
            try:
                parsed = loads(raw)
            except DECODE_FAILURES as exc:
                raise DecodeError(INVALID_PAYLOAD, describe_error(exc)) from exc
            if type(parsed) is dict:
                if plan.request_key in parsed:  # a request: answered with the same id
                    return await self._request(parsed, ctx)
                if "call" in parsed and "ok" in parsed and plan.event_key not in parsed:
                    return self._take_reply(parsed)  # a reply to `call`
            hook, bound, data = self._route(parsed)
        except DecodeError as exc:
            return await self.on_decode_error(self.websocket, exc)
        if hook.direct:  # one coroutine less per message than through _call
            result = await bound(self, data)
        else:
            result = await self._call(hook, bound, ctx, data)
        if result is not None:  # `_reply`, inline: a coroutine and a call less per reply
            websocket = self.websocket
            if websocket.application_state is CONNECTED:
                try:
                    await self._send(
                        {"type": "websocket.send", "text": result}
                        if type(result) is str
                        else encode_frame(result)
                    )
                except OSError:
                    client_gone(websocket)

    def _took_reply(self, message: Message) -> bool:
        """Take a reply to a pending call outside the handler slots; False for other messages.

        With every slot held by a handler awaiting `call`, a reply that had to
        wait for a slot would never arrive: while calls are pending, the loop
        looks for replies first (parsing other messages twice meanwhile).
        """
        try:
            parsed = parse_json(self._plan.frame(message))
        except DecodeError:
            return False
        if type(parsed) is not dict or "call" not in parsed or "ok" not in parsed:
            return False
        if self._plan.event_key in parsed:
            return False
        self._take_reply(parsed)
        return True

    def _take_reply(self, reply: dict[str, Any]) -> None:
        call_id = reply["call"]
        if self._calls is None or not self._calls.resolve(call_id, reply):
            # Late (its call timed out) or never asked for: dropped, the connection goes on.
            logger.info("%s: a reply to no pending call (%r) dropped", type(self).__name__, call_id)

    def _route(self, parsed: Any) -> tuple[HookPlan, Callable[..., Any], Any]:
        plan = self._plan
        event = parsed.get(plan.event_key) if type(parsed) is dict else None
        # Only a string names an event: a list or an object as the key is not hashable.
        route = self._routes.get(event) if type(event) is str else None
        if route is None:
            if plan.receive is None:
                raise DecodeError(UNSUPPORTED_DATA, unroutable(parsed, plan.event_key))
            route = (plan.receive, self._on_receive)
        hook, bound = route
        convert = hook.convert
        if convert is None:  # the handler takes the object as parsed
            return hook, bound, parsed
        try:
            return hook, bound, convert(parsed)
        except DECODE_FAILURES as exc:
            raise DecodeError(INVALID_PAYLOAD, describe_error(exc)) from exc

    async def _request(self, parsed: dict[str, Any], ctx: Context) -> None:
        """Answer a request (its handler sees the message without its id)."""
        plan = self._plan
        key = plan.request_key
        request_id = parsed.pop(key)
        kind = type(request_id)
        if kind is not int and kind is not str:  # `valid_id`, without a call per message
            return await self._reply(
                error_reply(None, BAD_REQUEST, f"{key!r} must be an integer or a string", key)
            )
        in_flight = None
        if plan.max_concurrency > 1:  # with concurrent handlers an id may still be in flight
            in_flight = self._in_flight
            if in_flight is None:
                in_flight = self._in_flight = set()
            if request_id in in_flight:
                return await self._reply(
                    error_reply(
                        request_id, DUPLICATE_ID, f"request {request_id!r} is in flight", key
                    )
                )
            in_flight.add(request_id)
        try:
            try:
                hook, bound, data = self._route(parsed)
            except DecodeError as exc:
                if not plan.reply_errors:
                    return await self.on_decode_error(self.websocket, exc)
                code = UNKNOWN_EVENT if exc.code == UNSUPPORTED_DATA else INVALID_DATA
                return await self._reply(error_reply(request_id, code, exc.reason, key))
            try:
                if hook.direct:
                    result = await bound(self, data)
                else:
                    result = await self._call(hook, bound, ctx, data)
            except RequestError as exc:
                reply = {key: request_id, "ok": False, "error": exc.as_error()}
            except (WebSocketException, CallClosed):
                raise  # a close, or a call the closing connection left unanswered
            except Exception as exc:
                if not plan.reply_errors:
                    raise
                logger.error(
                    "%s: %s raised %s", type(self).__name__, hook.name, type(exc).__name__,
                    exc_info=exc,
                )  # fmt: skip
                reply = error_reply(request_id, HANDLER_RAISED, "internal error", key)
            else:
                reply = {key: request_id, "ok": True, "data": result}  # `ok_reply`, inline
        finally:
            if in_flight is not None:
                in_flight.discard(request_id)
        # `_reply`, inline: a reply is always a dict, so it is always JSON text.
        websocket = self.websocket
        if websocket.application_state is CONNECTED:
            try:
                await self._send({"type": "websocket.send", "text": dumps(reply)})
            except OSError:
                client_gone(websocket)

    async def call(self, event: str, data: Any = None, *, timeout: float = 5.0) -> Any:
        """Send this client a request and return the data of its reply.

        The frame is `{event_key: event, "call": n, "data": data}` (calls
        count on their own, apart from the client's request ids, see
        docs/protocol.md); the client answers `{"call": n, "ok": true,
        "data": ...}`. Raises `CallTimeout` (naming the event) when no reply
        comes within `timeout` seconds, `CallError` when the client answers
        with an error, and `CallClosed` (a `ConnectionError`) when the
        connection ends first; left to propagate, that one ends the handler
        like a client disconnect (no `on_error`, no ERROR log). The reply is
        read by the receive loop, so the class needs `@on` routes and
        `max_concurrency > 1` (as SignalR's client results need parallel
        invocations), and `call` works from a handler, not from `on_connect`.
        Declare the calls in `calls` (`{"confirm": (Question, bool)}`) to have
        them in the AsyncAPI document.
        """
        if not self._plan.routes or self._plan.max_concurrency < 2:
            raise RuntimeError(
                f"{type(self).__name__}.call({event!r}) needs @on routes and max_concurrency >= 2: "
                "the receive loop reads the reply while a handler awaits it"
            )
        if self._tasks is None:
            raise RuntimeError(
                f"{type(self).__name__}.call({event!r}) before the receive loop runs "
                "(in on_connect?): nothing would read the reply"
            )
        if self.websocket.application_state is not CONNECTED:  # closed: no reply can come
            raise CallClosed(event, "the connection is closed")
        calls = self._calls
        if calls is None:
            calls = self._calls = PendingCalls()
        call_id, waiter = calls.open(event)
        try:
            await self._send(
                encode_frame({self._plan.event_key: event, "call": call_id, "data": data})
            )
        except OSError:
            calls.waiting.pop(call_id, None)
            self.websocket.application_state = DISCONNECTED  # as client_gone, but CallClosed
            raise CallClosed(event, "the client has gone") from None
        return await calls.wait(call_id, waiter, timeout)

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
                await self._send(encode_frame(value))
            except OSError:
                client_gone(websocket)


_NO_KWARGS: dict[str, Any] = {}  # never mutated


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
