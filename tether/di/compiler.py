"""The signature compiler: a callable's parameters become a plan, once.

A `CallPlan` says, for every parameter, where its value comes from. Each
value source is a small closure built here, so that resolving a parameter
later is one call with no introspection. Everything that can be wrong with a
signature is found here and raised as `ConfigurationError`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from starlette.websockets import WebSocket as StarletteWebSocket

from tether.di.conversion import (
    compile_converter,
    identity,
    is_class,
    is_list_annotation,
    parse_query_string,
    unwrap_annotated,
)
from tether.di.markers import Cookie, Header, Marker, Provide, Query, Required

# Scope levels: a value may only feed values of the same or a wider level.
APP, CONNECTION, MESSAGE = 0, 1, 2
LEVELS = {"app": APP, "connection": CONNECTION, "message": MESSAGE}
LEVEL_NAMES = {APP: "app", CONNECTION: "connection", MESSAGE: "message"}

# How a dependency is invoked.
FUNCTION, COROUTINE, GENERATOR, ASYNC_GENERATOR = range(4)

# Names reserved for what the connection offers, and the level of each.
RESERVED: dict[str, int] = {
    "websocket": CONNECTION,
    "scope": CONNECTION,
    "user": CONNECTION,
    "auth": CONNECTION,
    "session": CONNECTION,
    "state": CONNECTION,
    "data": MESSAGE,
    "close_code": MESSAGE,
    "close_reason": MESSAGE,
}
CONNECTION_NAMES = frozenset(n for n, level in RESERVED.items() if level == CONNECTION)
# What a dependency may ask for: everything but on_disconnect's own values.
DEPENDENCY_NAMES = frozenset(RESERVED) - {"close_code", "close_reason"}

# Names a newcomer gives a reserved value (Starlette's `on_receive(self, websocket, data)`
# and `on_disconnect(self, websocket, close_code)` spell them differently elsewhere).
LIKELY_MEANT: dict[str, str] = {
    "message": "data",
    "msg": "data",
    "payload": "data",
    "body": "data",
    "text": "data",
    "content": "data",
    "code": "close_code",
    "status": "close_code",
    "status_code": "close_code",
    "reason": "close_reason",
    "ws": "websocket",
    "socket": "websocket",
    "conn": "websocket",
    "connection": "websocket",
}

_FOREIGN_MARKER_MODULES = frozenset({"fastapi", "litestar", "lilya", "esmerald", "ravyn"})


class ConfigurationError(TypeError):
    """A signature tether cannot serve; raised when the class is defined."""


class ParameterError(Exception):
    """A value a hook asked for is missing or cannot be converted.

    Raised while a connection is being set up; the connection is refused
    before accept and the message names the parameter.
    """


class Param:
    """One parameter of a plan: its name, level and how to get its value.

    `source`, `key` and `default` only describe it (for
    `tether.controllers.describe_controller`): where the value comes from
    (`"reserved"`, `"query"`, `"header"`, `"cookie"`, `"path"` or
    `"dependency"`), its name there (a header's in lowercase), and what a
    missing value becomes (`inspect.Parameter.empty`: the connection is refused).
    Resolving reads only `get` and `dependency`.
    """

    __slots__ = ("default", "dependency", "get", "key", "level", "name", "source")

    def __init__(
        self,
        name: str,
        level: int,
        get: Callable[[Any], Any] | None = None,
        dependency: Dependency | None = None,
        *,
        source: str = "reserved",
        key: str | None = None,
        default: Any = inspect.Parameter.empty,
    ) -> None:
        self.name = name
        self.level = level
        self.get = get
        self.dependency = dependency
        self.source = source
        self.key = key
        self.default = default


class CallPlan:
    """How to call one callable: its kind and the plan of each parameter.

    What `compile_dependency` returns; pass its `params` to `solve`, and
    call `call` with the result.
    """

    __slots__ = ("call", "kind", "level", "name", "needs", "params")

    def __init__(self, call: Callable[..., Any], kind: int, params: tuple[Param, ...]) -> None:
        self.call = call
        self.kind = kind
        self.params = params
        self.name = name_of(call)
        self.level = max((p.level for p in params), default=APP)
        self.needs: frozenset[str] = frozenset().union(
            *(
                p.dependency.plan.needs if p.dependency else {p.name} & RESERVED.keys()
                for p in params
            )
        )


class Dependency:
    """A `Provide` marker after compilation."""

    __slots__ = ("level", "plan", "use_cache")

    def __init__(self, plan: CallPlan, level: int, use_cache: bool) -> None:
        self.plan = plan
        self.level = level
        self.use_cache = use_cache


_plans: dict[Any, CallPlan] = {}


def compile_dependency(call: Callable[..., Any], stack: tuple[Any, ...] = ()) -> CallPlan:
    """The plan of a dependency callable, compiled on first use and reused.

    `stack` holds the callables being compiled above this one (for cycle errors).
    """
    plan = _plans.get(call)
    if plan is None:
        plan = _plans[call] = _compile(call, name_of(call), allowed=DEPENDENCY_NAMES, stack=stack)
    return plan


def compile_hook(
    func: Callable[..., Any], where: str, *, allowed: frozenset[str], method: bool = True
) -> CallPlan:
    """The plan of a controller hook, or of a plain callable with `method=False`.

    A method's first parameter (`self`) is skipped. `where` names the hook
    in errors (`"Chat.on_connect"`); `allowed` is the set of reserved names
    this hook may ask for.
    """
    plan = _compile(func, where, allowed=allowed, stack=(), skip_first=method)
    for p in plan.params:
        missing = (p.dependency.plan.needs if p.dependency else set()) - allowed
        if missing:
            raise ConfigurationError(
                f"{where}, parameter {p.name!r}: dependency "
                f"{p.dependency.plan.name} asks for {sorted(missing)[0]!r}, "
                f"which {where.rsplit('.', 1)[-1]} does not have."
            )
    return plan


def _compile(
    call: Callable[..., Any],
    where: str,
    *,
    allowed: frozenset[str],
    stack: tuple[Any, ...],
    skip_first: bool = False,
) -> CallPlan:
    try:
        signature = inspect.signature(call)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{where}: cannot read the signature of {call!r}: {exc}") from exc
    hints = type_hints(call)
    parameters = list(signature.parameters.values())
    if skip_first:
        parameters = parameters[1:]
    params = tuple(
        _compile_param(p, hints.get(p.name, p.annotation), where, allowed, (*stack, call))
        for p in parameters
    )
    return CallPlan(call, _kind_of(call), params)


def _compile_param(
    parameter: inspect.Parameter,
    annotation: Any,
    where: str,
    allowed: frozenset[str],
    stack: tuple[Any, ...],
) -> Param:
    name = parameter.name
    at = f"{where}, parameter {name!r}"
    if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
        raise ConfigurationError(f"{at}: *args and **kwargs cannot be injected; name each value.")
    if parameter.kind is parameter.POSITIONAL_ONLY:
        raise ConfigurationError(f"{at}: positional-only parameters cannot be injected.")
    base, meta = unwrap_annotated(annotation)
    marker, default = _marker_of(parameter.default, meta, at)

    if name in RESERVED:
        if marker is not None:
            raise ConfigurationError(
                f"{at}: {name!r} is a reserved name (tether passes the connection's "
                f"{name}); rename the parameter to use {marker!r}."
            )
        if name not in allowed:
            raise ConfigurationError(
                f"{at}: {name!r} is not available here; it is passed to "
                f"{_where_reserved(name)} only."
            )
        return Param(name, RESERVED[name], _RESERVED_GETTERS[name], key=name)
    if is_class(base) and issubclass(base, StarletteWebSocket):
        return Param(name, CONNECTION, _RESERVED_GETTERS["websocket"], key="websocket")
    if isinstance(marker, Provide):
        dependency = _compile_provide(marker, at, stack)
        return Param(name, LEVELS[marker.scope], dependency=dependency, source="dependency")
    if marker is not None:
        assert isinstance(marker, (Query, Header, Cookie))
        if marker.default is not Required:
            default = marker.default
        key = marker.alias or name
        if isinstance(marker, Header) and marker.alias is None:
            key = name.replace("_", "-")
        getter = _request_getter(marker, key, base, default, at)
        if isinstance(marker, Header):
            return Param(
                name, CONNECTION, getter, source="header", key=key.lower(), default=default
            )
        source = "cookie" if isinstance(marker, Cookie) else "query"
        return Param(name, CONNECTION, getter, source=source, key=key, default=default)
    meant = LIKELY_MEANT.get(name)
    if meant not in allowed:
        meant = None
    elif default is inspect.Parameter.empty and _is_structured(base):
        # No path convertor yields a model or a container: this is the message, misnamed.
        raise ConfigurationError(
            f"{at}: {_type_name(base)} cannot come from the path; did you mean {meant!r}? "
            f"Rename {name!r} to {meant!r} to receive the {_reserved_meaning(meant)}."
        )
    return _path_or_default(name, base, default, at, meant)


def _marker_of(default: Any, meta: tuple[Any, ...], at: str) -> tuple[Marker | None, Any]:
    """The tether marker of a parameter and its plain default, if any."""
    for item in (default, *meta):
        module = type(item).__module__.partition(".")[0]
        if module in _FOREIGN_MARKER_MODULES and not isinstance(item, type):
            raise ConfigurationError(
                f"{at}: {type(item).__module__}.{type(item).__name__} is another framework's "
                "marker; use tether's Provide, Query, Header or Cookie instead."
            )
    markers = [m for m in meta if isinstance(m, Marker)]
    if isinstance(default, Marker):
        markers.append(default)
        default = inspect.Parameter.empty
    if len(markers) > 1:
        raise ConfigurationError(f"{at}: one marker per parameter, got {markers!r}.")
    return (markers[0] if markers else None), default


def _compile_provide(marker: Provide, at: str, stack: tuple[Any, ...]) -> Dependency:
    call = marker.dependency
    if call in stack:
        cycle = " -> ".join(name_of(c) for c in (*stack[stack.index(call) :], call))
        raise ConfigurationError(f"{at}: dependency cycle {cycle}.")
    try:
        plan = compile_dependency(call, stack)
    except ConfigurationError as exc:
        # Lead the message with the path from the hook down to the culprit.
        raise ConfigurationError(f"{at}: {exc}") from exc
    level = LEVELS[marker.scope]
    if plan.level > level:
        narrower = next(p for p in plan.params if p.level > level)
        raise ConfigurationError(
            f"{at}: {marker.scope}-scoped dependency {plan.name} cannot use "
            f"{narrower.name!r}, which lives only per {LEVEL_NAMES[narrower.level]}; "
            f"give {plan.name} scope={LEVEL_NAMES[plan.level]!r} or narrow it."
        )
    return Dependency(plan, level, marker.use_cache)


def _request_getter(marker: Marker, key: str, base: Any, default: Any, at: str) -> Callable:
    """The getter of a query, header or cookie value named `key` (empty `default`: required)."""
    assert isinstance(marker, (Query, Header, Cookie))
    if default is inspect.Parameter.empty:
        default = Required
    many = is_list_annotation(base)
    if many and isinstance(marker, Cookie):
        raise ConfigurationError(f"{at}: a cookie has one value; drop the list annotation.")
    convert = _converter(base, at)
    label = f"{marker.source} {key!r}"

    if isinstance(marker, Cookie):

        def lookup(ctx: Any) -> Any:
            return ctx.websocket.cookies.get(key)
    elif isinstance(marker, Header):
        # Read the scope's raw list as Starlette's `Headers` does (ASGI header
        # names are lowercase bytes), without building a `Headers` per connection.
        raw_key = key.lower().encode("latin-1")

        def lookup(ctx: Any) -> Any:
            if many:
                found = [
                    v.decode("latin-1") for k, v in ctx.websocket.scope["headers"] if k == raw_key
                ]
                return found or None
            for name, value in ctx.websocket.scope["headers"]:
                if name == raw_key:
                    return value.decode("latin-1")  # the first one, as `Headers.get`
            return None
    else:

        def lookup(ctx: Any) -> Any:
            query = ctx.query
            if query is None:  # parsed once per connection, on first use
                query = ctx.query = parse_query_string(ctx.websocket.scope.get("query_string", b""))
            found = query.get(key)
            if found is None:
                return None
            return found if many else found[-1]  # the last value wins, as in Starlette

    return _converting(lookup, convert, default, label)


def _is_structured(annotation: Any) -> bool:
    """Whether `annotation` is a model or a container: what messages hold, never a path."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_structured(arg) for arg in typing.get_args(annotation))
    base = origin or annotation
    if base in (dict, list, tuple, set):
        return True
    return isinstance(base, type) and (
        dataclasses.is_dataclass(base)
        or typing.is_typeddict(base)
        or hasattr(base, "__struct_fields__")  # msgspec.Struct
        or hasattr(base, "model_fields")  # pydantic
    )


def _type_name(annotation: Any) -> str:
    """`annotation` as the user wrote it: `list[Item]`, `Item | None`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "None"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in args)
    if origin is not None and args:
        return f"{_type_name(origin)}[{', '.join(_type_name(arg) for arg in args)}]"
    return getattr(annotation, "__qualname__", None) or repr(annotation)


def _reserved_meaning(name: str) -> str:
    return {
        "data": "message",
        "close_code": "close code",
        "close_reason": "close reason",
        "websocket": "websocket",
    }[name]


def _path_or_default(
    name: str, base: Any, default: Any, at: str, meant: str | None = None
) -> Param:
    convert = _converter(base, at)
    required = default is inspect.Parameter.empty
    fallback = Required if required else default

    def lookup(ctx: Any) -> Any:
        if ctx.websocket is None:  # app scope: there is no route
            return None
        return ctx.websocket.scope.get("path_params", _EMPTY).get(name)

    hint = f"; did you mean {meant!r}?" if meant else ""
    getter = _converting(lookup, convert, fallback, f"path parameter {name!r}", hint)
    # Without a default the value can only come from a connection's route.
    return Param(
        name, CONNECTION if required else APP, getter, source="path", key=name, default=default
    )


_EMPTY: Mapping[str, Any] = {}


def _converting(
    lookup: Callable[[Any], Any],
    convert: Callable[[Any], Any],
    default: Any,
    label: str,
    hint: str = "",
) -> Callable[[Any], Any]:
    if convert is identity:  # a str: nothing to convert, nothing that can fail

        def get_as_is(ctx: Any) -> Any:
            raw = lookup(ctx)
            if raw is None:
                if default is Required:
                    raise ParameterError(f"{label} is required{hint}")
                return default
            return raw

        return get_as_is

    def get(ctx: Any) -> Any:
        raw = lookup(ctx)
        if raw is None:
            if default is Required:
                raise ParameterError(f"{label} is required{hint}")
            return default
        try:
            return convert(raw)
        except (ValueError, TypeError) as exc:
            raise ParameterError(f"{label}: {exc}{hint}") from None

    return get


def _converter(base: Any, at: str) -> Callable[[Any], Any]:
    try:
        return compile_converter(base)
    except TypeError as exc:
        raise ConfigurationError(f"{at}: {exc}.") from exc


def type_hints(call: Any) -> dict[str, Any]:
    """The resolved annotations of a callable (of `__init__` for a class)."""
    target = call
    if isinstance(call, type):
        target = call.__init__
    elif not (inspect.isfunction(call) or inspect.ismethod(call)) and hasattr(call, "__call__"):  # noqa: B004
        target = type(call).__call__
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:
        # Unresolvable forward references fall back to the raw annotations.
        return {}


def _kind_of(call: Any) -> int:
    target = call
    if not (inspect.isfunction(call) or inspect.ismethod(call) or isinstance(call, type)):
        inner = getattr(call, "func", None)  # functools.partial
        target = inner if inner is not None else getattr(call, "__call__", call)  # noqa: B004
    if inspect.isasyncgenfunction(target):
        return ASYNC_GENERATOR
    if inspect.isgeneratorfunction(target):
        return GENERATOR
    if inspect.iscoroutinefunction(target):
        return COROUTINE
    return FUNCTION


def name_of(call: Any) -> str:
    """How errors and logs name a callable (or a generator): its qualified name.

    `partial(check, ...)` is named `check`, and an instance `Check()` by its class.
    """
    while isinstance(call, functools.partial):
        call = call.func
    name = getattr(call, "__qualname__", None)
    return name if isinstance(name, str) else type(call).__qualname__


def _where_reserved(name: str) -> str:
    if name == "data":
        return "on_receive, @on handlers and message-scoped dependencies"
    return "on_disconnect"


def _from_middleware(ctx: Any, key: str, middleware: str) -> Any:
    scope = ctx.websocket.scope
    if key not in scope:
        raise RuntimeError(
            f"a hook asks for {key!r}, which Starlette's {middleware} provides; "
            "add it to the app's middleware"
        )
    return scope[key]


_RESERVED_GETTERS: dict[str, Callable[[Any], Any]] = {
    "websocket": lambda ctx: ctx.websocket,
    "scope": lambda ctx: ctx.websocket.scope,
    "user": lambda ctx: _from_middleware(ctx, "user", "AuthenticationMiddleware"),
    "auth": lambda ctx: _from_middleware(ctx, "auth", "AuthenticationMiddleware"),
    "session": lambda ctx: _from_middleware(ctx, "session", "SessionMiddleware"),
    "state": lambda ctx: ctx.websocket.state,
    "data": lambda ctx: ctx.data,
    "close_code": lambda ctx: ctx.close_code,
    "close_reason": lambda ctx: ctx.close_reason,
}
