"""A finished connection's controller is freed at once, not left to the garbage collector.

A controller that kept a reference to itself (a bound method in an attribute,
an exception whose traceback holds its frames) would form a reference cycle:
its WebSocket, scope and resolved values would then stay in memory until the
cyclic garbage collector ran, and every collection would have to walk them.
"""

from __future__ import annotations

import gc
import logging
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from tether import Provide, WebSocket, WebSocketController, on
from tether.brokers import MemoryBroker

pytestmark = pytest.mark.anyio

SCOPE = {
    "type": "websocket",
    "asgi": {"version": "3.0", "spec_version": "2.4"},
    "scheme": "ws",
    "path": "/ws/lobby",
    "raw_path": b"/ws/lobby",
    "query_string": b"",
    "headers": [],
    "path_params": {"room": "lobby"},
    "subprotocols": [],
    "state": {},
}


async def serve(controller: type[WebSocketController], *frames: str) -> list[dict[str, Any]]:
    """Run one connection: connect, send `frames`, disconnect; return what the app sent.

    Returns once the app has; the controller must then be unreachable.
    """
    incoming = [
        {"type": "websocket.connect"},
        *({"type": "websocket.receive", "text": frame} for frame in frames),
        {"type": "websocket.disconnect", "code": 1000},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def connection() -> None:
        await controller({**SCOPE}, receive, send)

    # In a task of its own, as every server runs a connection: on CPython 3.12+
    # asyncio keeps the last CancelledError a task caught (a concurrent controller's
    # task group cancels its host), and with it the frames, while the task lives.
    async with anyio.create_task_group() as server:
        server.start_soon(connection)
    return sent


@pytest.fixture
def no_collector() -> Iterator[None]:
    """Only reference counting frees objects while a test runs.

    The `tether` logger is silenced too: a captured log record of an error
    keeps its traceback, and so the controller, alive.
    """
    logger = logging.getLogger("tether")
    gc.collect()
    gc.disable()
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = False
        gc.enable()


def tracked(
    controller: type[WebSocketController], monkeypatch: pytest.MonkeyPatch
) -> list[weakref.ref[Any]]:
    """Weak references to every instance of `controller` made while the test runs."""
    refs: list[weakref.ref[Any]] = []
    init = controller.__init__

    def __init__(self: Any, *args: Any) -> None:
        refs.append(weakref.ref(self))
        init(self, *args)

    monkeypatch.setattr(controller, "__init__", __init__)
    return refs


def get_token() -> str:
    return "token"


async def get_login() -> AsyncIterator[dict[str, str]]:
    yield {"user": "ada"}


def get_counter() -> Iterator[list[int]]:
    yield [0]


class Echo(WebSocketController):
    encoding = "text"

    async def on_receive(self, data: str) -> str:
        return data


class WithDependencies(WebSocketController):
    async def on_connect(self, room: str, login: dict = Provide(get_login)) -> None:
        pass

    async def on_receive(
        self,
        data: str,
        token: str = Provide(get_token),
        counter: list = Provide(get_counter, scope="message"),
    ) -> str:
        return f"{data} {token}"

    async def on_disconnect(self, close_code: int, login: dict = Provide(get_login)) -> None:
        pass


class Routed(WebSocketController):
    encoding = "json"

    @on("ping")
    async def ping(self, data: dict) -> dict:
        return {"type": "pong"}

    async def on_receive(self, data: Any) -> str:
        return "other"


class Concurrent(WebSocketController):
    max_concurrency = 2
    idle_timeout = 5

    async def on_receive(self, data: str) -> str:
        return data


class Member(WebSocketController):
    broker = MemoryBroker()

    async def on_connect(self) -> None:
        await self.join("room")

    async def on_receive(self, data: str) -> None:
        await self.publish("room", data)


class Failing(WebSocketController):
    async def on_receive(self, data: str) -> None:
        raise RuntimeError("boom")


class Refusing(WebSocketController):
    async def on_connect(self, websocket: WebSocket) -> None:
        raise ValueError("no")


@pytest.mark.parametrize(
    ("controller", "frames", "closed_with"),
    [
        (Echo, ["a", "b"], None),
        (WithDependencies, ["a"], None),
        (Routed, ['{"type": "ping"}', '{"type": "other"}'], None),
        (Concurrent, ["a", "b"], None),
        (Member, ["hello"], None),
        (Failing, ["a"], 1011),
        (Refusing, [], 1011),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else None,
)
async def test_the_controller_is_freed_when_its_connection_ends(
    no_collector: None,
    controller: type[WebSocketController],
    frames: list[str],
    closed_with: int | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refs = tracked(controller, monkeypatch)
    sent = await serve(controller, *frames)

    closes = [m.get("code") for m in sent if m["type"] == "websocket.close"]
    assert closes == ([closed_with] if closed_with else [])
    assert len(refs) == 1
    assert refs[0]() is None, f"{controller.__name__} is still referenced after the connection"
