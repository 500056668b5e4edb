"""Guards: what a handshake must pass before `on_connect` runs.

Origins, subprotocols and permissions are read from class attributes and
compiled once, when the controller class is defined.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tether.di._unrolled import unroll
from tether.di.compiler import (
    CONNECTION_NAMES,
    COROUTINE,
    CallPlan,
    ConfigurationError,
    compile_hook,
    name_of,
)


class OriginPolicy:
    """Which `Origin` headers a controller accepts.

    Entries are exact origins (`https://app.example.org`), subdomain patterns
    (`https://*.example.org`, which matches any subdomain but not the bare
    domain) or `"*"` for any. A request with no Origin header does not come
    from a browser and passes unless `require_origin` is set.
    """

    __slots__ = ("any", "exact", "require", "suffixes")

    def __init__(self, allowed: Sequence[str], *, require: bool, owner: str) -> None:
        if isinstance(allowed, str):
            raise ConfigurationError(
                f"{owner}.allowed_origins must be a list of origins, not the string {allowed!r}"
            )
        self.any = "*" in allowed
        self.require = require
        self.exact: set[str] = set()
        self.suffixes: list[tuple[str, str]] = []
        for origin in allowed:
            origin = origin.lower().rstrip("/")
            scheme, sep, host = origin.partition("://")
            if origin == "*":
                continue
            if not sep or not host:
                raise ConfigurationError(
                    f"{owner}.allowed_origins: {origin!r} is not an origin like 'https://host'"
                )
            if host.startswith("*."):
                self.suffixes.append((scheme, host[1:]))  # keep the dot: ".example.org"
            elif "*" in host:
                raise ConfigurationError(
                    f"{owner}.allowed_origins: {origin!r}: '*' may only start the host ('*.')"
                )
            else:
                self.exact.add(origin)

    def allows(self, origin: str | None) -> bool:
        """Whether a handshake with this Origin header value may proceed."""
        if origin is None:
            return not self.require
        if self.any:
            return True
        origin = origin.lower()
        if origin in self.exact:
            return True
        scheme, _, host = origin.partition("://")
        return any(scheme == s and host.endswith(suffix) for s, suffix in self.suffixes)


def negotiate_subprotocol(preferred: Sequence[str], offered: Sequence[str]) -> str | None:
    """The first of the server's `preferred` subprotocols that the client offered.

    Raises `LookupError` when the client offered some and none overlap.
    Returns None when the client offered none.
    """
    if not offered:
        return None
    for name in preferred:
        if name in offered:
            return name
    raise LookupError(f"none of the offered subprotocols {list(offered)} is supported")


class Permission:
    """A permission callable, compiled: `plan` says what to inject into it."""

    __slots__ = ("is_async", "name", "plan", "resolve")

    def __init__(self, call: Callable[..., Any], owner: str) -> None:
        if not callable(call):
            raise ConfigurationError(f"{owner}.permissions: {call!r} is not callable")
        self.name = name_of(call)
        where = f"{owner}.permissions[{self.name}]"
        self.plan: CallPlan = compile_hook(call, where, allowed=CONNECTION_NAMES, method=False)
        self.is_async = self.plan.kind == COROUTINE
        self.resolve = unroll(self.plan.params, where)
