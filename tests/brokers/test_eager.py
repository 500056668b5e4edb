"""Eager sends: a publish starts an idle member's `send` at once, as a step of the member's task.

asyncio only (under trio the member's `run()` task always sends); each test
runs the queue's `run()` in a task of its own and waits at most a few seconds.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from broker_helpers import accepted_websocket

from tether.brokers import MemoryBroker, OutboundQueue
from tether.brokers._eager import EAGER_SENDS

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

Send = Callable[[dict[str, Any]], Awaitable[None]]
# With TETHER_NO_PRIVATE=1 there are no eager sends: the member's task sends everything
# (tests/test_internals.py checks that); the tests below that would see the difference skip.
eager_only = pytest.mark.skipif(not EAGER_SENDS, reason="eager sends are off (TETHER_NO_PRIVATE)")
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


async def settle() -> None:
    """Let every ready task run until it waits again."""
    for _ in range(5):
        await asyncio.sleep(0)


@asynccontextmanager
async def member(send: Send, **options: Any) -> AsyncIterator[tuple[OutboundQueue, asyncio.Task]]:
    """An `OutboundQueue` over `send`, subscribed to "room", its `run()` idle in its own task."""
    queue = OutboundQueue(send, **options)

    async def connection() -> None:
        request_id.set("member's")  # what the connection's own code set before run()
        await queue.run()

    task = asyncio.create_task(connection())
    await settle()
    await broker.subscribe("room", queue)
    try:
        yield queue, task
    finally:
        await broker.unsubscribe_all(queue)
        queue.close()
        with anyio.fail_after(5):
            await asyncio.wait([task])


broker = MemoryBroker()


@eager_only
async def test_an_idle_member_has_the_message_when_publish_returns() -> None:
    sent: list[tuple[str, asyncio.Task | None, str]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append((message["text"], asyncio.current_task(), request_id.get()))

    async with member(send) as (_, task):
        await broker.publish("room", "hello")
        # No await in between: the send ran inside publish, as the member's task.
        assert sent == [("hello", task, "member's")]
    assert asyncio.current_task() is not task


@eager_only
async def test_a_send_that_waits_is_finished_by_the_member_and_later_messages_follow() -> None:
    gate = anyio.Event()
    log: list[str] = []
    tasks: set[asyncio.Task | None] = set()

    async def send(message: dict[str, Any]) -> None:
        log.append(f"start {message['text']}")
        tasks.add(asyncio.current_task())
        await gate.wait()  # the transport applies back-pressure
        tasks.add(asyncio.current_task())
        log.append(f"sent {message['text']}")

    async with member(send) as (_, task):
        with anyio.fail_after(5):
            for text in ("a", "b", "c"):
                await broker.publish("room", text)  # returns although "a" is stuck
            assert log == ["start a"]
            gate.set()
            while len(log) < 6:
                await asyncio.sleep(0.001)
    assert log == ["start a", "sent a", "start b", "sent b", "start c", "sent c"]
    assert tasks == {task}


async def test_context_and_cancel_scopes_hold_across_the_suspension() -> None:
    gate = anyio.Event()
    seen: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        token = request_id.set(f"sending {message['text']}")
        try:
            with anyio.fail_after(5):  # a cancel scope entered before, left after, waiting
                await gate.wait()
            seen.append(request_id.get())
        finally:
            request_id.reset(token)  # the token is only valid in the context that made it
        seen.append(request_id.get())

    async with member(send) as (_, task):
        await broker.publish("room", "x")
        assert request_id.get() == "-"  # the publisher's context is untouched
        gate.set()
        with anyio.fail_after(5):
            while len(seen) < 2:
                await asyncio.sleep(0.001)
        assert not task.done()
    assert seen == ["sending x", "member's"]


async def test_a_send_that_fails_at_once_fails_the_member_not_the_publisher() -> None:
    async def send(message: dict[str, Any]) -> None:
        raise ConnectionResetError("the client went away")

    async with member(send) as (queue, task):
        await broker.publish("room", "hello")  # does not raise
        with anyio.fail_after(5), pytest.raises(ConnectionResetError, match="went away"):
            await task
        assert queue.closed


async def test_cancelling_the_member_reaches_a_send_it_was_finishing() -> None:
    gate = anyio.Event()
    log: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        try:
            await gate.wait()
        except BaseException as exc:
            log.append(type(exc).__name__)
            raise
        log.append("sent")

    async with member(send) as (_, task):
        await broker.publish("room", "stuck")
        await settle()  # the member has taken the send over
        task.cancel()
        with anyio.fail_after(5), pytest.raises(asyncio.CancelledError):
            await task
    assert log == ["CancelledError"]


@eager_only
async def test_cancelling_the_member_before_it_took_the_send_over_closes_the_send() -> None:
    log: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            log.append("send cleaned up")

    async with member(send) as (_, task):
        await broker.publish("room", "stuck")
        task.cancel()  # before the member woke up to resume the send
        with anyio.fail_after(5), pytest.raises(asyncio.CancelledError):
            await task
    assert log == ["send cleaned up"]


async def test_a_publish_from_inside_a_send_arrives_after_it() -> None:
    sent: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["text"])
        if message["text"] == "first":
            await broker.publish("room", "second")  # reaches this very member again

    async with member(send):
        await broker.publish("room", "first")
        with anyio.fail_after(5):
            while len(sent) < 2:
                await asyncio.sleep(0.001)
        await settle()
    assert sent == ["first", "second"]


@eager_only
async def test_nothing_is_sent_once_the_app_closed_the_websocket() -> None:
    wire: list[dict[str, Any]] = []
    websocket = await accepted_websocket(wire)
    async with member(websocket._send, websocket=websocket) as (queue, task):
        await broker.publish("room", "before")
        await websocket.close(1000)
        await broker.publish("room", "after")
        with anyio.fail_after(5):
            await task
        assert queue.closed
    assert [m["type"] for m in wire] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert wire[1]["text"] == "before"


@eager_only
async def test_the_task_is_swapped_the_way_this_python_offers() -> None:
    # 3.12+ has one call for it (as its eager tasks use); 3.10 and 3.11 keep a table.
    from tether.brokers import _eager

    if sys.version_info >= (3, 12):
        assert _eager._swap_current_task is not None
    else:
        assert _eager._swap_current_task is None
        assert _eager._current_tasks is not None
