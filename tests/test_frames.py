"""Frames: what cannot be sent as JSON is named, and an awaitable gets the `await` hint."""

import gc
import logging
import warnings
from typing import Any

import pytest

from tether import WebSocketController
from tether.testing import ServerClosed, connect

pytestmark = pytest.mark.anyio


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
