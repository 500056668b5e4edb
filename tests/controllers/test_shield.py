"""Teardown runs to the end under cancellation, and the shield is entered only where needed."""

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator

import anyio
import pytest
from starlette.types import Receive, Send

from tether import Provide, WebSocketController
from tether.controllers._shield import _task_states, teardown_shield

pytestmark = pytest.mark.anyio
# With TETHER_NO_PRIVATE=1 every teardown is shielded (tests/test_internals.py checks that);
# the tests of where the shield can be left out skip.
reads_task_states = pytest.mark.skipif(
    _task_states is None, reason="anyio's task states are not read (TETHER_NO_PRIVATE)"
)


def slow_teardown_controller(log: list[str]) -> type[WebSocketController]:
    """A controller whose on_disconnect and dependency teardown both wait before finishing."""

    async def session() -> AsyncIterator[str]:
        log.append("session up")
        try:
            yield "session"
        finally:
            with anyio.move_on_after(0.02):  # a timeout of its own still fires
                await anyio.sleep(5)
            log.append("session down")

    class SlowToLeave(WebSocketController):
        async def on_connect(self, s: str = Provide(session)) -> None:
            log.append("connected")

        async def on_disconnect(self, close_code: int) -> None:
            log.append("leaving")
            await anyio.sleep(0.02)
            log.append(f"on_disconnect {close_code}")

    return SlowToLeave


async def serve(app: type[WebSocketController], receive: Receive, send: Send) -> None:
    """Serve one connection, as a server does (the class is an ASGI app)."""
    scope = {"type": "websocket", "path": "/", "query_string": b"", "headers": []}
    await app(scope, receive, send)


async def test_teardown_that_waits_finishes_when_the_task_group_is_cancelled() -> None:
    """Like Starlette's TestClient: the client leaves, and the app is cancelled at once."""
    log: list[str] = []
    app = slow_teardown_controller(log)
    to_app, app_inbox = anyio.create_memory_object_stream[dict](10)
    to_test, test_inbox = anyio.create_memory_object_stream[dict](10)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve, app, app_inbox.receive, to_test.send)
            await to_app.send({"type": "websocket.connect"})
            assert (await test_inbox.receive())["type"] == "websocket.accept"
            await to_app.send({"type": "websocket.disconnect", "code": 1001})
            for _ in range(200):
                if "leaving" in log:
                    break
                await anyio.sleep(0.005)
            tg.cancel_scope.cancel()  # while on_disconnect waits

    assert log == ["session up", "connected", "leaving", "on_disconnect 1001", "session down"]


@reads_task_states
async def test_a_shield_is_entered_only_inside_an_anyio_cancel_scope(anyio_backend: str) -> None:
    inside = teardown_shield()
    assert isinstance(inside, anyio.CancelScope) == (anyio_backend == "trio")
    with anyio.CancelScope():
        assert isinstance(teardown_shield(), anyio.CancelScope)


@reads_task_states
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_task_no_anyio_scope_encloses_gets_no_shield(anyio_backend: str) -> None:
    """A server's own asyncio task (uvicorn's): no anyio cancellation can reach it."""

    async def connection_task() -> bool:
        return isinstance(teardown_shield(), anyio.CancelScope)

    async def task_group_task(result: list[bool]) -> None:
        result.append(isinstance(teardown_shield(), anyio.CancelScope))

    assert await asyncio.get_running_loop().create_task(connection_task()) is False
    from_group: list[bool] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(task_group_task, from_group)
    assert from_group == [True]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_unshielded_teardown_in_a_server_task_runs_to_the_end(anyio_backend: str) -> None:
    log: list[str] = []
    app = slow_teardown_controller(log)
    messages = iter([{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}])
    sent: list[dict] = []

    async def receive() -> dict:
        return next(messages)

    async def send(message: dict) -> None:
        sent.append(message)

    await asyncio.wait_for(asyncio.get_running_loop().create_task(serve(app, receive, send)), 5)
    assert [m["type"] for m in sent] == ["websocket.accept"]
    assert log == ["session up", "connected", "leaving", "on_disconnect 1000", "session down"]


WITHOUT_TRIO = """
import asyncio, sys
import anyio
from tether.controllers._shield import teardown_shield

async def main():
    plain = type(teardown_shield()).__name__
    async with anyio.create_task_group():
        scoped = type(teardown_shield()).__name__
    print(plain, scoped, "trio" in sys.modules)

asyncio.run(main())
"""


@reads_task_states
def test_without_trio_loaded_the_choice_needs_no_event_loop_lookup() -> None:
    # Servers never load trio; then the check skips asking asyncio for its loop.
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_TRIO], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["nullcontext", "CancelScope", "False"]
