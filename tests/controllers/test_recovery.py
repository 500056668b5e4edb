"""Controllers joining a group with history: `join(group, since=...)` and what the client sees."""

from __future__ import annotations

import pytest

from tether import Query, WebSocket, WebSocketController
from tether.brokers import GroupHistory, MemoryBroker
from tether.testing import connect

pytestmark = pytest.mark.anyio


def make_room(broker: MemoryBroker) -> type[WebSocketController]:
    class Room(WebSocketController):
        encoding = "json"

        async def on_connect(self, websocket: WebSocket, since: str | None = Query(None)) -> None:
            await websocket.accept()
            result = await self.join("room", since=since)
            await websocket.send_json(
                {
                    "type": "joined",
                    "recovered": result.recovered,
                    "reason": result.reason,
                    "position": str(result.position) if result.position else None,
                    "replayed": result.replayed,
                }
            )

        async def on_receive(self, data: dict) -> None:
            await self.publish("room", data)

    Room.broker = broker
    return Room


async def test_a_client_that_reconnects_with_its_position_gets_what_it_missed() -> None:
    Room = make_room(MemoryBroker(history=GroupHistory(size=100, ttl=60)))
    async with connect(Room, "/") as ada:
        joined = await ada.receive_json()
        assert (joined["recovered"], joined["reason"]) == (False, "new")
        await ada.send_json({"n": 0})
        first = await ada.receive_json()
        assert first["data"] == {"n": 0} and first["offset"] == 1
    async with connect(Room, "/") as bob:
        await bob.receive_json()
        for n in range(1, 4):  # while ada is away
            await bob.send_json({"n": n})
            assert (await bob.receive_json())["data"] == {"n": n}  # published
    since = f"{first['epoch']}:{first['offset']}"
    async with connect(Room, f"/?since={since}") as ada:
        joined = await ada.receive_json()
        # The replay is queued before on_connect's own frame goes out: it comes first.
        frames = [joined] + [await ada.receive_json() for _ in range(3)]
        replay = [f for f in frames if f.get("type") != "joined"]
        joined = next(f for f in frames if f.get("type") == "joined")
        assert [f["data"]["n"] for f in replay] == [1, 2, 3]
        assert joined["recovered"] is True and joined["replayed"] == 3
        assert joined["position"] == f"{first['epoch']}:4"
        await ada.send_json({"n": 4})
        assert (await ada.receive_json())["offset"] == 5


@pytest.mark.parametrize("since", ["garbage", "abc:xyz", ":", "0" * 500])
async def test_a_malformed_position_joins_live_and_says_so(since: str) -> None:
    Room = make_room(MemoryBroker(history=GroupHistory()))
    async with connect(Room, f"/?since={since}") as ada:
        joined = await ada.receive_json()
        assert (joined["recovered"], joined["reason"]) == (False, "malformed")
        assert joined["position"] is not None
        await ada.send_json({"n": 1})
        assert (await ada.receive_json())["data"] == {"n": 1}


async def test_a_group_without_history_answers_no_history_and_sends_bare_messages() -> None:
    Room = make_room(MemoryBroker())
    async with connect(Room, "/?since=abc:1") as ada:
        joined = await ada.receive_json()
        assert (joined["recovered"], joined["reason"], joined["position"]) == (
            False,
            "no_history",
            None,
        )
        await ada.send_json({"n": 1})
        assert await ada.receive_json() == {"n": 1}
