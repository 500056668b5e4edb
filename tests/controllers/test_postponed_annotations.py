"""Controllers in a module with `from __future__ import annotations` work the same."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from tether import Provide, Query, WebSocket, WebSocketController
from tether.testing import HandshakeRejected, connect

pytestmark = pytest.mark.anyio


@dataclasses.dataclass
class Move:
    dx: int
    dy: int


class Position:
    def __init__(self, start: int = Query(0)) -> None:
        self.x = self.y = start


class Board(WebSocketController):
    async def on_connect(self, conn: WebSocket, game: uuid.UUID = Query()) -> None:
        await conn.accept()
        await conn.send_text(f"game {game.hex[:4]}")

    async def on_receive(self, data: Move, pos: Position = Provide(Position)) -> dict:
        pos.x += data.dx
        pos.y += data.dy
        return {"x": pos.x, "y": pos.y}


async def test_string_annotations_are_resolved() -> None:
    game = uuid.UUID("abcd0000-0000-0000-0000-000000000000")
    async with connect(Board, f"/?game={game}&start=1") as ws:
        assert await ws.receive_text() == "game abcd"
        await ws.send_json({"dx": 2, "dy": 3})
        assert await ws.receive_json() == {"x": 3, "y": 4}
        await ws.send_json({"dx": 1, "dy": 1})
        assert await ws.receive_json() == {"x": 4, "y": 5}


async def test_string_annotations_still_convert_and_refuse() -> None:
    with pytest.raises(HandshakeRejected) as refused:
        async with connect(Board, "/?game=nope"):
            pass
    assert "query parameter 'game'" in refused.value.reason
