"""Group history in a MemoryBroker: positions, recovery after a reconnect, bounds."""

from __future__ import annotations

import json

import anyio
import pytest
from broker_helpers import Client, running

from tether.brokers import GroupHistory, MemoryBroker, Position
from tether.brokers.history import HistoryPolicy

pytestmark = pytest.mark.anyio


def envelopes(client: Client) -> list[dict]:
    return [json.loads(text) for text in client.texts]


async def test_each_message_gets_the_next_offset_in_its_envelope() -> None:
    broker = MemoryBroker(history=GroupHistory(size=10, ttl=60))
    ada = Client("ada")
    first = await broker.recover("room", ada.queue, None)
    assert first.recovered is False and first.reason == "new"
    assert first.position is not None and first.position.offset == 0
    async with running(ada):
        await broker.publish("room", {"text": "hi"})
        await broker.publish("room", "plain")
        await broker.publish("room", b"\x00\x01")
        await ada.wait_for(3)
    epoch = first.position.epoch
    assert envelopes(ada) == [
        {"group": "room", "offset": 1, "epoch": epoch, "data": {"text": "hi"}},
        {"group": "room", "offset": 2, "epoch": epoch, "data": "plain"},
        {"group": "room", "offset": 3, "epoch": epoch, "bytes": "AAE="},
    ]
    # Server code sees the same position on the ASGI message.
    assert [m["position"] for m in ada.sent] == [Position(epoch, n) for n in (1, 2, 3)]


async def test_a_group_without_history_still_gets_the_bare_message() -> None:
    broker = MemoryBroker(history={"room:*": GroupHistory()})
    ada = Client("ada")
    await broker.subscribe("lobby", ada.queue)
    async with running(ada):
        await broker.publish("lobby", {"text": "hi"})
        await ada.wait_for(1)
    assert ada.sent == [{"type": "websocket.send", "text": '{"text":"hi"}'}]
    assert (await broker.recover("lobby", Client().queue, None)).reason == "no_history"
    page = await broker.history("lobby")
    assert page.entries == [] and page.position is None


async def test_a_reconnecting_member_gets_what_it_missed_then_live_ones() -> None:
    broker = MemoryBroker(history=GroupHistory(size=100, ttl=60))
    ada = Client("ada")
    await broker.recover("room", ada.queue, None)
    async with running(ada):
        for n in range(5):
            await broker.publish("room", n)
        await ada.wait_for(5)
    last = ada.sent[-1]["position"]
    await broker.unsubscribe_all(ada.queue)  # ada's connection drops

    for n in range(5, 15):  # published while she is away
        await broker.publish("room", n)

    back = Client("ada again")
    result = await broker.recover("room", back.queue, last)
    await broker.publish("room", 15)  # live, right after the seam
    async with running(back):
        await back.wait_for(11)
    assert result.recovered is True and result.reason is None
    assert result.replayed == 10
    assert result.position == Position(last.epoch, 15)
    assert [e["data"] for e in envelopes(back)] == list(range(5, 16))
    assert [e["offset"] for e in envelopes(back)] == list(range(6, 17))


async def test_a_position_older_than_the_history_is_not_recovered() -> None:
    broker = MemoryBroker(history=GroupHistory(size=3, ttl=60))
    for n in range(10):
        await broker.publish("room", n)
    epoch = (await broker.history("room")).position.epoch  # type: ignore[union-attr]
    late = Client()
    result = await broker.recover("room", late.queue, Position(epoch, 2))
    assert (result.recovered, result.reason, result.replayed) == (False, "expired", 0)
    assert result.position == Position(epoch, 10)
    # The last three are still kept: a position among them recovers.
    assert (await broker.recover("room", Client().queue, Position(epoch, 7))).recovered


async def test_a_position_from_another_group_or_epoch_or_the_future_is_not_recovered() -> None:
    broker = MemoryBroker(history=GroupHistory())
    await broker.publish("kitchen", "x")
    await broker.publish("garden", "y")
    kitchen = (await broker.history("kitchen")).position
    garden = (await broker.history("garden")).position
    assert kitchen is not None and garden is not None and kitchen.epoch != garden.epoch
    assert (await broker.recover("garden", Client().queue, kitchen)).reason == "epoch"
    ahead = Position(garden.epoch, garden.offset + 5)
    assert (await broker.recover("garden", Client().queue, ahead)).reason == "future"
    # A restarted broker (a new process) starts a new epoch.
    again = MemoryBroker(history=GroupHistory())
    assert (await again.recover("garden", Client().queue, garden)).reason == "epoch"


