"""Markers that tell tether where a parameter's value comes from.

A marker is used as a parameter's default value (`token: str = Query()`) or
inside `Annotated[T, marker]`. Markers only describe; the signature compiler
reads them once, when a controller class is defined.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

Scope = Literal["app", "connection", "message"]
SCOPES: tuple[Scope, ...] = ("app", "connection", "message")


class _Required:
    """The default of a marker whose value must be present."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Required"


Required: Any = _Required()


class Marker:
    """Base class of every tether marker."""

    __slots__ = ()


class Provide(Marker):
    """Inject the result of calling `dependency`.

    The dependency is any callable: a function or coroutine function, a
    class, or a (async) generator whose code after `yield` is its teardown.
    Its own parameters are resolved by the same rules as a hook's.

    Args:
        dependency: The callable to resolve.
        scope: `"app"` (once per process, torn down at app shutdown),
            `"connection"` (the default: once per connection, torn down
            after `on_disconnect`) or `"message"` (once per hook call, torn
            down when the hook returns).
        use_cache: Within one scope a callable is resolved once and shared;
            `False` resolves it afresh for this parameter.
    """

    __slots__ = ("dependency", "scope", "use_cache")

    def __init__(
        self,
        dependency: Callable[..., Any],
        *,
        scope: Scope = "connection",
        use_cache: bool = True,
    ) -> None:
        if not callable(dependency):
            raise TypeError(f"Provide() needs a callable, got {dependency!r}")
        if scope not in SCOPES:
            raise ValueError(f"Provide(scope={scope!r}): scope must be one of {SCOPES}")
        self.dependency = dependency
        self.scope = scope
        self.use_cache = use_cache

    def __repr__(self) -> str:
        name = getattr(self.dependency, "__qualname__", repr(self.dependency))
        return f"Provide({name}, scope={self.scope!r})"


class _RequestValue(Marker):
    __slots__ = ("alias", "default")
    source = ""

    def __init__(self, default: Any = Required, *, alias: str | None = None) -> None:
        self.default = default
        self.alias = alias

    def __repr__(self) -> str:
        return f"{type(self).__name__}(default={self.default!r}, alias={self.alias!r})"


class Query(_RequestValue):
    """Read a query-string value: `page: int = Query(1)`.

    Annotate with `list[T]` to receive every value of a repeated key.
    Without a default the value is required and a connection that lacks it is
    refused before accept.
    """

    __slots__ = ()
    source = "query parameter"


class Header(_RequestValue):
    """Read a request header: `x_agent: str = Header()` reads `x-agent`.

    Without an alias, underscores in the parameter name match hyphens, and
    the match is case-insensitive.
    """

    __slots__ = ()
    source = "header"


class Cookie(_RequestValue):
    """Read a cookie sent with the handshake: `sid: str = Cookie()`."""

    __slots__ = ()
    source = "cookie"
