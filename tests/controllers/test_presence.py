"""Presence on controllers: who is in a group, diffs to watchers, leaving on every exit path."""

from __future__ import annotations

from typing import Any

import pytest

from tether import Query, WebSocket, WebSocketController
from tether.brokers import Broker, Member, MemoryBroker
from tether.brokers.groups import GroupTable
from tether.frames import encode_frame
from tether.testing import ServerClosed, connect

pytestmark = pytest.mark.anyio


def make_room(broker: MemoryBroker) -> type[WebSocketController]:
    class Room(WebSocketController):
        encoding = "json"

        async def on_connect(
            self, websocket: WebSocket, nick: str = Query(""), device: str = Query("")
        ) -> None:
            await websocket.accept()
            await self.join(
                "lobby", presence={"device": device}, presence_key=nick, presence_events=True
            )

        async def on_receive(self, data: dict) -> dict | None:
            if data.get("who"):
                return {"present": await self.presence("lobby")}
            if data.get("count"):
                return {"count": await self.presence_count("lobby")}
            if data.get("leave"):
                await self.leave("lobby")
                return {"left": True}
            if data.get("crash"):
                raise RuntimeError("boom")
            return None

    Room.broker = broker
    return Room


def diff(joins: dict | None = None, leaves: dict | None = None) -> dict:
    return {
        "event": "presence_diff",
        "group": "lobby",
        "joins": joins or {},
        "leaves": leaves or {},
    }


async def test_members_see_who_is_there_and_diffs_as_others_come_and_go() -> None:
    broker = MemoryBroker()
    Room = make_room(broker)
    async with connect(Room, "/?nick=alice&device=laptop") as alice:
        assert await alice.receive_json() == diff({"alice": [{"device": "laptop"}]})
        async with connect(Room, "/?nick=bob&device=phone") as bob:
            assert await bob.receive_json() == diff({"bob": [{"device": "phone"}]})
            assert await alice.receive_json() == diff({"bob": [{"device": "phone"}]})
            await bob.send_json({"who": True})
            assert await bob.receive_json() == {
                "present": {"alice": [{"device": "laptop"}], "bob": [{"device": "phone"}]}
            }
        assert await alice.receive_json() == diff(leaves={"bob": [{"device": "phone"}]})
        await alice.send_json({"count": True})
        assert await alice.receive_json() == {"count": 1}
    assert await broker.presence("lobby") == {}
    assert await broker.presence_count("lobby") == 0


async def test_one_key_from_several_connections_lists_each_payload() -> None:
    broker = MemoryBroker()
    Room = make_room(broker)
    async with (
        connect(Room, "/?nick=alice&device=laptop") as laptop,
        connect(Room, "/?nick=alice&device=phone"),
    ):
        await laptop.send_json({"count": True})
        replies = [await laptop.receive_json() for _ in range(3)]
        assert replies[-1] == {"count": 1}
        assert await broker.presence("lobby") == {
            "alice": [{"device": "laptop"}, {"device": "phone"}]
        }
    assert await broker.presence_count("lobby") == 0


async def test_leave_and_a_crash_both_end_presence() -> None:
    broker = MemoryBroker()
    Room = make_room(broker)
    async with connect(Room, "/?nick=alice", raise_app_exceptions=False) as alice:
        await alice.receive_json()
        async with connect(Room, "/?nick=bob", raise_app_exceptions=False) as bob:
            await bob.receive_json()
            await alice.receive_json()
            await bob.send_json({"leave": True})
            assert await bob.receive_json() == {"left": True}
            assert await alice.receive_json() == diff(leaves={"bob": [{"device": ""}]})
            assert await broker.presence("lobby") == {"alice": [{"device": ""}]}
        await alice.send_json({"crash": True})
        with pytest.raises(ServerClosed) as closed:
            await alice.receive_json()
        assert closed.value.code == 1011
    assert await broker.presence("lobby") == {}


@pytest.mark.parametrize(
    ("payload", "error", "words"),
    [
        ({"at": object()}, TypeError, "JSON-able"),
        ({"blob": "x" * 2000}, ValueError, "over the limit of 1024"),
        ({"n": float("nan")}, ValueError, "JSON-able"),
    ],
)
async def test_a_bad_payload_is_refused_at_join(
    payload: object, error: type[Exception], words: str
) -> None:
    broker = MemoryBroker()
    seen: list[Exception] = []

    class Room(WebSocketController):
        async def on_connect(self, websocket: WebSocket) -> None:
            await websocket.accept()
            try:
                await self.join("lobby", presence=payload, presence_key="alice")
            except (TypeError, ValueError) as exc:
                seen.append(exc)
                await websocket.close(1008)

    Room.broker = broker
    async with connect(Room, "/") as ws:
        with pytest.raises(ServerClosed):
            await ws.receive_text()
    assert isinstance(seen[0], error) and words in str(seen[0])
    assert broker.groups() == [] and await broker.presence("lobby") == {}


async def test_groups_without_presence_send_no_presence_frames() -> None:
    broker = MemoryBroker()

    class Plain(WebSocketController):
        async def on_connect(self) -> None:
            await self.join("lobby")

    Plain.broker = broker
    async with connect(Plain, "/") as ws:
        await broker.publish("lobby", "hi")
        assert await ws.receive_text() == "hi"
        assert await broker.presence("lobby") == {}


async def test_a_key_of_its_own_when_none_is_given() -> None:
    broker = MemoryBroker()

    class Anonymous(WebSocketController):
        async def on_connect(self) -> None:
            await self.join("lobby", presence={"guest": True})

    Anonymous.broker = broker
    async with connect(Anonymous, "/"), connect(Anonymous, "/"):
        assert await broker.presence_count("lobby") == 2
    assert await broker.presence_count("lobby") == 0


class GroupsOnly(Broker):
    """A broker of the user's own that keeps groups but no presence."""

    def __init__(self) -> None:
        self.table = GroupTable()

    async def subscribe(self, group: str, member: Member) -> None:
        self.table.add(group, member)

    async def unsubscribe(self, group: str, member: Member) -> None:
        self.table.discard(group, member)

    async def unsubscribe_all(self, member: Member) -> None:
        self.table.discard_all(member)

    async def publish(self, group: str, message: Any, *, exclude: Member | None = None) -> None:
        self.table.deliver(group, encode_frame(message), exclude)


@pytest.mark.parametrize("options", [{"presence": {}}, {"presence_events": True}])
async def test_a_broker_without_presence_refuses_before_the_connection_joins(
    options: dict[str, Any],
) -> None:
    broker = GroupsOnly()
    seen: list[Exception] = []
    joined: list[list[str]] = []

    class Room(WebSocketController):
        async def on_connect(self, websocket: WebSocket) -> None:
            await websocket.accept()
            try:
                await self.join("lobby", **options)
            except NotImplementedError as exc:
                seen.append(exc)
                joined.append(broker.table.groups())
                await websocket.close(1008)

    Room.broker = broker
    assert not broker.keeps_presence and MemoryBroker().keeps_presence
    async with connect(Room, "/") as ws:
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_text()
    assert closed.value.code == 1008
    assert "GroupsOnly keeps no presence" in str(seen[0])
    assert joined == [[]]  # refused before it joined the group
