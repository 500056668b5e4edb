"""OutboundQueue: one connection's bounded, ordered buffer between publishers and the socket."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest
from broker_helpers import Client, accepted_websocket, running

from tether import WebSocketState
from tether.brokers import OutboundQueue
from tether.close_codes import TRY_AGAIN_LATER

pytestmark = pytest.mark.anyio


def text(value: str) -> dict[str, Any]:
    return {"type": "websocket.send", "text": value}


async def test_messages_reach_the_socket_in_order() -> None:
    client = Client()
    async with running(client):
        for i in range(100):
            client.queue.deliver(text(str(i)))
        await client.wait_for(100)
    assert client.texts == [str(i) for i in range(100)]


async def test_close_stops_run_and_later_messages_are_ignored() -> None:
    client = Client()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.queue.run)
            client.queue.deliver(text("before"))
            await client.wait_for(1)
            client.queue.close()
    client.queue.deliver(text("after"))
    assert client.texts == ["before"]
    assert client.queue.closed


async def test_drop_oldest_keeps_memory_bounded_under_a_million_messages() -> None:
    # A consumer that never drains: run() is not even running.
    queue = OutboundQueue(lambda message: anyio.sleep(0), maxsize=100, policy="drop_oldest")
    longest = 0
    message = text("hello")
    for _ in range(1_000_000):
        queue.deliver(message)
        if len(queue) > longest:
            longest = len(queue)
    assert longest == 100
    assert queue.dropped == 1_000_000 - 100
    assert not queue.overflowed


async def test_drop_oldest_keeps_the_newest_messages() -> None:
    client = Client(maxsize=3, policy="drop_oldest")
    for i in range(10):  # delivered before the client starts reading
        client.queue.deliver(text(str(i)))
    async with running(client):
        await client.wait_for(3)
    assert client.texts == ["7", "8", "9"]
    assert client.queue.dropped == 7


async def test_close_policy_closes_the_connection_with_1013() -> None:
    client = Client(maxsize=3, policy="close")
    for i in range(4):
        client.queue.deliver(text(str(i)))
    with anyio.fail_after(5):
        await client.queue.run()  # returns by itself after sending the close
    assert client.queue.overflowed
    assert client.sent == [
        {"type": "websocket.close", "code": TRY_AGAIN_LATER, "reason": "outbound queue full"}
    ]
    assert TRY_AGAIN_LATER == 1013


async def test_with_its_websocket_the_queue_stops_once_the_app_closed() -> None:
    sent: list[dict[str, Any]] = []
    websocket = await accepted_websocket(sent)
    queue = OutboundQueue(websocket._send, websocket=websocket)
    queue.deliver(text("first"))
    queue.deliver(text("second"))
    await websocket.close(4000, "bye")  # before run() got to them
    with anyio.fail_after(5):
        await queue.run()
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.close"]
    assert queue.closed and len(queue) == 0


async def test_with_its_websocket_the_1013_close_goes_through_its_state_machine() -> None:
    sent: list[dict[str, Any]] = []
    websocket = await accepted_websocket(sent)
    queue = OutboundQueue(websocket._send, maxsize=2, policy="close", websocket=websocket)
    for i in range(3):
        queue.deliver(text(str(i)))
    with anyio.fail_after(5):
        await queue.run()
    assert sent[-1] == {"type": "websocket.close", "code": 1013, "reason": "outbound queue full"}
    assert websocket.application_state is WebSocketState.DISCONNECTED
    assert (websocket.close_code, websocket.close_reason) == (1013, "outbound queue full")


async def test_close_policy_never_holds_more_than_maxsize() -> None:
    queue = OutboundQueue(lambda message: anyio.sleep(0), maxsize=50, policy="close")
    message = text("hello")
    for _ in range(1_000_000):
        queue.deliver(message)
        assert len(queue) <= 50
    assert queue.overflowed


async def test_a_slow_socket_does_not_slow_the_producer() -> None:
    release = anyio.Event()
    sent: list[dict[str, Any]] = []

    async def slow_send(message: dict[str, Any]) -> None:
        await release.wait()
        sent.append(message)

    queue = OutboundQueue(slow_send, maxsize=10)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(queue.run)
            queue.deliver(text("0"))
            await anyio.sleep(0.01)  # "0" is now stuck in the socket
            for i in range(1, 1000):  # never blocks, although nothing is being sent
                queue.deliver(text(str(i)))
            assert len(queue) == 10
            release.set()
            while len(sent) < 11:
                await anyio.sleep(0.01)
            queue.close()
    assert sent[0] == text("0")  # was already in flight
    assert [m["text"] for m in sent[1:]] == [str(i) for i in range(990, 1000)]


async def test_delivery_from_another_thread_wakes_the_queue() -> None:
    client = Client()

    def other_thread() -> None:
        for i in range(200):
            client.queue.deliver(text(str(i)))

    async with running(client):
        await anyio.sleep(0.01)  # run() is now waiting
        thread = threading.Thread(target=other_thread)
        thread.start()
        await client.wait_for(200)
        thread.join(5)
    assert client.texts == [str(i) for i in range(200)]


async def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        OutboundQueue(lambda m: anyio.sleep(0), maxsize=0)
    with pytest.raises(ValueError, match="policy"):
        OutboundQueue(lambda m: anyio.sleep(0), policy="block")  # type: ignore[arg-type]
