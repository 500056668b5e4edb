"""RedisBroker notices a subscriber connection that went silent, and reconnects."""

from __future__ import annotations

import logging
import uuid

import anyio
import pytest
from broker_helpers import WAIT, Client, running

from tether.brokers import RedisBroker
from tether.testing.redis import RedisServer

pytestmark = pytest.mark.anyio

INTERVAL = 0.2
TIMEOUT = 0.5
# What the broker documents (interval + timeout), plus room for a loaded machine.
BOUND = INTERVAL + TIMEOUT + 2.0


@pytest.fixture
def anyio_backend() -> str:
    """redis.asyncio only runs on asyncio."""
    return "asyncio"


async def eventually(condition, timeout: float) -> None:  # type: ignore[no-untyped-def]
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.02)


async def test_a_frozen_redis_is_noticed_within_the_bound_and_the_reader_reconnects(
    private_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    server, group = private_redis_server, f"room-{uuid.uuid4().hex[:8]}"
    caplog.set_level(logging.INFO, logger="tether")
    options = {"timeout": TIMEOUT, "reconnect_delay": 0.05, "max_reconnect_delay": 0.2}
    watched = RedisBroker(server.url, health_check_interval=INTERVAL, **options)
    publisher = RedisBroker(server.url, health_check_interval=None, **options)
    alice = Client("alice")
    async with watched, publisher, running(alice):
        await watched.subscribe(group, alice.queue)
        await publisher.publish(group, "before")
        await alice.wait_for(1)
        try:
            # The TCP connection stays up: only the PING check can tell it is dead.
            server.pause()
            await eventually(lambda: not watched.connected, BOUND)
            assert any("did not answer PING" in r.getMessage() for r in caplog.records)
        finally:
            server.resume()
        await eventually(lambda: watched.connected, WAIT)
        await publisher.publish(group, "after")
        await alice.wait_for(2)
    assert alice.texts == ["before", "after"]


async def test_without_the_check_a_frozen_redis_goes_unnoticed(
    private_redis_server: RedisServer,
) -> None:
    server = private_redis_server
    broker = RedisBroker(server.url, health_check_interval=None, timeout=TIMEOUT)
    alice = Client("alice")
    async with broker, running(alice):
        await broker.subscribe("room", alice.queue)
        try:
            server.pause()
            await anyio.sleep(BOUND)  # the bound passes with no PING sent
            assert broker.connected
        finally:
            server.resume()


def test_a_health_check_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="health_check_interval"):
        RedisBroker(health_check_interval=0)
