"""Guards: what a handshake must pass before `on_connect` runs.

Origins, subprotocols and permissions are read from class attributes and
compiled once, when the controller class is defined.
"""

from __future__ import annotations

import re
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

# An origin as browsers serialize it (RFC 6454): scheme, host and an optional port;
# nothing else. The host is a bracketed IPv6 address or dot-separated non-empty labels
# (so no empty label, no trailing dot); no path, user info, query or fragment.
_ORIGIN = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*)://"
    r"(?P<host>\[[0-9a-f:.]+\]|[a-z0-9_-]+(?:\.[a-z0-9_-]+)*)"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}

# (scheme, host, port): what two origins must share to be the same.
Origin = tuple[str, str, "int | None"]


def parse_origin(value: str) -> Origin | None:
    """An Origin header value as `(scheme, host, port)`, lowercased; None if malformed.

    The port is None when absent or the scheme's default (`https://h:443` is
    `https://h`). `null` (what sandboxed pages and `file:` URLs send), and
    anything that is not exactly `scheme://host[:port]`, is malformed.
    """
    # ASCII first: str.lower() maps some other letters to ASCII ones (KELVIN SIGN -> k).
    match = _ORIGIN.fullmatch(value.lower()) if value.isascii() else None
    if match is None:
        return None
    scheme, host, port = match.group("scheme", "host", "port")
    number = int(port) if port is not None else None
    if number is not None and number > 65535:
        return None
    if number == _DEFAULT_PORTS.get(scheme):
        number = None
    return scheme, host, number


class OriginPolicy:
    """Which `Origin` headers a controller accepts.

    Entries are exact origins (`https://app.example.org`), subdomain patterns
    (`https://*.example.org`, which matches any subdomain but not the bare
    domain) or `"*"` for any. Both the entries and the header are parsed into
    scheme, host and port: the scheme and the port must be equal (a missing
    port is the scheme's default) and a pattern's host must be the last labels
    of the header's host. A header that is not exactly `scheme://host[:port]`
    (`null` included) is refused unless `"*"` is listed. A request with no
    Origin header does not come from a browser and passes unless
    `require_origin` is set.
    """

    __slots__ = ("any", "exact", "require", "suffixes")

    def __init__(self, allowed: Sequence[str], *, require: bool, owner: str) -> None:
        if isinstance(allowed, str):
            raise ConfigurationError(
                f"{owner}.allowed_origins must be a list of origins, not the string {allowed!r}"
            )
        self.any = "*" in allowed
        self.require = require
        self.exact: set[Origin] = set()
        # (scheme, ".example.org", port): the host must end with these whole labels.
        self.suffixes: list[tuple[str, str, int | None]] = []
        for entry in allowed:
            if entry == "*":
                continue
            if not isinstance(entry, str):
                raise ConfigurationError(f"{owner}.allowed_origins: {entry!r} is not a string")
            text = entry.rstrip("/")
            scheme, sep, rest = text.partition("://")
            subdomains = rest.startswith("*.")
            parsed = parse_origin(f"{scheme}{sep}{rest[2:]}" if subdomains else text)
            if parsed is None or (subdomains and parsed[1].startswith("[")):
                hint = "'*' may only start the host ('*.')" if "*" in text else "not an origin"
                raise ConfigurationError(
                    f"{owner}.allowed_origins: {entry!r}: {hint} like 'https://host', "
                    "'https://host:8443' or 'https://*.example.org'"
                )
            if subdomains:
                self.suffixes.append((parsed[0], f".{parsed[1]}", parsed[2]))
            else:
                self.exact.add(parsed)

    def allows(self, origin: str | None) -> bool:
        """Whether a handshake with this Origin header value may proceed."""
        if origin is None:
            return not self.require
        if self.any:
            return True
        parsed = parse_origin(origin)
        if parsed is None:
            return False
        if parsed in self.exact:
            return True
        scheme, host, port = parsed
        # `host` is valid labels, so ending with ".example.org" means ending with its labels.
        return any(
            scheme == s and port == p and host.endswith(suffix) for s, suffix, p in self.suffixes
        )


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
