"""Controllers that tests/controllers/test_hostile_input.py attacks, under uvicorn.

Served in-process (so `caplog` sees every log record) and, with the
environment variable `TETHER_WITHOUT_MSGSPEC=1`, in a subprocess where
msgspec cannot be imported, so tether parses JSON with the standard library.
"""

import functools
import os
import sys
from typing import Any

if os.environ.get("TETHER_WITHOUT_MSGSPEC"):
    sys.modules["msgspec"] = None  # type: ignore[assignment]  # as if it were not installed

import anyio
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

import tether.frames
from tether import (
    Header,
    Provide,
    Query,
    WebSocket,
    WebSocketController,
    WebSocketException,
    on,
)

try:
    import msgspec
except ImportError:
    msgspec = None  # type: ignore[assignment]


class Echo(WebSocketController):
    """What a bystander talks to: text and binary frames echoed as they came."""

    async def on_receive(self, data: Any) -> Any:
        return data


class Decoder(WebSocketController):
    """Says which JSON parser tether uses in this process."""

    async def on_connect(self, websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("stdlib" if tether.frames.msgspec is None else "msgspec")


# -- JSON, parsed by each decoder --------------------------------------------------


class JsonEcho(WebSocketController):
    encoding = "json"

    async def on_receive(self, data: Any) -> Any:
        return data


class Note(BaseModel):
    payload: Any


class ModelEcho(WebSocketController):
    """Validated by pydantic, which parses the JSON itself."""

    async def on_receive(self, data: Note) -> Note:
        return data


if msgspec is not None:

    class Envelope(msgspec.Struct):
        payload: Any

    class StructEcho(WebSocketController):
        """Validated by msgspec while it parses."""

        async def on_receive(self, data: Envelope) -> Envelope:
            return data


# -- @on routing -------------------------------------------------------------------


class Routed(WebSocketController):
    @on("echo")
    async def echo(self, data: dict) -> dict:
        return data

    async def on_receive(self, data: Any) -> dict:
        return {"fallback": data}


class RoutedOnly(WebSocketController):
    @on("echo")
    async def echo(self, data: dict) -> dict:
        return data


class RoutedByAction(RoutedOnly):
    event_key = "action"


# -- callables written as plain `def` that hand back an awaitable ------------------


def sync_wrapper(func: Any) -> Any:
    """A decorator as people write them: a plain def, whatever it wraps."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


async def key_is(expected: str, x_api_key: str = Header("")) -> bool:
    await anyio.sleep(0)  # a real suspension, as a lookup would make
    return x_api_key == expected


@sync_wrapper
async def has_key(x_api_key: str = Header("")) -> bool:
    return await key_is("k1", x_api_key)


class KeyCheck:
    """A permission object whose `__call__` is a plain def returning a coroutine."""

    def __init__(self, expected: str) -> None:
        self.expected = expected

    def __call__(self, x_api_key: str = Header("")) -> Any:
        return key_is(self.expected, x_api_key)


class GuardedByDecorator(Echo):
    permissions = [has_key]


class GuardedByPartial(Echo):
    permissions = [functools.partial(key_is, "k1")]


class GuardedByObject(Echo):
    permissions = [KeyCheck("k1")]


@sync_wrapper
async def who(x_user: str = Header("anonymous")) -> str:
    await anyio.sleep(0)
    return x_user


class Wrapped(WebSocketController):
    """Hooks and a dependency that are plain defs returning coroutines."""

    encoding = "text"

    @sync_wrapper
    async def on_connect(self, websocket: WebSocket, token: str = Query("")) -> None:
        if token != "t":
            raise WebSocketException(1008, "bad token")

    @sync_wrapper
    async def on_receive(self, data: str, caller: str = Provide(who)) -> str:
        await anyio.sleep(0)
        return f"{caller}: {data}"


# -- origins -----------------------------------------------------------------------


class Browsers(Echo):
    allowed_origins = ["https://*.example.org"]


routes = [
    WebSocketRoute("/echo", Echo),
    WebSocketRoute("/decoder", Decoder),
    WebSocketRoute("/json", JsonEcho),
    WebSocketRoute("/model", ModelEcho),
    WebSocketRoute("/routed", Routed),
    WebSocketRoute("/routed-only", RoutedOnly),
    WebSocketRoute("/routed-by-action", RoutedByAction),
    WebSocketRoute("/guarded/decorator", GuardedByDecorator),
    WebSocketRoute("/guarded/partial", GuardedByPartial),
    WebSocketRoute("/guarded/object", GuardedByObject),
    WebSocketRoute("/wrapped", Wrapped),
    WebSocketRoute("/browsers", Browsers),
]
if msgspec is not None:
    routes.append(WebSocketRoute("/struct", StructEcho))
app = Starlette(routes=routes)
