"""MemoryBroker: in-process groups, under asyncio and trio."""

from __future__ import annotations

import dataclasses
import threading

import anyio
import msgspec
import pydantic
import pytest
from broker_helpers import WAIT, Client, running

from tether.brokers import Broker, MemoryBroker

pytestmark = pytest.mark.anyio

# What an app would have: one broker at module level, made before any event loop exists.
default_broker = MemoryBroker()


async def test_publish_reaches_every_member_in_order() -> None:
    broker = MemoryBroker()
    alice, bob = Client("alice"), Client("bob")
    await broker.subscribe("room", alice.queue)
    await broker.subscribe("room", bob.queue)
    async with running(alice, bob):
        for i in range(50):
            await broker.publish("room", f"message {i}")
        await alice.wait_for(50)
        await bob.wait_for(50)
    expected = [f"message {i}" for i in range(50)]
    assert alice.texts == expected
    assert bob.texts == expected


async def test_groups_are_separate() -> None:
    broker = MemoryBroker()
    alice, bob = Client("alice"), Client("bob")
    await broker.subscribe("kitchen", alice.queue)
    await broker.subscribe("garden", bob.queue)
    async with running(alice, bob):
        await broker.publish("kitchen", "to the kitchen")
        await broker.publish("garden", "to the garden")
        await broker.publish("attic", "to nobody")
        await alice.wait_for(1)
        await bob.wait_for(1)
    assert alice.texts == ["to the kitchen"]
    assert bob.texts == ["to the garden"]


async def test_exclude_skips_the_sender() -> None:
    broker = MemoryBroker()
    alice, bob = Client("alice"), Client("bob")
    await broker.subscribe("room", alice.queue)
    await broker.subscribe("room", bob.queue)
    async with running(alice, bob):
        await broker.publish("room", "from alice", exclude=alice.queue)
        await broker.publish("room", "for everyone")
        await bob.wait_for(2)
        await alice.wait_for(1)
    assert alice.texts == ["for everyone"]
    assert bob.texts == ["from alice", "for everyone"]


async def test_unsubscribe_stops_delivery_and_is_idempotent() -> None:
    broker = MemoryBroker()
    alice, bob = Client("alice"), Client("bob")
    await broker.subscribe("room", alice.queue)
    await broker.subscribe("room", bob.queue)
    await broker.unsubscribe("room", alice.queue)
    await broker.unsubscribe("room", alice.queue)
    await broker.unsubscribe("never-joined", alice.queue)
    async with running(alice, bob):
        await broker.publish("room", "after alice left")
        await bob.wait_for(1)
    assert alice.sent == []
    assert bob.texts == ["after alice left"]
    assert broker.members("room") == (bob.queue,)


async def test_unsubscribe_all_leaves_every_group_even_when_shielded() -> None:
    broker = MemoryBroker()
    alice, bob = Client("alice"), Client("bob")
    for group in ("a", "b", "c"):
        await broker.subscribe(group, alice.queue)
    await broker.subscribe("a", bob.queue)
    # What a connection does on its way out, even while being cancelled.
    with anyio.CancelScope() as scope:
        scope.cancel()
        with anyio.CancelScope(shield=True):
            await broker.unsubscribe_all(alice.queue)
            await broker.unsubscribe_all(alice.queue)  # idempotent
    async with running(alice, bob):
        for group in ("a", "b", "c"):
            await broker.publish(group, f"to {group}")
        await bob.wait_for(1)
    assert alice.sent == []
    assert bob.texts == ["to a"]
    assert broker.groups() == ["a"]


async def test_subscribing_twice_delivers_once() -> None:
    broker = MemoryBroker()
    alice = Client("alice")
    await broker.subscribe("room", alice.queue)
    await broker.subscribe("room", alice.queue)
    async with running(alice):
        await broker.publish("room", "once")
        await alice.wait_for(1)
        await anyio.sleep(0.01)
    assert alice.texts == ["once"]


@dataclasses.dataclass
class Point:
    x: int
    label: str


class Greeting(pydantic.BaseModel):
    text: str
    to: list[str]


class Ping(msgspec.Struct):
    seq: int


def sent_text(text: str) -> dict[str, object]:
    return {"type": "websocket.send", "text": text}


