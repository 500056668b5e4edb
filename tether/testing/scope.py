"""The ASGI scope a server would pass for a WebSocket handshake, built from a URL."""

from __future__ import annotations

import base64
import itertools
import os
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from starlette.types import Scope

__all__ = ["HeadersArg", "websocket_scope"]

HeadersArg = Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]]

_client_ports = itertools.count(50000)


def websocket_scope(
    path: str,
    *,
    base_url: str = "ws://testserver",
    root_path: str = "",
    headers: HeadersArg | None = None,
    subprotocols: list[str] | None = None,
    cookies: Mapping[str, str] | None = None,
    state: Mapping[str, Any] | None = None,
    client: tuple[str, int] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> Scope:
    """Build the scope a server would pass for this handshake; `connect()` documents the arguments.

    Raises `ValueError` for a URL whose scheme is not `ws` or `wss`.
    """
    subprotocols = list(subprotocols or [])
    if "://" not in path and not path.startswith("/"):
        path = "/" + path
    url = urlsplit(path if "://" in path else base_url.rstrip("/") + path)
    if url.scheme not in ("ws", "wss"):
        raise ValueError(f"a WebSocket URL starts with ws:// or wss://, not {url.scheme}://")
    host = url.hostname or "testserver"
    port = url.port or (443 if url.scheme == "wss" else 80)

    pairs = header_pairs(headers)
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
        # By default what uvicorn offers: the denial response, to refuse with a status.
        "extensions": {"websocket.http.response": {}} if extensions is None else dict(extensions),
    }


def header_pairs(headers: HeadersArg | None) -> list[tuple[bytes, bytes]]:
    """Headers as ASGI has them: lower-case names, `(bytes, bytes)` pairs, in order."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or [])
    return [(_latin1(name).lower(), _latin1(value)) for name, value in items]


def _latin1(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")
