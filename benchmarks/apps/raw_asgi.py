"""The floor: bare ASGI callables, routing by hand, msgspec for all JSON, no framework."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import msgspec

from benchmarks.workloads import (
    ChatStruct,
    check_graph,
    db_connection,
    load_settings,
    open_account,
)

Scope = dict[str, Any]
Message = dict[str, Any]

_any_decoder = msgspec.json.Decoder()
_typed_decoder = msgspec.json.Decoder(ChatStruct)
_json_encoder = msgspec.json.Encoder()


async def _echo_text(scope: Scope, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message["text"]})


async def _echo_json(scope: Scope, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        data = _any_decoder.decode(message["text"])
        await send({"type": "websocket.send", "text": _json_encoder.encode(data).decode()})


async def _typed(scope: Scope, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        data = _typed_decoder.decode(message["text"])
        reply = _json_encoder.encode({"user": data.user, "n": data.n})
        await send({"type": "websocket.send", "text": reply.decode()})


async def _graph(scope: Scope, receive: Any, send: Any) -> None:
    room = scope["path"].rsplit("/", 1)[1]
    query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
    agent = next(v.decode("latin-1") for k, v in scope["headers"] if k == b"user-agent")
    settings = await load_settings()
    account = await open_account(settings)
    db_gen = db_connection()
    db = await anext(db_gen)
    try:
        check_graph(room, query["token"], agent, account, db)
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass
    finally:
        await db_gen.aclose()


async def _bare(scope: Scope, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    while (await receive())["type"] != "websocket.disconnect":
        pass


_ROUTES = {"/echo": _echo_text, "/json": _echo_json, "/typed": _typed}
_PREFIX_ROUTES = {"/graph/": _graph, "/bare/": _bare}


async def app(scope: Scope, receive: Any, send: Any) -> None:
    """Route a websocket scope by path to the matching hand-written handler."""
    if scope["type"] != "websocket":
        return
    path = scope["path"]
    handler = _ROUTES.get(path)
    if handler is None:
        handler = _PREFIX_ROUTES.get(path[: path.find("/", 1) + 1])
    if handler is None:
        await send({"type": "websocket.close", "code": 1000})
        return
    await handler(scope, receive, send)
