"""The chat example under real servers: `python -m examples.chat`, one process or several.

Clients are `websockets` connections over TCP. With `--redis`, two separate
server processes — or the workers of one — serve the same rooms through a
real `redis-server`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_client
from websockets.exceptions import InvalidStatus

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 15.0


def chat_client(
    port: int, nick: str, room: str = "lobby", since: str | None = None, **options: Any
) -> Any:
    """A `websockets` connection to the chat on `port`, as `nick`, in `room`.

    `max_queue=None`: a client that leaves more than `max_queue` (16) messages
    unread stops reading its socket, and its close then waits `close_timeout`
    (10 s) for a close frame queued behind them; tests read only what they check.
    """
    url = f"ws://127.0.0.1:{port}/ws/{room}?nick={nick}" + (f"&since={since}" if since else "")
    return ws_client(url, max_queue=None, **options)


async def next_message(ws: ClientConnection, kind: str) -> dict[str, Any]:
    """The next message of type `kind`, skipping others (at most 1000, within TIMEOUT)."""
    with anyio.fail_after(TIMEOUT):
        for _ in range(1000):
            message = json.loads(await ws.recv())
            if message["type"] == kind:
                return message
    raise AssertionError(f"no {kind!r} message among the next 1000")


async def say(ws: ClientConnection, text: str) -> None:
    await ws.send(json.dumps({"type": "say", "text": text}))


@pytest.mark.anyio
async def test_two_clients_talk_through_python_m_examples_chat(
    serve_example: Callable[..., int],
):
    port = serve_example("chat")
    async with chat_client(port, "ada") as ada, chat_client(port, "bob") as bob:
        await next_message(bob, "joined")
        await say(ada, "hello bob")
        from_ada = {"type": "said", "nick": "ada", "text": "hello bob"}
        assert await next_message(bob, "said") == from_ada
        await say(bob, "hello ada")
        assert await next_message(ada, "said") == from_ada
        from_bob = {"type": "said", "nick": "bob", "text": "hello ada"}
        assert await next_message(ada, "said") == from_bob


@pytest.mark.anyio
async def test_the_server_checks_the_origin_of_browsers(serve_example: Callable[..., int]):
    port = serve_example("chat")
    async with chat_client(port, "ada", origin=f"http://localhost:{port}") as ada:
        assert (await next_message(ada, "joined"))["nick"] == "ada"
    with pytest.raises(InvalidStatus) as refused:
        async with chat_client(port, "eve", origin="http://evil.example"):
            pass
    assert refused.value.response.status_code == 403


@pytest.mark.anyio
async def test_two_processes_on_one_redis_keep_publish_order(
    serve_example: Callable[..., int], redis_server
):
    port_a = serve_example("chat", "--redis", redis_server.url)
    port_b = serve_example("chat", "--redis", redis_server.url)
    async with chat_client(port_b, "bob") as bob:
        await next_message(bob, "joined")  # bob's process has subscribed to the room
        async with chat_client(port_a, "ada") as ada:
            assert (await next_message(bob, "joined"))["nick"] == "ada"  # from process A
            for number in range(50):
                await say(ada, f"message {number}")
            received = [(await next_message(bob, "said"))["text"] for _ in range(50)]
            echoed = [(await next_message(ada, "said"))["text"] for _ in range(50)]
    sent = [f"message {number}" for number in range(50)]
    assert received == sent  # all of them, in publish order, across processes
    assert echoed == sent  # and ada sees her own lines too


@pytest.mark.anyio
async def test_who_is_in_the_room_is_the_same_answer_on_both_processes(
    serve_example: Callable[..., int], redis_server
):
    port_a = serve_example("chat", "--redis", redis_server.url)
    port_b = serve_example("chat", "--redis", redis_server.url)
    async with chat_client(port_a, "ada", "presence") as ada:
        await next_message(ada, "joined")
        async with chat_client(port_b, "bob", "presence") as bob:
            await next_message(bob, "joined")
            for client in (ada, bob):
                await client.send(json.dumps({"type": "who"}))
                assert (await next_message(client, "present"))["nicks"] == ["ada", "bob"]
        await next_message(ada, "left")
        with anyio.fail_after(TIMEOUT):  # bob's process leaves presence after on_disconnect
            while True:
                await ada.send(json.dumps({"type": "who"}))
                if (await next_message(ada, "present"))["nicks"] == ["ada"]:
                    break
                await anyio.sleep(0.05)


def processes_in_room(redis_url: str, room: str) -> int:
    """How many server processes serve `room`: each holds one Redis subscription per room."""
    with redis.Redis.from_url(redis_url) as client:
        ((_, count),) = client.pubsub_numsub(f"tether:room:{room}")
    return count


@pytest.mark.anyio
async def test_workers_share_rooms_through_redis(serve_example: Callable[..., int], redis_server):
    port = serve_example("chat", "--redis", redis_server.url, "--workers", "2")
    async with AsyncExitStack() as stack:
        clients: dict[str, ClientConnection] = {}
        for number in range(24):  # the kernel spreads connections over the two workers
            nick = f"user{number}"
            clients[nick] = await stack.enter_async_context(chat_client(port, nick))
            assert (await next_message(clients[nick], "joined"))["nick"] == nick  # subscribed
            if len(clients) >= 6 and processes_in_room(redis_server.url, "lobby") == 2:
                break
        assert processes_in_room(redis_server.url, "lobby") == 2, "all on one worker"

        for nick, client in clients.items():
            await say(client, f"hi from {nick}")
        for client in clients.values():
            heard = {(await next_message(client, "said"))["text"] for _ in clients}
            assert heard == {f"hi from {nick}" for nick in clients}


def test_workers_without_redis_is_a_usage_error():
    result = subprocess.run(
        [sys.executable, "-m", "examples.chat", "--workers", "2"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "TETHER_REDIS_URL"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--workers needs --redis URL" in result.stderr


async def next_in_room(ws: ClientConnection, kind: str) -> dict[str, Any]:
    """The next room message of type `kind` in a room with history: its envelope."""
    with anyio.fail_after(TIMEOUT):
        for _ in range(1000):
            frame = json.loads(await ws.recv())
            if frame.get("data", {}).get("type") == kind:
                return frame
    raise AssertionError(f"no {kind!r} envelope among the next 1000")


@pytest.mark.anyio
async def test_with_history_a_page_that_reconnects_gets_what_it_missed(
    serve_example: Callable[..., int], redis_server
):
    port_a = serve_example("chat", "--redis", redis_server.url, "--history")
    port_b = serve_example("chat", "--redis", redis_server.url, "--history")
    room = "recovery"
    async with chat_client(port_b, "bob", room) as bob:
        first = json.loads(await bob.recv())
        assert (first["type"], first["recovered"]) == ("recovery", False)  # a first visit
        async with chat_client(port_a, "ada", room) as ada:
            await next_in_room(bob, "joined")
            await say(ada, "before the drop")
            last = await next_in_room(ada, "said")
        since = f"{last['epoch']}:{last['offset']}"  # what the page keeps
        await next_in_room(bob, "left")
        for number in range(20):  # on the other process, while ada is away
            await say(bob, f"missed {number}")
        for _ in range(20):
            await next_in_room(bob, "said")

        async with chat_client(port_a, "ada", room, since=since) as ada:
            frames = [json.loads(await ada.recv()) for _ in range(23)]  # + the answer, left, joined
            [answer] = [f for f in frames if f.get("type") == "recovery"]
            said = [f["data"]["text"] for f in frames if f.get("data", {}).get("type") == "said"]
            offsets = [f["offset"] for f in frames if "offset" in f]
    assert (answer["recovered"], answer["missed"]) == (True, 21)  # ada's own leave notice too
    assert said == [f"missed {number}" for number in range(20)]
    assert offsets == list(range(last["offset"] + 1, last["offset"] + 23))  # + ada's own joined
