"""Stopping a broker's tasks: cancelled until they have ended, even if one cancel is lost."""

import asyncio

import pytest

from tether.brokers.cancelling import cancel_and_wait

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the brokers' own tasks are asyncio tasks


async def test_a_task_that_loses_a_cancel_is_cancelled_again_until_it_ends() -> None:
    beats: list[str] = []

    async def heartbeat() -> None:
        # As a retry loop does when a cancel turns into a deadline's TimeoutError.
        for _ in range(100):
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if not beats:
                    beats.append("lost one cancel")
                    continue
                beats.append("cancelled")
                raise

    task = asyncio.create_task(heartbeat())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait([task]), 5)
    assert task.cancelled()
    assert beats == ["lost one cancel", "cancelled"]


async def test_tasks_already_done_are_left_as_they_are() -> None:
    async def done() -> str:
        return "done"

    task = asyncio.create_task(done())
    await task
    await cancel_and_wait([task])
    assert task.result() == "done"
