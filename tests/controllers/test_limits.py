"""Limits: message size, rate, idleness and concurrency, each with its close code."""

from __future__ import annotations

import anyio
import pytest

from tether import WebSocketController
from tether.controllers.limits import RateLimit
from tether.testing import ServerClosed, connect

pytestmark = pytest.mark.anyio


class Echo(WebSocketController):
    encoding = None

    async def on_receive(self, data: str | bytes) -> str | bytes:
        return data


class Small(Echo):
    max_message_size = 8


async def test_a_message_at_the_limit_passes() -> None:
    async with connect(Small, "/") as ws:
        await ws.send_text("12345678")
        assert await ws.receive_text() == "12345678"


@pytest.mark.parametrize("payload", ["123456789", b"123456789", "ééééé"])  # é is 2 bytes
async def test_a_larger_message_closes_with_1009(payload: str | bytes) -> None:
    async with connect(Small, "/") as ws:
        await (ws.send_bytes(payload) if isinstance(payload, bytes) else ws.send_text(payload))
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_text()
        assert closed.value.code == 1009


class Strict(Echo):
    rate_limit = RateLimit(messages=3, per=60)


class Lenient(Echo):
    rate_limit = RateLimit(messages=3, per=60, action="drop")


async def test_over_the_rate_limit_closes_with_1008() -> None:
    async with connect(Strict, "/") as ws:
        for n in range(3):
            await ws.send_text(str(n))
            assert await ws.receive_text() == str(n)
        await ws.send_text("one too many")
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_text()
        assert closed.value.code == 1008
        assert closed.value.reason == "rate limit exceeded"


async def test_the_drop_action_skips_messages_and_keeps_the_connection() -> None:
    async with connect(Lenient, "/") as ws:
        for n in range(5):
            await ws.send_text(str(n))
        assert [await ws.receive_text() for _ in range(3)] == ["0", "1", "2"]
        await ws.receive_nothing(within=0.1)


async def test_tokens_refill_over_time() -> None:
    class Fast(Echo):
        rate_limit = RateLimit(messages=2, per=0.1)

    async with connect(Fast, "/") as ws:
        for n in range(4):
            await ws.send_text(str(n))
            assert await ws.receive_text() == str(n)
            await anyio.sleep(0.06)


async def test_an_idle_connection_closes_with_1001() -> None:
    closes: list[int] = []

    class Sleepy(Echo):
        idle_timeout = 0.2

        async def on_disconnect(self, close_code: int) -> None:
            closes.append(close_code)

    async with connect(Sleepy, "/") as ws:
        await ws.send_text("still here")
        assert await ws.receive_text() == "still here"
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_text(timeout=2)
        assert (closed.value.code, closed.value.reason) == (1001, "idle timeout")
    assert closes == [1001]


async def test_a_slow_handler_is_not_idleness() -> None:
    class Patient(Echo):
        idle_timeout = 0.1

        async def on_receive(self, data: str) -> str:
            await anyio.sleep(0.3)
            return data

    async with connect(Patient, "/") as ws:
        await ws.send_text("slow")
        assert await ws.receive_text() == "slow"


class Parallel(WebSocketController):
    encoding = "text"
    max_concurrency = 4

    async def on_receive(self, data: str) -> str:
        if data == "slow":
            await anyio.sleep(0.5)
        return data


async def test_with_max_concurrency_a_slow_handler_does_not_block_the_next() -> None:
    async with connect(Parallel, "/") as ws:
        await ws.send_text("slow")
        await ws.send_text("fast")
        assert await ws.receive_text(timeout=0.4) == "fast"
        assert await ws.receive_text() == "slow"


async def test_by_default_messages_are_handled_in_order() -> None:
    class Ordered(Parallel):
        max_concurrency = 1

    async with connect(Ordered, "/") as ws:
        await ws.send_text("slow")
        await ws.send_text("fast")
        assert [await ws.receive_text(), await ws.receive_text()] == ["slow", "fast"]


async def test_a_failing_concurrent_handler_closes_with_1011() -> None:
    class Fragile(Parallel):
        async def on_receive(self, data: str) -> str:
            if data == "boom":
                raise RuntimeError("boom")
            await anyio.sleep(0.2)
            return data

    async with connect(Fragile, "/", raise_app_exceptions=False) as ws:
        await ws.send_text("slow")
        await ws.send_text("boom")
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_text()
        assert closed.value.code == 1011
