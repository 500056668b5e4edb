"""The typed example: events routed by `@on` to typed handlers, typed replies, AsyncAPI."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from websockets.asyncio.client import connect as ws_client

from examples.typed.app import app as typed_app

WELCOME = {"type": "welcome", "events": ["add", "done", "remove", "list"]}


@pytest.fixture
def app() -> Starlette:
    """The to-do app under test."""
    return typed_app


@pytest.mark.anyio
async def test_each_event_gets_its_typed_reply(ws_connect):
    async with ws_connect("/ws") as ws:
        assert await ws.receive_json() == WELCOME

        await ws.send_json({"type": "add", "text": "milk"})
        milk = {"id": 1, "text": "milk", "done": False}
        assert await ws.receive_json() == {"type": "added", "item": milk}
        await ws.send_json({"type": "add", "text": "eggs"})
        eggs = {"id": 2, "text": "eggs", "done": False}
        assert await ws.receive_json() == {"type": "added", "item": eggs}

        await ws.send_json({"type": "done", "id": 1})
        milk["done"] = True
        assert await ws.receive_json() == {"type": "updated", "item": milk}

        await ws.send_json({"type": "remove", "id": 2})
        assert await ws.receive_json() == {"type": "removed", "id": 2}

        await ws.send_json({"type": "list"})
        assert await ws.receive_json() == {"type": "items", "items": [milk]}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("message", "detail"),
    [
        ({"type": "done", "id": 7}, "no item 7"),
        ({"type": "jump"}, "unknown event 'jump'"),
        ({"type": "add"}, "invalid message: Object missing required field `text`"),
        ({"type": "done", "id": "one"}, "invalid message: Expected `int`, got `str` - at `$.id`"),
    ],
)
async def test_a_message_it_cannot_handle_gets_a_problem_and_the_connection_stays(
    ws_connect, message: dict, detail: str
):
    async with ws_connect("/ws") as ws:
        await ws.receive_json()  # welcome
        await ws.send_json(message)
        assert await ws.receive_json() == {"type": "problem", "detail": detail}
        await ws.send_json({"type": "list"})
        assert await ws.receive_json() == {"type": "items", "items": []}


@pytest.mark.anyio
async def test_the_asyncapi_json_describes_every_event_and_reply(app: Starlette):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        document = (await http.get("/asyncapi.json")).json()
        page = await http.get("/asyncapi")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")

    operations = document["operations"]
    assert set(operations) == {
        "Todo.add", "Todo.done", "Todo.remove", "Todo.get_list", "Todo.request", "Todo.send",
    }  # fmt: skip
    add = document["components"]["messages"]["add"]["payload"]["allOf"]
    assert add[1]["properties"]["type"]["const"] == "add"  # the event key, pinned
    replies = {m["$ref"].rsplit("/", 1)[1] for m in operations["Todo.done"]["reply"]["messages"]}
    assert replies == {"Updated", "Problem"}
    sent = {m["$ref"].rsplit("/", 1)[1] for m in operations["Todo.send"]["messages"]}
    assert sent == {  # + `sends`, + the replies to requests
        "Added", "Updated", "Removed", "Items", "Problem", "Welcome", "reply", "errorReply",
    }  # fmt: skip
    text = document["components"]["schemas"]["Add"]["properties"]["text"]
    assert (text["minLength"], text["maxLength"]) == (1, 200)


@pytest.mark.anyio
async def test_python_m_examples_typed(serve_example: Callable[..., int]):
    port = serve_example("typed")
    with anyio.fail_after(10):
        async with ws_client(f"ws://127.0.0.1:{port}/ws") as ws:
            assert await ws.recv() == '{"type":"welcome","events":["add","done","remove","list"]}'
