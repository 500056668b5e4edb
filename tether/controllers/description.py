"""A read-only description of a controller class, for documentation and tooling.

`describe_controller(Chat)` says what a controller's hooks, `@on` handlers
and permissions take (every parameter: where its value comes from, its name
there, its annotation and default, and the dependencies below it), what they
return, which message types the class lists in `sends`, and the calls and
groups it declares (`calls`, `groups`). It is built from
what tether compiled when the class was defined, so it says what tether does,
not a second reading of the signatures; AsyncAPI documents are made from it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from tether.controllers._plan import HookPlan
from tether.controllers.controller import WebSocketController
from tether.controllers.declared_groups import Group, group_prefix
from tether.di.compiler import LEVEL_NAMES, Param, type_hints

__all__ = [
    "ControllerInfo",
    "DependencyInfo",
    "HookInfo",
    "ParameterInfo",
    "ParameterSource",
    "describe_controller",
]

ParameterSource = Literal["reserved", "query", "header", "cookie", "path", "dependency"]
"""Where a parameter's value comes from (see [Parameters](../parameters.md))."""


class DependencyInfo(NamedTuple):
    """A `Provide(call, scope=..., use_cache=...)` and the parameters of `call`."""

    call: Callable[..., Any]
    scope: Literal["app", "connection", "message"]
    use_cache: bool
    parameters: tuple[ParameterInfo, ...]


class ParameterInfo(NamedTuple):
    """One parameter of a hook, a permission or a dependency.

    Attributes:
        name: The parameter's name in the signature.
        source: `"reserved"` (`websocket`, `data`, `close_code`, ...; also
            any parameter annotated `WebSocket`), `"query"`, `"header"`,
            `"cookie"`, `"path"` (a path parameter, else its default) or
            `"dependency"`.
        key: The name the value is read under: the reserved name, the query
            key, the header name (lowercase), the cookie or path parameter
            name; None for a dependency.
        annotation: The annotation as written (`Annotated[...]` kept),
            resolved where it can be; `inspect.Parameter.empty` if none.
        default: What a missing value becomes; `inspect.Parameter.empty`
            when it is required (a client without it is refused).
        dependency: For `source == "dependency"`, what is injected.
    """

    name: str
    source: ParameterSource
    key: str | None
    annotation: Any
    default: Any
    dependency: DependencyInfo | None = None

    @property
    def required(self) -> bool:
        """Whether a connection without this value is refused (query, header, cookie, path)."""
        return self.default is inspect.Parameter.empty


class HookInfo(NamedTuple):
    """A hook (`on_connect`, `on_receive`, `on_disconnect`), an `@on` handler or a permission.

    Attributes:
        name: `Controller.method`, or `Controller.permissions[name]`.
        function: The function itself (a permission's callable).
        parameters: Its parameters, `self` left out.
        returns: The return annotation, resolved where it can be;
            `inspect.Parameter.empty` if none.
    """

    name: str
    function: Callable[..., Any]
    parameters: tuple[ParameterInfo, ...]
    returns: Any

    @property
    def data(self) -> ParameterInfo | None:
        """The `data` parameter (the received message), if the hook takes one."""
        return next((p for p in self.parameters if p.name == "data"), None)


class ControllerInfo(NamedTuple):
    """What `describe_controller` returns: everything a controller class declares.

    Attributes:
        controller: The class described.
        encoding: Its `encoding` (`"text"`, `"bytes"`, `"json"` or None).
        event_key: The key `@on` routing reads (`"type"` by default).
        on_connect: The hook, or None when the class (or a base) has none.
        on_receive: The hook (with `@on` handlers: the fallback), or None.
        on_disconnect: The hook, or None.
        events: Each `@on` event, in sorted order, and its handler (one
            handler may serve several events; it is then the same `HookInfo`).
        permissions: The `permissions` callables, in order.
        sends: The message types listed in `sends`, besides return values.
        calls: Each event the server calls (`calls`, made with `call`) and
            the `(data, result)` types of its payload and of the reply.
        groups: Each group name or `"prefix*"` pattern in `groups`, as a
            `Group` whose `history` is always True or False: where the class
            left it None, the broker's `history=` setting decided.
    """

    controller: type[WebSocketController]
    encoding: str | None
    event_key: str
    on_connect: HookInfo | None
    on_receive: HookInfo | None
    on_disconnect: HookInfo | None
    events: Mapping[str, HookInfo]
    permissions: tuple[HookInfo, ...]
    sends: tuple[Any, ...]
    calls: Mapping[str, tuple[Any, Any]] = MappingProxyType({})
    groups: Mapping[str, Group] = MappingProxyType({})

    @property
    def hooks(self) -> tuple[HookInfo, ...]:
        """The hooks the class has, then each `@on` handler once, in event order."""
        found = [self.on_connect, self.on_receive, self.on_disconnect, *self.events.values()]
        unique: dict[int, HookInfo] = {}
        for hook in found:
            if hook is not None:
                unique.setdefault(id(hook), hook)
        return tuple(unique.values())