@pytest.mark.parametrize(
    ("message", "frame"),
    [
        ("plain text", sent_text("plain text")),
        (b"\x00\x01", {"type": "websocket.send", "bytes": b"\x00\x01"}),
        ({"text": "héllo ✓", "n": [1, 2]}, sent_text('{"text":"héllo ✓","n":[1,2]}')),
        ([Point(1, "é")], sent_text('[{"x":1,"label":"é"}]')),
        (Greeting(text="hi", to=["ann"]), sent_text('{"text":"hi","to":["ann"]}')),
        (Ping(seq=3), sent_text('{"seq":3}')),
    ],
)
async def test_messages_become_text_binary_or_compact_json_frames(
    message: object, frame: dict[str, object]
) -> None:
    broker = MemoryBroker()
    alice = Client("alice")
    await broker.subscribe("room", alice.queue)
    async with running(alice):
        await broker.publish("room", message)
        await alice.wait_for(1)
    assert alice.sent == [frame]


async def test_one_publish_is_encoded_once_and_shared() -> None:
    broker = MemoryBroker()
    clients = [Client(str(i)) for i in range(3)]
    for client in clients:
        await broker.subscribe("room", client.queue)
    async with running(*clients):
        await broker.publish("room", {"shared": True})
        for client in clients:
            await client.wait_for(1)
    first = clients[0].sent[0]
    assert all(client.sent[0] is first for client in clients)


async def test_unencodable_message_raises_before_anyone_receives_it() -> None:
    broker = MemoryBroker()
    alice = Client("alice")
    await broker.subscribe("room", alice.queue)
    with pytest.raises(TypeError, match="cannot send 'object' as JSON"):
        await broker.publish("room", {"oops": object()})
    assert len(alice.queue) == 0


async def test_publishing_without_subscribers_from_a_background_job() -> None:
    broker: Broker = MemoryBroker()
    await broker.publish("nobody-here", {"event": "tick"})  # no error, nobody receives


async def test_a_thousand_members() -> None:
    broker = MemoryBroker()
    clients = [Client(str(i)) for i in range(1000)]
    for client in clients:
        await broker.subscribe("crowd", client.queue)
    async with running(*clients):
        await broker.publish("crowd", "one")
        await broker.publish("crowd", "two")
        for client in clients:
            await client.wait_for(2)
    assert all(client.texts == ["one", "two"] for client in clients)


async def test_a_slow_member_does_not_hold_up_the_others() -> None:
    broker = MemoryBroker()
    slow, fast = Client("slow", stuck=True, maxsize=5), Client("fast")
    await broker.subscribe("room", slow.queue)
    await broker.subscribe("room", fast.queue)
    async with running(slow, fast):
        for i in range(1000):
            await broker.publish("room", str(i))
        await fast.wait_for(1000)
        assert len(slow.queue) <= 5
        slow.unstick()
    assert fast.texts == [str(i) for i in range(1000)]


def test_one_broker_serves_connections_on_different_loops_and_threads() -> None:
    """As under Starlette's TestClient: each connection runs its own loop in its own thread."""
    subscribed = threading.Event()
    received: list[str] = []
    errors: list[BaseException] = []

    async def connection() -> None:
        client = Client("listener")
        await default_broker.subscribe("lobby", client.queue)
        try:
            async with running(client):
                subscribed.set()
                await client.wait_for(3)
        finally:
            await default_broker.unsubscribe_all(client.queue)
        received.extend(client.texts)

    async def publisher() -> None:
        for word in ("one", "two", "three"):
            await default_broker.publish("lobby", word)

    def in_thread(backend: str) -> None:
        try:
            anyio.run(connection, backend=backend)
        except BaseException as exc:
            errors.append(exc)

    for listener_backend, publisher_backend in [("asyncio", "trio"), ("trio", "asyncio")]:
        received.clear()
        subscribed.clear()
        thread = threading.Thread(target=in_thread, args=(listener_backend,))
        thread.start()
        assert subscribed.wait(WAIT)
        anyio.run(publisher, backend=publisher_backend)
        thread.join(WAIT)
        assert not thread.is_alive()
        assert errors == []
        assert received == ["one", "two", "three"]
    assert default_broker.groups() == []


def test_publishes_are_encoded_like_replies() -> None:
    from tether.frames import encode_frame

    assert encode_frame({"a": "é"}) == {"type": "websocket.send", "text": '{"a":"é"}'}
