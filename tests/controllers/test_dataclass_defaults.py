"""A dataclass decoded by msgspec is whole: sent back or published, it carries every field."""

import dataclasses

import msgspec
import pytest

from tether import WebSocketController, on
from tether.controllers.dataclass_defaults import whole
from tether.testing import connect

pytestmark = pytest.mark.anyio


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
    class Mail(WebSocketController):
        async def on_receive(self, data: Inbox) -> Inbox:
            return data

    class Pins(WebSocketController):
        @on("pin")
        async def pin(self, data: Board) -> Board:
            return data

    async with connect(Mail, "/") as ws:
        await ws.send_json({"note": {"text": "hi"}})
        assert await ws.receive_json() == {"note": WHOLE_NOTE, "count": 1}
    async with connect(Pins, "/") as ws:
        await ws.send_json({"type": "pin", "title": "t", "notes": [{"text": "hi"}]})
        assert await ws.receive_json() == {
            "title": "t",
            "notes": [WHOLE_NOTE],
            "color": "yellow",
        }


async def test_lists_and_dicts_of_dataclasses_are_whole() -> None:
    class Batch(WebSocketController):
        async def on_receive(self, data: dict[str, list[Note]]) -> dict[str, list[Note]]:
            return data

    async with connect(Batch, "/") as ws:
        await ws.send_json({"inbox": [{"text": "hi"}, {"text": "hi", "pinned": True}]})
        assert await ws.receive_json() == {"inbox": [WHOLE_NOTE, {**WHOLE_NOTE, "pinned": True}]}


async def test_a_published_dataclass_carries_every_field() -> None:
    class Room(WebSocketController):
        async def on_connect(self) -> None:
            await self.join("room")

        async def on_receive(self, data: Note) -> None:
            await self.publish("room", data)

    async with connect(Room, "/") as ws:
        await ws.send_json({"text": "hi"})
        assert await ws.receive_json() == WHOLE_NOTE


@dataclasses.dataclass
class Required:
    text: str
    tags: list[str] = dataclasses.field(default_factory=list)  # msgspec sets these itself


class Counter(msgspec.Struct):
    count: int = 1  # a Struct gets its defaults set by msgspec


@pytest.mark.parametrize("annotation", [Required, Counter, list[Required], dict[str, int]])
def test_types_without_plain_defaults_keep_msgspecs_own_decoder(annotation: object) -> None:
    # Nothing to fill, so nothing added per message: the hook gets msgspec's decoder itself.
    decode = msgspec.json.Decoder(annotation).decode
    assert whole(decode, annotation) is decode
