"""tether's `WebSocket`: Starlette's state machine, plus what a close reports."""

from typing import Any

import pytest
from starlette.types import Message

from tether import WebSocket, WebSocketController, WebSocketState
from tether.controllers.websocket import truncate_reason
from tether.testing import connect

pytestmark = pytest.mark.anyio


async def test_accept_sends_the_subprotocol_and_headers_and_updates_both_states() -> None:
    states = []

    class Greeter(WebSocketController):
        async def on_connect(self, websocket: WebSocket) -> None:
            await websocket.accept("chat.v1", headers=[(b"x-room", b"lobby")])
            states.append((websocket.client_state, websocket.application_state))
            states.append((websocket.accepted, websocket.subprotocol))

    async with connect(Greeter, "/", subprotocols=["chat.v1"]) as ws:
        assert ws.subprotocol == "chat.v1"
        assert (b"x-room", b"lobby") in ws.accept_headers
    assert states == [
        (WebSocketState.CONNECTED, WebSocketState.CONNECTED),
        (True, "chat.v1"),
    ]


async def test_accepting_twice_is_starlettes_error() -> None:
    errors = []

    class Twice(WebSocketController):
        async def on_connect(self, websocket: WebSocket) -> None:
            await websocket.accept()
            try:
                await websocket.accept()
            except RuntimeError as exc:
                errors.append(str(exc))

    async with connect(Twice, "/"):
        pass
    assert errors and "websocket.send" in errors[0]


async def test_a_first_message_other_than_connect_is_an_error() -> None:
    sent: list[Message] = []
    messages = iter([{"type": "websocket.receive", "text": "too early"}])

    async def receive() -> Message:
        return next(messages)

    async def send(message: Message) -> None:
        sent.append(message)

    websocket = WebSocket({"type": "websocket", "headers": []}, receive, send)
    with pytest.raises(RuntimeError, match=r'Expected ASGI message "websocket\.connect"'):
        await websocket.accept()
    assert sent == []
    assert not websocket.accepted


async def test_a_subclass_overriding_send_sees_the_accept() -> None:
    seen = []

    class Recording(WebSocket):
        async def send(self, message: Message) -> None:
            seen.append(message["type"])
            await super().send(message)

    class Recorded(WebSocketController):
        websocket_class = Recording

        async def on_receive(self, data: Any) -> Any:
            return data

    async with connect(Recorded, "/") as ws:
        await ws.send_text("hi")
        assert await ws.receive_text() == "hi"
    assert seen[0] == "websocket.accept"


def test_a_long_close_reason_is_cut_on_a_character_boundary() -> None:
    reason = "é" * 100  # 200 bytes
    cut = truncate_reason(reason)
    assert cut is not None
    assert len(cut.encode()) <= 123
    assert reason.startswith(cut)
