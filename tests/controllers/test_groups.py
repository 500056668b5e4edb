"""Groups on controllers: join, leave and publish, with a bounded outbound queue."""

from __future__ import annotations

import anyio
import pytest

from tether import WebSocket, WebSocketController
from tether.brokers import MemoryBroker
from tether.testing import ServerClosed, connect

pytestmark = pytest.mark.anyio


def make_room(broker: MemoryBroker) -> type[WebSocketController]:
    class Room(WebSocketController):
        encoding = "json"

        async def on_connect(self, websocket: WebSocket, room: str = "lobby") -> None:
            await websocket.accept()
            await self.join(room)

        async def on_receive(self, data: dict, room: str = "lobby") -> None:
            if data.get("leave"):
                await self.leave(room)
                return
            await self.publish(room, data, exclude_self=bool(data.get("quiet")))

    Room.broker = broker
    return Room


async def test_a_publish_reaches_every_member_in_order() -> None:
    Room = make_room(MemoryBroker())
    async with connect(Room, "/") as ada, connect(Room, "/") as bob:
        for n in range(3):
            await ada.send_json({"n": n})
        assert [await bob.receive_json() for _ in range(3)] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert [await ada.receive_json() for _ in range(3)] == [{"n": 0}, {"n": 1}, {"n": 2}]


async def test_exclude_self_skips_the_publisher() -> None:
    Room = make_room(MemoryBroker())
    async with connect(Room, "/") as ada, connect(Room, "/") as bob:
        await ada.send_json({"quiet": True})
        assert await bob.receive_json() == {"quiet": True}
        await ada.receive_nothing(within=0.1)


async def test_leave_stops_delivery_and_closing_leaves_every_group() -> None:
    broker = MemoryBroker()
    Room = make_room(broker)
    async with connect(Room, "/") as ada:
        async with connect(Room, "/") as bob:
            await bob.send_json({"leave": True})
            await bob.receive_nothing(within=0.05)
            await ada.send_json({"hi": 1})
            assert await ada.receive_json() == {"hi": 1}
            await bob.receive_nothing(within=0.1)
        assert len(broker.members("lobby")) == 1
    assert broker.groups() == []


async def test_membership_ends_when_a_hook_crashes() -> None:
    broker = MemoryBroker()

    class Fragile(WebSocketController):
        async def on_connect(self) -> None:
            await self.join("room")

        async def on_receive(self, data: str) -> None:
            raise RuntimeError("boom")

    Fragile.broker = broker
    async with connect(Fragile, "/", raise_app_exceptions=False) as ws:
        assert broker.members("room")
        await ws.send_text("x")
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_text()
        assert closed.value.code == 1011
    assert broker.groups() == []


async def test_joining_from_on_receive_starts_delivery() -> None:
    broker = MemoryBroker()

    class Late(WebSocketController):
        encoding = "text"

        async def on_receive(self, data: str) -> str:
            await self.join(data)
            return f"joined {data}"

    Late.broker = broker
    async with connect(Late, "/") as ws:
        await ws.send_text("news")
        assert await ws.receive_text() == "joined news"
        await broker.publish("news", "extra!")
        assert await ws.receive_text() == "extra!"


async def test_joining_with_concurrent_handlers() -> None:
    broker = MemoryBroker()

    class Busy(WebSocketController):
        encoding = "text"
        max_concurrency = 3

        async def on_receive(self, data: str) -> None:
            await self.join(data)

    Busy.broker = broker
    async with connect(Busy, "/") as ws:
        await ws.send_text("a")
        with anyio.fail_after(2):
            while not broker.members("a"):
                await anyio.sleep(0.01)
        await broker.publish("a", {"x": 1})
        assert await ws.receive_json() == {"x": 1}


async def test_a_slow_consumer_is_closed_with_1013_under_the_close_policy() -> None:
    broker = MemoryBroker()

    class Strict(WebSocketController):
        outbound_maxsize = 4
        outbound_policy = "close"
        closes: list[int] = []

        async def on_connect(self) -> None:
            await self.join("firehose")

        async def on_disconnect(self, close_code: int) -> None:
            self.closes.append(close_code)

    Strict.broker = broker
    async with connect(Strict, "/") as ws:
        # Published in one go, before the connection's sender can run: the queue overflows.
        for n in range(10):
            await broker.publish("firehose", n)
        received = []
        with pytest.raises(ServerClosed) as closed:
            for _ in range(11):
                received.append(await ws.receive_text())
        assert closed.value.code == 1013
        assert len(received) <= 4
    assert Strict.closes == [1013]
    assert broker.groups() == []


async def test_drop_oldest_keeps_the_newest_messages() -> None:
    broker = MemoryBroker()

    class Lossy(WebSocketController):
        outbound_maxsize = 3

        async def on_connect(self) -> None:
            await self.join("ticks")

    Lossy.broker = broker
    async with connect(Lossy, "/") as ws:
        for n in range(10):
            await broker.publish("ticks", n)
        assert [await ws.receive_text() for _ in range(3)] == ["7", "8", "9"]
        await ws.receive_nothing(within=0.1)


def test_an_unknown_outbound_policy_fails_when_the_class_is_defined() -> None:
    from tether import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"Blocking\.outbound_policy"):

        class Blocking(WebSocketController):
            outbound_policy = "block"


async def test_closing_while_group_messages_wait_is_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = MemoryBroker()
    errors: list[BaseException] = []

    class Busy(WebSocketController):
        encoding = "text"

        async def on_connect(self) -> None:
            await self.join("firehose")

        async def on_receive(self, data: str) -> None:
            for n in range(50):  # queued behind this handler, then the handler closes
                await broker.publish("firehose", n)
            await self.websocket.close(4000, "bye")

        async def on_error(self, websocket: WebSocket, exc: Exception) -> None:
            errors.append(exc)
            await super().on_error(websocket, exc)

    Busy.broker = broker
    async with connect(Busy, "/") as ws:
        await ws.send_text("go")
        with pytest.raises(ServerClosed) as closed:
            for _ in range(60):
                await ws.receive_text()
        assert closed.value.code == 4000
    assert errors == []
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
