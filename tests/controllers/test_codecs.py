"""Codecs: which `data` types are refused at class definition, and what replies carry."""

import dataclasses
import gc
import logging
import warnings
from typing import Any

import msgspec
import pytest

from tether import ConfigurationError, WebSocketController, on
from tether.testing import ServerClosed, connect

pytestmark = pytest.mark.anyio


class Point:
    """A plain class: neither msgspec nor pydantic can build it from JSON."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y


PLAIN = (
    "parameter 'data': no installed library can validate messages into Point, a plain class; "
    "make it a dataclass, TypedDict, msgspec Struct or pydantic model"
)


@pytest.mark.parametrize("annotation", [Point, list[Point], dict[str, Point], Point | None])
def test_a_data_type_no_library_can_validate_is_a_configuration_error(annotation: Any) -> None:
    async def on_receive(self: Any, data: annotation) -> None: ...  # type: ignore[valid-type]

    with pytest.raises(ConfigurationError) as refused:
        type("Shapes", (WebSocketController,), {"on_receive": on_receive})
    assert str(refused.value) == f"Shapes.on_receive, {PLAIN}"


def test_a_routed_handler_with_such_a_type_is_refused_too() -> None:
    with pytest.raises(ConfigurationError) as refused:

        class Shapes(WebSocketController):
            @on("draw")
            async def draw(self, data: Point) -> None: ...

    assert str(refused.value) == f"Shapes.draw, {PLAIN}"


# -- a decoded dataclass, sent back whole ---------------------------------------------


@dataclasses.dataclass
class Note:
    text: str
    priority: int = 3
    pinned: bool = False
    tags: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Board:
    title: str
    notes: list[Note]
    color: str = "yellow"


class Inbox(msgspec.Struct):
    note: Note
    count: int = 1


WHOLE_NOTE = {"text": "hi", "priority": 3, "pinned": False, "tags": []}


class NoteEcho(WebSocketController):
    async def on_receive(self, data: Note) -> Note:
        return data


async def test_a_returned_dataclass_carries_every_field_msgspec_left_out() -> None:
    # msgspec leaves `priority` and `pinned` out of the decoded instance's __dict__.
    async with connect(NoteEcho, "/") as ws:
        await ws.send_json({"text": "hi"})
        assert await ws.receive_json() == WHOLE_NOTE
        await ws.send_json({"text": "hi", "priority": 1})
        assert await ws.receive_json() == {**WHOLE_NOTE, "priority": 1}


async def test_nested_dataclasses_in_containers_and_structs_are_whole_too() -> None:
    class Boards(WebSocketController):
        @on("board")
        async def board(self, data: dict) -> Board:
            return msgspec.convert(data["board"], Board)  # the user's own decode: untouched

        @on("boards")
        async def boards(self, data: dict) -> list[Board]:
            return [data]  # type: ignore[list-item]

        async def on_receive(self, data: Inbox) -> Inbox:
            return data

    class Routed(WebSocketController):
        @on("pin")
        async def pin(self, data: Board) -> Board:
            return data

    async with connect(Boards, "/") as ws:
        await ws.send_json({"note": {"text": "hi"}})
        assert await ws.receive_json() == {"note": WHOLE_NOTE, "count": 1}
    async with connect(Routed, "/") as ws:
        await ws.send_json({"type": "pin", "title": "t", "notes": [{"text": "hi"}]})
        assert await ws.receive_json() == {
            "title": "t",
            "notes": [WHOLE_NOTE],
            "color": "yellow",
        }


async def test_a_published_dataclass_carries_every_field() -> None:
    class Room(WebSocketController):
        async def on_connect(self) -> None:
            await self.join("room")

        async def on_receive(self, data: Note) -> None:
            await self.publish("room", data)

    async with connect(Room, "/") as ws:
        await ws.send_json({"text": "hi"})
        assert await ws.receive_json() == WHOLE_NOTE


# -- an awaitable sent instead of its result -------------------------------------------


class Lookup(WebSocketController):
    async def fetch(self, key: str) -> dict:
        return {"key": key}

    async def on_receive(self, data: str) -> Any:
        return self.fetch(data)  # forgot `await`


class News(WebSocketController):
    async def latest(self) -> str:
        return "news"

    async def on_receive(self, data: str) -> str:
        try:
            await self.publish("room", self.latest())  # forgot `await` inside
        except TypeError as exc:
            return str(exc)
        return "sent"


HINT = (
    "as JSON: did you forget await? "
    "A hook returned (or published) an awaitable instead of its result."
)


async def test_returning_an_unawaited_coroutine_closes_1011_and_logs_the_hint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="tether")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the coroutine is closed: Python does not warn later
        async with connect(Lookup, "/") as ws:
            await ws.send_text("a")
            with pytest.raises(ServerClosed) as closed:
                await ws.receive_text()
        gc.collect()
    assert closed.value.code == 1011
    (record,) = [r for r in caplog.records if r.exc_info]
    assert str(record.exc_info[1]) == f"cannot send coroutine 'Lookup.fetch' {HINT}"


async def test_publishing_an_unawaited_coroutine_gets_the_same_hint() -> None:
    async with connect(News, "/") as ws:
        await ws.send_text("go")
        assert await ws.receive_text() == f"cannot send coroutine 'News.latest' {HINT}"