def describe_controller(controller: type[WebSocketController]) -> ControllerInfo:
    """Describe a `WebSocketController` subclass: its hooks, events, parameters and `sends`.

    Raises:
        TypeError: `controller` is not a subclass of `WebSocketController`.
    """
    if (
        not isinstance(controller, type)
        or not issubclass(controller, WebSocketController)
        or controller is WebSocketController
    ):
        raise TypeError(
            f"describe_controller needs a WebSocketController subclass, got {controller!r}"
        )
    plan = controller._plan
    hooks: dict[Callable[..., Any], HookInfo] = {}

    def hook(compiled: HookPlan | None) -> HookInfo | None:
        if compiled is None:
            return None
        source = compiled.source  # a plain def's own function, not its awaiting wrapper
        described = hooks.get(source)
        if described is None:
            described = hooks[source] = _hook(compiled.name, source, compiled.params)
        return described

    events = {event: hook(plan.routes[event]) for event in sorted(plan.routes)}
    permissions = tuple(
        _hook(f"{controller.__name__}.permissions[{p.name}]", p.plan.call, p.plan.params)
        for p in plan.permissions
    )
    return ControllerInfo(
        controller=controller,
        encoding=controller.encoding,
        event_key=controller.event_key,
        on_connect=hook(plan.connect),
        on_receive=hook(plan.receive),
        on_disconnect=hook(plan.disconnect),
        events=MappingProxyType(events),  # type: ignore[arg-type]
        permissions=permissions,
        sends=tuple(controller.sends),
        calls=MappingProxyType(dict(controller.calls)),
        groups=MappingProxyType(
            {key: _group(controller, key, declared) for key, declared in controller.groups.items()}
        ),
    )


def _group(controller: type[WebSocketController], key: str, declared: Any) -> Group:
    """A `groups` entry as a `Group`, its history decided (by the broker where left None)."""
    group = declared if isinstance(declared, Group) else Group(declared)
    if group.history is not None:
        return group
    prefix = group_prefix(key)
    kept = controller.broker.history_of(key if prefix is None else prefix) is not None
    return Group(group.messages, history=kept, presence_events=group.presence_events)


def _hook(name: str, function: Callable[..., Any], params: tuple[Param, ...]) -> HookInfo:
    hints = _hints(function)
    return HookInfo(
        name=name,
        function=function,
        parameters=_parameters(params, hints),
        returns=hints.get("return", inspect.Parameter.empty),
    )


def _parameters(params: tuple[Param, ...], hints: dict[str, Any]) -> tuple[ParameterInfo, ...]:
    described = []
    for param in params:
        dependency = None
        if param.dependency is not None:
            plan = param.dependency.plan
            dependency = DependencyInfo(
                call=plan.call,
                scope=LEVEL_NAMES[param.dependency.level],  # type: ignore[arg-type]
                use_cache=param.dependency.use_cache,
                parameters=_parameters(plan.params, _hints(plan.call)),
            )
        described.append(
            ParameterInfo(
                name=param.name,
                source=param.source,  # type: ignore[arg-type]
                key=param.key,
                annotation=hints.get(param.name, inspect.Parameter.empty),
                default=param.default,
                dependency=dependency,
            )
        )
    return tuple(described)


def _hints(call: Callable[..., Any]) -> dict[str, Any]:
    """The annotations of a callable (`"return"` included), resolved one by one.

    `typing.get_type_hints` gives up on the whole callable when one
    annotation cannot be resolved; here only that one stays a string.
    """
    hints = type_hints(call)
    target = call.__init__ if isinstance(call, type) else call  # type: ignore[misc]
    raw = dict(getattr(target, "__annotations__", None) or {})
    namespace = getattr(inspect.unwrap(target), "__globals__", {})
    for name, annotation in raw.items():
        if name not in hints:
            hints[name] = _evaluate(annotation, namespace)
    return hints


def _evaluate(annotation: Any, namespace: dict[str, Any]) -> Any:
    if not isinstance(annotation, str):
        return annotation
    try:
        # What typing.get_type_hints does for each annotation.
        return eval(annotation, namespace)
    except Exception:
        return annotation
