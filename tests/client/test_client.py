"""`tether.client.Client` against a real uvicorn, including one stopped and started again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from websockets.asyncio.client import connect

from tests.asgi_server import AsgiServer
from tether.client import Backoff, CallError, CallTimeout, Client, ClientClosed, RequestError

pytestmark = pytest.mark.anyio

HERE = Path(__file__).parent
APP = "rpc_app:app"
FAST = Backoff(initial=0.05, maximum=0.2)  # reconnect quickly, the tests wait for it


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the websockets client is asyncio-only


@pytest.fixture(scope="module")
def server() -> Iterator[AsgiServer]:
    with AsgiServer(APP, app_dir=HERE) as running:
        yield running


# -- requests over one connection ------------------------------------------------------


async def test_ten_thousand_pipelined_requests_each_get_exactly_one_reply(
    server: AsgiServer,
) -> None:
    count = 10_000
    with anyio.fail_after(120):
        async with connect(server.url("/ws"), max_size=None) as ws:
            for n in range(count):
                await ws.send(json.dumps({"type": "echo", "ref": n, "n": n}))
            replies = [json.loads(await ws.recv()) for _ in range(count)]
    assert all(reply["ok"] and reply["data"] == reply["ref"] for reply in replies)
    ids = [reply["ref"] for reply in replies]
    assert sorted(ids) == list(range(count))  # none lost, none duplicated
    assert ids != sorted(ids)  # and they really ran concurrently: some came back out of order


async def test_concurrent_client_requests_are_matched_to_their_replies(server: AsgiServer) -> None:
    results: dict[int, int] = {}

    async def ask(n: int) -> None:
        results[n] = await client.request("echo", {"n": n})

    with anyio.fail_after(60):
        async with Client(server.url("/ws")) as client, anyio.create_task_group() as tasks:
            for n in range(2_000):
                tasks.start_soon(ask, n)
    assert results == {n: n for n in range(2_000)}


async def test_request_errors_and_timeouts_leave_the_connection_and_others_alone(
    server: AsgiServer,
) -> None:
    with anyio.fail_after(30):
        async with Client(server.url("/ws")) as client, Client(server.url("/ws")) as other:
            assert await client.request("add", {"a": 1, "b": 2}) == 3
            with pytest.raises(CallError) as failed:
                await client.request("fail")
            assert (failed.value.code, failed.value.message) == ("refused", "as asked")
            with pytest.raises(CallError) as unknown:
                await client.request("nope")
            assert unknown.value.code == "unknown_event"
            # The server calls `confirm`, which this client has no handler for: it answers
            # unknown_event, so the server's handler raised, and reply_errors answers us.
            with pytest.raises(CallError) as refused:
                await client.request("ask", {"q": "?"})
            assert refused.value.code == "internal_error"
            with pytest.raises(CallTimeout, match=r"'sleep' got no reply within 0\.1s"):
                await client.request("sleep", {"seconds": 30}, timeout=0.1)
            assert await client.request("add", {"a": 2, "b": 2}) == 4
            assert await other.request("add", {"a": 3, "b": 3}) == 6
            assert client.connects == other.connects == 1


async def test_the_server_hears_malformed_duplicate_and_stray_frames_answered(
    server: AsgiServer,
) -> None:
    with anyio.fail_after(30):
        async with connect(server.url("/ws")) as ws, Client(server.url("/ws")) as other:
            await ws.send(json.dumps({"type": "add", "ref": [1], "a": 1, "b": 1}))
            reply = json.loads(await ws.recv())
            assert (reply["ref"], reply["ok"], reply["error"]["code"]) == (
                None,
                False,
                "bad_request",
            )
            await ws.send(json.dumps({"call": 41, "ok": True, "data": "nobody asked"}))
            await ws.send(json.dumps({"type": "add", "ref": 1, "a": 1, "b": 1}))
            assert json.loads(await ws.recv()) == {"ref": 1, "ok": True, "data": 2}
            assert await other.request("add", {"a": 1, "b": 0}) == 1


async def test_the_server_calls_the_client_and_gets_its_handlers_answer(
    server: AsgiServer,
) -> None:
    with anyio.fail_after(30):
        async with Client(server.url("/ws")) as client:

            @client.on_call("confirm")
            async def confirm(question: str) -> str:
                if question == "no":
                    raise RequestError("declined", "not today")
                return f"yes to {question}"

            assert await client.request("ask", {"q": "tea"}) == "yes to tea"
            with pytest.raises(CallError) as declined:
                await client.request("ask", {"q": "no"})
            # The server's handler raised CallError; reply_errors turned it into internal_error.
            assert declined.value.code == "internal_error"


# -- groups, reconnects and recovery ------------------------------------------------------


async def test_a_dropped_connection_reconnects_rejoins_and_recovers_what_it_missed(
    server: AsgiServer,
) -> None:
    with anyio.fail_after(30):
        async with Client(server.url("/ws"), backoff=FAST) as ada, Client(server.url("/ws")) as bob:
            first = await ada.join("room:drop")
            assert first["recovered"] is False  # a first visit has nothing to recover
            await bob.request("say", {"group": "room:drop", "text": "one"})
            assert await ada.receive(timeout=5) == {"type": "said", "text": "one"}
            await ada.send("close", {"code": 1012})  # the server restarts her connection
            while ada.connects < 2 or ada.positions.get("room:drop") is None:
                await anyio.sleep(0.01)
            # Bob speaks while she may be away; after her re-join she has all of it, once.
            for text in ("two", "three"):
                await bob.request("say", {"group": "room:drop", "text": text})
            assert [await ada.receive(timeout=5) for _ in range(2)] == [
                {"type": "said", "text": "two"},
                {"type": "said", "text": "three"},
            ]
            assert ada.close_code == 1012
            assert ada.positions["room:drop"].endswith(":3")
            assert await ada.request("add", {"a": 1, "b": 1}) == 2


async def test_messages_missed_while_away_are_replayed_in_order(server: AsgiServer) -> None:
    with anyio.fail_after(30):
        away = Backoff(initial=0.5, maximum=0.5, jitter=0)
        async with Client(server.url("/ws"), backoff=away) as ada, Client(server.url("/ws")) as bob:
            await ada.join("room:away")
            await bob.request("say", {"group": "room:away", "text": "before"})
            assert (await ada.receive(timeout=5))["text"] == "before"
            await ada.send("close", {"code": 1011})
            while ada.close_code is None:
                await anyio.sleep(0.01)
            for n in range(5):  # she is away for half a second: these reach her by recovery
                await bob.request("say", {"group": "room:away", "text": str(n)})
            texts = [(await ada.receive(timeout=5))["text"] for _ in range(5)]
            assert texts == ["0", "1", "2", "3", "4"]
            assert ada.connects == 2


async def test_the_client_comes_back_when_the_server_is_restarted() -> None:
    first = AsgiServer(APP, app_dir=HERE)
    port = first.port
    with anyio.fail_after(60):
        try:
            async with Client(first.url("/ws"), backoff=FAST) as client:
                joined = await client.join("room:restart")
                assert joined["recovered"] is False
                assert await client.request("add", {"a": 1, "b": 2}) == 3
                first.stop()  # SIGTERM: the connection closes, then the port is gone
                while client.close_code is None:
                    await anyio.sleep(0.01)
                # Sent while no server runs: it waits for the connection, then goes out.
                with AsgiServer(APP, app_dir=HERE, port=port):
                    assert await client.request("add", {"a": 2, "b": 3}, timeout=30) == 5
                    assert client.connects == 2
                    assert client.close_code in (1001, 1012)  # tether's, or uvicorn's restart
                    assert "room:restart" in client.groups
        finally:
            first.stop()


async def test_after_max_attempts_the_client_gives_up() -> None:
    stopped = AsgiServer(APP, app_dir=HERE)
    url = stopped.url("/ws")
    stopped.stop()
    with anyio.fail_after(30), pytest.raises(ClientClosed, match="could not connect"):
        async with Client(url, backoff=Backoff(initial=0.01, maximum=0.02, max_attempts=3)):
            pass


async def test_a_final_close_code_is_not_retried_and_ends_the_iteration(
    server: AsgiServer,
) -> None:
    with anyio.fail_after(30):
        async with Client(server.url("/ws"), backoff=FAST) as client:
            await client.send("close", {"code": 1008})
            assert [message async for message in client] == []
            assert (client.close_code, client.connects) == (1008, 1)
            with pytest.raises(ClientClosed, match="1008"):
                await client.request("add", {"a": 1, "b": 1})


async def test_on_handlers_get_their_events_and_the_rest_goes_to_async_for(
    server: AsgiServer,
) -> None:
    heard: list[dict] = []
    with anyio.fail_after(30):
        async with Client(server.url("/ws")) as client:
            client.on("said")(heard.append)
            await client.join("room:handlers")
            await client.request("say", {"group": "room:handlers", "text": "hi"})
            await client.send_json({"type": "add", "a": 1, "b": 1})  # no id: a bare reply
            assert await client.receive(timeout=5) == 2
    assert heard == [{"type": "said", "text": "hi"}]


def test_backoff_grows_to_its_cap_with_jitter_below_each_step() -> None:
    backoff = Backoff(initial=0.1, factor=2, maximum=1.0, jitter=0.5, max_attempts=5)
    for attempt, step in enumerate([0.1, 0.2, 0.4, 0.8, 1.0, 1.0], start=1):
        for _ in range(20):
            assert step / 2 <= backoff.delay(attempt) <= step
    assert not backoff.gives_up(4) and backoff.gives_up(5)
    with pytest.raises(ValueError):
        Backoff(initial=2, maximum=1)


async def test_a_url_that_cannot_work_is_refused_at_once() -> None:
    with anyio.fail_after(10), pytest.raises(ClientClosed, match="could not connect"):
        async with Client("http://127.0.0.1:1/not-a-websocket-url"):
            pass
