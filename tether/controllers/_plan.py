"""What a controller class decides once, when it is defined.

`compile_controller` reads the hooks and `@on` handlers of a class and builds
a `ControllerPlan`: for each hook, which parameters are resolved when a client
connects, which per call, and how a message becomes its `data`.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from tether.controllers.codecs import (
    ENCODINGS,
    UNTYPED,
    compile_converter,
    compile_decoder,
    frame_reader,
)
from tether.controllers.declared_groups import check_groups
from tether.controllers.guards import OriginPolicy, Permission
from tether.controllers.limits import RateLimit
from tether.controllers.routing import events_of
from tether.controllers.unawaited import refuse_unawaited_calls
from tether.controllers.websocket import WebSocket
from tether.di._unrolled import unroll
from tether.di.compiler import (
    CONNECTION,
    CONNECTION_NAMES,
    MESSAGE,
    RESERVED,
    CallPlan,
    ConfigurationError,
    Param,
    compile_hook,
    type_hints,
)
from tether.di.conversion import unwrap_annotated
from tether.di.resolver import PLAIN_TYPES, returns_awaitable

CONNECT_NAMES = CONNECTION_NAMES
RECEIVE_NAMES = CONNECTION_NAMES | {"data"}
DISCONNECT_NAMES = CONNECTION_NAMES | {"close_code", "close_reason"}

# The `on_*` names a controller may define; any other `on_*` method needs `@on`.
HOOK_NAMES = ("on_connect", "on_receive", "on_disconnect", "on_decode_error", "on_error")
# Names the peers use for the same hooks, which difflib would not match.
_PEER_HOOK_NAMES = {
    "on_accept": "on_connect",
    "on_open": "on_connect",
    "on_connected": "on_connect",
    "on_message": "on_receive",
    "on_text": "on_receive",
    "on_bytes": "on_receive",
    "on_json": "on_receive",
    "on_close": "on_disconnect",
    "on_closed": "on_disconnect",
    "on_exception": "on_error",
}


class HookPlan:
    """One hook, compiled.

    `static` parameters are resolved once per connection and bound; `per_call`
    ones (message-scoped dependencies, `close_code`, ...) on every call. When
    nothing but `data` varies per call, `per_call` is None and the hook is
    called directly with the decoded data. `func` is always a coroutine
    function (a plain def is wrapped, see `_awaiting`); `source` is the hook
    as the class defines it.
    """

    __slots__ = (
        "checks",
        "convert",
        "data_first",
        "data_name",
        "decode",
        "direct",
        "func",
        "is_async",
        "name",
        "params",
        "per_call",
        "resolve_per_call",
        "resolve_static",
        "source",
        "static",
    )

    def __init__(self, func: Callable[..., Any], name: str, plan: CallPlan) -> None:
        self.source = func
        self.name = name
        # A plain-def hook is called through a coroutine that awaits what it returns
        # when that is awaitable, so every hook is awaited and none is silently skipped.
        self.func = func if inspect.iscoroutinefunction(func) else _awaiting(func)
        self.is_async = True
        params = self.params = plan.params  # every parameter, in signature order
        self.static: tuple[Param, ...] = tuple(p for p in params if p.level < MESSAGE)
        varying = tuple(p for p in params if p.level == MESSAGE)
        self.data_name = "data" if any(p.name == "data" for p in varying) else None
        self.data_first = bool(params) and params[0].name == "data"
        only_data = all(p.name == "data" and p.dependency is None for p in varying)
        self.per_call: tuple[Param, ...] | None = None if only_data else varying
        # Whether a call is `func(self, data)` with nothing resolved around it.
        self.direct = self.per_call is None and self.data_first
        # `solve` for these parameters, unrolled into straight-line code (None: nothing to solve).
        self.resolve_static = unroll(self.static, name) if self.static else None
        self.resolve_per_call = unroll(self.per_call, name) if self.per_call else None
        # Request values that only per-call dependencies read are still checked
        # at connect, so a missing one refuses the handshake.
        self.checks = tuple(_request_values(varying))
        self.decode: Callable[[dict[str, Any]], Any] | None = None
        self.convert: Callable[[Any], Any] | None = None


class ControllerPlan:
    """Every hook of a controller class, and its guards and limits, compiled."""

    __slots__ = (
        "binds",
        "checks_messages",
        "connect",
        "connection_scoped",
        "disconnect",
        "event_key",
        "frame",
        "guards_handshake",
        "idle_timeout",
        "loop_alone",
        "max_concurrency",
        "max_message_size",
        "meter",
        "origins",
        "permissions",
        "plain_connect",
        "rate_limit",
        "receive",
        "reply_errors",
        "request_key",
        "routes",
        "subprotocols",
        "text_frames",
        "through_websocket",
    )

    def __init__(
        self,
        connect: HookPlan | None,
        receive: HookPlan | None,
        disconnect: HookPlan | None,
        routes: dict[str, HookPlan],
    ) -> None:
        self.connect = connect
        self.receive = receive
        self.disconnect = disconnect
        self.routes = routes
        # With @on routes every message is JSON, from the frames `encoding` allows.
        self.frame: Callable[[dict[str, Any]], Any] = frame_reader(None)
        # Whether a text frame's text is the payload as it comes (every encoding but "bytes").
        self.text_frames = True
        self.origins: OriginPolicy | None = None
        self.subprotocols: tuple[str, ...] = ()
        self.permissions: tuple[Permission, ...] = ()
        self.max_message_size: int | None = None
        self.rate_limit: RateLimit | None = None
        self.idle_timeout: float | None = None
        self.max_concurrency = 1
        # The class's message keys and request policy, read per message: from the
        # plan, since a class attribute read through the instance is not specialized.
        self.event_key = "type"
        self.request_key: str | None = "ref"
        self.reply_errors = False
        # Whether a handshake passes an origin check or subprotocol negotiation.
        self.guards_handshake = False
        # Whether each received message passes a size or rate check.
        self.checks_messages = False
        # Whether the receive loop needs nothing around it (no idle deadline, no handler tasks).
        self.loop_alone = True
        # Whether `websocket_class` overrides `receive` or `send`: then every frame goes
        # through them (else the loops talk to the ASGI channel, and check states themselves).
        self.through_websocket = False
        # Whether any dependency lives per connection (else no connection scope is made).
        self.connection_scoped = False
        # The class's `ControllerMeter` when it has `metrics` (set by the controller class).
        self.meter: Any = None
        # Whether a client's connect resolves or binds anything before on_connect.
        self.binds = bool(
            receive
            or disconnect
            or routes
            or (connect is not None and (connect.static or connect.checks))
        )
        # Whether on_connect is one async call, with nothing resolved per call.
        self.plain_connect = connect is not None and connect.per_call is None and connect.is_async

    @property
    def plain_receive(self) -> bool:
        """Whether messages can take the hot path: one async `on_receive(data)`, no limits."""
        hook = self.receive
        return (
            hook is not None
            and not self.routes
            and hook.per_call is None
            and hook.is_async
            and hook.data_first
            and not self.checks_messages
            and self.idle_timeout is None
            and self.max_concurrency == 1
        )


def _request_values(
    params: tuple[Param, ...], through: tuple[Any, ...] = ()
) -> list[tuple[tuple[Any, ...], Callable[[Any], Any]]]:
    """Request-value getters below per-call dependencies, with the dependencies they sit under."""
    checks = []
    for param in params:
        if param.dependency is not None:
            plan = param.dependency.plan
            checks += _request_values(plan.params, (*through, plan.call))
        elif param.level <= CONNECTION and param.name not in RESERVED and param.get:
            checks.append((through, param.get))
    return checks


def compile_controller(cls: type, base: type) -> ControllerPlan:
    """Compile the hooks of controller class `cls` (hooks inherited from `base` are absent)."""
    owner = cls.__name__
    encoding = cls.encoding
    if encoding not in ENCODINGS:
        raise ConfigurationError(f"{owner}.encoding must be one of {ENCODINGS}, got {encoding!r}")
    refuse_unawaited_calls(cls)

    def hook(name: str, allowed: frozenset[str]) -> HookPlan | None:
        func = getattr(cls, name, None)
        if func is None or func is getattr(base, name, None):
            return None
        where = f"{owner}.{name}"
        return HookPlan(func, where, compile_hook(func, where, allowed=allowed))

    routes: dict[str, HookPlan] = {}
    for attr in dir(cls):
        func = getattr(cls, attr, None)
        if attr.startswith("on_") and attr not in HOOK_NAMES and not events_of(func):
            _refuse_unknown_hook(owner, attr, func)
        for event in events_of(func):
            where = f"{owner}.{attr}"
            plan = HookPlan(func, where, compile_hook(func, where, allowed=RECEIVE_NAMES))
            if event in routes and routes[event].source is not func:
                raise ConfigurationError(
                    f"{owner}: event {event!r} is routed to both {routes[event].name} and {where}."
                )
            routes[event] = plan

    receive = hook("on_receive", RECEIVE_NAMES)
    for plan in routes.values():
        _compile_data(plan, encoding, routed=True, event=True)
    if receive is not None:
        _compile_data(receive, encoding, routed=bool(routes))
    plan = ControllerPlan(
        hook("on_connect", CONNECT_NAMES), receive, hook("on_disconnect", DISCONNECT_NAMES), routes
    )
    plan.frame = frame_reader(encoding)
    plan.text_frames = encoding != "bytes"
    plan.event_key, plan.request_key = cls.event_key, cls.request_key
    plan.reply_errors = bool(cls.reply_errors)
    _compile_guards(cls, plan)
    hooks = [plan.connect, plan.receive, plan.disconnect, *plan.routes.values()]
    plan.connection_scoped = any(
        _has_connection_dependency((*hook.static, *(hook.per_call or ())))
        for hook in hooks
        if hook is not None
    ) or any(_has_connection_dependency(p.plan.params) for p in plan.permissions)
    return plan


def _check_calls(owner: str, calls: Any, plan: ControllerPlan) -> None:
    """`calls` maps each event the server calls to its `(data, result)` types."""
    if not isinstance(calls, Mapping):
        raise ConfigurationError(
            f"{owner}.calls must be a dict of event -> (data type, result type), "
            f"e.g. {{'confirm': (Question, bool)}}; got {type(calls).__name__}"
        )
    for event, types in calls.items():
        if not isinstance(event, str) or not event:
            raise ConfigurationError(f"{owner}.calls: an event must be a non-empty string")
        if not isinstance(types, tuple) or len(types) != 2:
            raise ConfigurationError(
                f"{owner}.calls[{event!r}] must be a (data type, result type) pair, got {types!r}"
            )
    if calls and (not plan.routes or plan.max_concurrency < 2):
        raise ConfigurationError(
            f"{owner}.calls: `call` needs @on routes and max_concurrency >= 2 "
            "(the receive loop reads the reply while a handler awaits it)"
        )


def _refuse_unknown_hook(owner: str, attr: str, func: Any) -> None:
    """A misspelled hook would never be called: refuse it, naming the hook it likely meant."""
    if not callable(func):
        return  # a constant such as `on_error_reason = "oops"` is not a hook
    meant = _PEER_HOOK_NAMES.get(attr) or next(
        iter(difflib.get_close_matches(attr, HOOK_NAMES, n=1)), None
    )
    hint = f"did you mean {meant}? " if meant else ""
    raise ConfigurationError(
        f"{owner}.{attr} is not a hook, so tether would never call it: {hint}"
        f"The hooks are {', '.join(HOOK_NAMES)}. To route an event to it, decorate it "
        f'with @on("event"); for a helper, pick a name without the on_ prefix (e.g. _{attr}).'
    )


def _compile_guards(cls: Any, plan: ControllerPlan) -> None:
    owner = cls.__name__
    if cls.allowed_origins is not None:
        plan.origins = OriginPolicy(cls.allowed_origins, require=cls.require_origin, owner=owner)
    elif cls.require_origin:
        raise ConfigurationError(f"{owner}.require_origin needs allowed_origins to be set")
    if isinstance(cls.subprotocols, str):
        raise ConfigurationError(f"{owner}.subprotocols must be a list, not a string")
    plan.subprotocols = tuple(cls.subprotocols)
    plan.permissions = tuple(Permission(p, owner) for p in cls.permissions)
    for name in ("max_message_size", "idle_timeout"):
        value = getattr(cls, name)
        if value is not None and (not isinstance(value, (int, float)) or value <= 0):
            raise ConfigurationError(f"{owner}.{name} must be a positive number or None")
    plan.max_message_size = cls.max_message_size
    plan.idle_timeout = cls.idle_timeout
    limit = cls.rate_limit
    if limit is not None and not isinstance(limit, RateLimit):
        raise ConfigurationError(f"{owner}.rate_limit must be a RateLimit(...) or None")
    plan.rate_limit = limit
    if cls.outbound_policy not in ("drop_oldest", "close"):
        raise ConfigurationError(
            f"{owner}.outbound_policy must be 'drop_oldest' or 'close', got {cls.outbound_policy!r}"
        )
    if not isinstance(cls.outbound_maxsize, int) or cls.outbound_maxsize < 1:
        raise ConfigurationError(f"{owner}.outbound_maxsize must be an integer >= 1")
    if not isinstance(cls.max_concurrency, int) or cls.max_concurrency < 1:
        raise ConfigurationError(f"{owner}.max_concurrency must be an integer >= 1")
    plan.max_concurrency = cls.max_concurrency
    key = cls.request_key
    if key is not None and (not isinstance(key, str) or not key or key == cls.event_key):
        raise ConfigurationError(
            f"{owner}.request_key must be a non-empty string other than event_key, or None; "
            f"got {key!r}"
        )
    _check_calls(owner, cls.calls, plan)
    check_groups(owner, cls.groups)
    plan.guards_handshake = plan.origins is not None or bool(plan.subprotocols)
    plan.checks_messages = plan.max_message_size is not None or plan.rate_limit is not None
    plan.loop_alone = plan.idle_timeout is None and plan.max_concurrency == 1
    websocket_class = cls.websocket_class
    if not (isinstance(websocket_class, type) and issubclass(websocket_class, WebSocket)):
        raise ConfigurationError(
            f"{owner}.websocket_class must be tether.WebSocket or a subclass of it, "
            f"got {websocket_class!r}"
        )
    plan.through_websocket = not websocket_class._direct_accept


def _has_connection_dependency(params: tuple[Param, ...]) -> bool:
    for param in params:
        dep = param.dependency
        if dep is None:
            continue
        if dep.level == CONNECTION or _has_connection_dependency(dep.plan.params):
            return True
    return False


def _compile_data(
    plan: HookPlan, encoding: str | None, *, routed: bool, event: bool = False
) -> None:
    annotation = _data_annotation(plan)
    try:
        if event and _takes_the_object(annotation):
            # An event's message is always a JSON object (its event key found it): a
            # handler taking any object or a `dict` gets it without a call (`convert` None).
            plan.convert = None
        elif routed:
            plan.convert = compile_converter(annotation)
        else:
            plan.decode = compile_decoder(encoding, annotation)
    except TypeError as exc:
        raise ConfigurationError(f"{plan.name}, parameter 'data': {exc}") from exc


def _takes_the_object(annotation: Any) -> bool:
    base = unwrap_annotated(annotation)[0]
    return base in UNTYPED or base is dict


def _data_annotation(plan: HookPlan) -> Any:
    if plan.data_name is None:
        return inspect.Parameter.empty
    hints = type_hints(plan.source)
    return hints.get("data", inspect.signature(plan.source).parameters["data"].annotation)


def _awaiting(func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` as a coroutine function: its result, awaited when it is awaitable.

    A plain `def` may return an awaitable: a sync decorator around an async
    function, a `functools.partial` of one, a method handing back a coroutine.
    """

    @functools.wraps(func)
    async def hook(*args: Any, **kwargs: Any) -> Any:
        result = func(*args, **kwargs)
        if type(result) not in PLAIN_TYPES and returns_awaitable(result):
            result = await result
        return result

    return hook
