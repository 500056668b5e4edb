"""`TETHER_NO_PRIVATE=1` turns off every use of other libraries' private internals.

Each check runs in a fresh interpreter, since the switch is read once, at
import. The core suite also runs whole with the switch on (`.ci/matrix`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

FALLBACKS = r"""
import asyncio, json
import anyio
from starlette._exception_handler import wrap_app_handling_exceptions
from starlette.websockets import WebSocket

from tether.brokers import MemoryBroker, OutboundQueue
from tether.controllers._passthrough import skip_passthrough
from tether.controllers._shield import teardown_shield
from tether.internals import USE_PRIVATE_INTERNALS

SCOPE = {"type": "websocket", "path": "/", "headers": [], "query_string": b""}


async def server_send(message):
    pass


async def wrapped_send():
    seen = []

    async def app(scope, receive, send):
        seen.append(send)

    await wrap_app_handling_exceptions(app, WebSocket(SCOPE, None, None))(SCOPE, None, server_send)
    return seen[0]


async def main():
    report = {"private": USE_PRIVATE_INTERNALS}
    # A publish to an idle member: sent inside publish (eager), or later by the member's task.
    sent, broker = [], MemoryBroker()

    async def send(message):
        sent.append(asyncio.current_task() is member)

    queue = OutboundQueue(send)
    member = asyncio.create_task(queue.run())
    await asyncio.sleep(0)
    await broker.subscribe("room", queue)
    await broker.publish("room", "hello")
    report["sent_in_publish"] = len(sent)
    for _ in range(10):
        await asyncio.sleep(0)
    report["sent_by_member"] = sent
    queue.close()
    await member
    # Teardown in a task no anyio scope encloses (a server's connection task).
    report["shield"] = await asyncio.create_task(_shield_type())
    # Starlette's exception-middleware wrapper around the server's send.
    sender = await wrapped_send()
    report["wrapper_skipped"] = skip_passthrough(sender) is server_send
    print(json.dumps(report))


async def _shield_type():
    return type(teardown_shield()).__name__


asyncio.run(main())
"""


def run_with(value: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TETHER_NO_PRIVATE"}
    if value is not None:
        env["TETHER_NO_PRIVATE"] = value
    done = subprocess.run(
        [sys.executable, "-c", FALLBACKS], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("value", ["1", "yes", "true"])
def test_the_switch_turns_every_private_internal_off(value: str) -> None:
    assert run_with(value) == {
        "private": False,
        "sent_in_publish": 0,  # no eager send: the member's own task woke and sent
        "sent_by_member": [True],
        "shield": "CancelScope",  # every teardown is shielded
        "wrapper_skipped": False,  # every frame goes through Starlette's wrapper
    }


@pytest.mark.parametrize("value", [None, "", "0", "false", "no"])
def test_without_the_switch_each_private_internal_is_used(value: str | None) -> None:
    assert run_with(value) == {
        "private": True,
        "sent_in_publish": 1,  # the send ran inside publish, as a step of the member's task
        "sent_by_member": [True],
        "shield": "nullcontext",  # nothing could cancel it through anyio: no shield
        "wrapper_skipped": True,
    }