async def test_more_missed_than_the_queue_holds_is_not_recovered() -> None:
    broker = MemoryBroker(history=GroupHistory(size=100))
    await broker.publish("room", "start")
    start = (await broker.history("room")).position
    for n in range(20):
        await broker.publish("room", n)
    small = Client(maxsize=10)
    result = await broker.recover("room", small.queue, start)
    assert (result.recovered, result.reason, result.replayed) == (False, "overflow", 0)
    assert len(small.queue) == 0


async def test_history_reads_after_a_position_with_a_limit() -> None:
    broker = MemoryBroker(history=GroupHistory(size=100))
    for n in range(10):
        await broker.publish("room", {"n": n})
    whole = await broker.history("room")
    assert [entry.data for entry in whole.entries] == [{"n": n} for n in range(10)]
    assert whole.complete is True
    newest = await broker.history("room", limit=3)
    assert [entry.data["n"] for entry in newest.entries] == [7, 8, 9]
    since = whole.entries[3].position
    page = await broker.history("room", since=since, limit=2)
    assert [entry.position.offset for entry in page.entries] == [5, 6]
    assert page.complete is True and page.position == whole.entries[-1].position
    with pytest.raises(ValueError, match="positive int"):
        await broker.history("room", limit=0)


async def test_history_is_bounded_in_size_and_forgotten_after_its_ttl() -> None:
    broker = MemoryBroker(history=GroupHistory(size=5, ttl=0.05))
    for n in range(50):
        await broker.publish("room", n)
    page = await broker.history("room")
    assert [entry.data for entry in page.entries] == list(range(45, 50))
    assert len(broker._logs["room"].frames) == 5
    await anyio.sleep(0.2)  # longer than the ttl: nobody published since
    await broker.publish("other", "sweeps")
    assert "room" not in broker._logs
    after = await broker.history("room")
    assert after.entries == []
    assert after.position is not None and after.position.epoch != page.position.epoch  # type: ignore[union-attr]


async def test_exclude_holds_in_a_group_with_history() -> None:
    broker = MemoryBroker(history=GroupHistory())
    ada, bob = Client("ada"), Client("bob")
    await broker.recover("room", ada.queue, None)
    await broker.recover("room", bob.queue, None)
    async with running(ada, bob):
        await broker.publish("room", "from ada", exclude=ada.queue)
        await broker.publish("room", "for all")
        await bob.wait_for(2)
        await ada.wait_for(1)
    assert [e["data"] for e in envelopes(ada)] == ["for all"]


def test_positions_parse_from_what_str_gives() -> None:
    position = Position("5f0c2a9e1b7d", 42)
    assert str(position) == "5f0c2a9e1b7d:42"
    assert Position.parse(str(position)) == position
    for bad in ["", "42", ":42", "abc:", "abc:-1", "abc:1.5", "a b:1", "abc:٣", "x:" + "9" * 30]:
        with pytest.raises(ValueError, match="position"):
            Position.parse(bad)


def test_history_settings_are_checked_when_made() -> None:
    with pytest.raises(ValueError, match="size"):
        GroupHistory(size=0)
    with pytest.raises(ValueError, match="ttl"):
        GroupHistory(ttl=0)
    with pytest.raises(TypeError, match="GroupHistory"):
        MemoryBroker(history={"room:*": 100})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="mapping"):
        MemoryBroker(history=100)  # type: ignore[arg-type]


def test_an_exact_name_wins_over_a_pattern_and_a_longer_pattern_over_a_shorter() -> None:
    short, long_, exact = GroupHistory(size=1), GroupHistory(size=2), GroupHistory(size=3)
    policy = HistoryPolicy(
        {"room:*": short, "room:vip:*": long_, "room:vip:9": exact, "room:x": None}
    )
    assert policy.of("room:1") is short
    assert policy.of("room:vip:1") is long_
    assert policy.of("room:vip:9") is exact
    assert policy.of("room:x") is None
    assert policy.of("lobby") is None
