"""The chat example, in process: rooms, nicknames, origins, the page and the AsyncAPI document.

Each test builds the app with `create_app(PORT)`: the port the page would be
served on decides which origins may connect.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from examples.chat.app import app_from_env, asyncapi_options, create_app
from examples.chat.asyncapi import document_json, documented, write_docs
from tether.asyncapi import generate
from tether.brokers import MemoryBroker, RedisBroker
from tether.testing import AppClient, HandshakeRejected, ServerClosed

ROOT = Path(__file__).resolve().parents[2]
PORT = 8123


@pytest.fixture
def app() -> Starlette:
    """The chat app under test (the `ws_connect` fixture connects to it)."""
    return create_app(PORT)


def controller_of(app: Starlette) -> type:
    """The chat controller class mounted at `/ws/{room}`."""
    (route,) = [r for r in app.routes if isinstance(r, WebSocketRoute)]
    return route.endpoint


# -- rooms and nicknames --------------------------------------------------------------


@pytest.mark.anyio
async def test_members_of_a_room_see_joins_messages_and_leaves(ws_connect):
    async with ws_connect("/ws/lobby?nick=ada") as ada:
        assert await ada.receive_json() == {"type": "joined", "nick": "ada", "room": "lobby"}
        async with ws_connect("/ws/lobby?nick=bob") as bob:
            joined = {"type": "joined", "nick": "bob", "room": "lobby"}
            assert await ada.receive_json() == joined
            assert await bob.receive_json() == joined

            await ada.send_json({"type": "say", "text": "hi bob"})
            said = {"type": "said", "nick": "ada", "text": "hi bob"}
            assert await bob.receive_json() == said
            assert await ada.receive_json() == said  # the sender sees its own line too

            await bob.send_json({"type": "say", "text": "hi ada ✓"})
            assert await ada.receive_json() == {"type": "said", "nick": "bob", "text": "hi ada ✓"}
        assert await ada.receive_json() == {"type": "left", "nick": "bob"}


@pytest.mark.anyio
async def test_a_newcomer_asks_who_is_already_in_the_room(ws_connect):
    async with ws_connect("/ws/lobby?nick=ada") as ada:
        await ada.receive_json()  # ada joined
        async with ws_connect("/ws/lobby?nick=bob") as bob:
            await bob.receive_json()  # bob joined
            await bob.send_json({"type": "who"})
            assert await bob.receive_json() == {"type": "present", "nicks": ["ada", "bob"]}
        assert (await ada.receive_json())["type"] == "joined"  # bob joined
        assert await ada.receive_json() == {"type": "left", "nick": "bob"}
        await ada.send_json({"type": "who"})
        assert await ada.receive_json() == {"type": "present", "nicks": ["ada"]}


@pytest.mark.anyio
async def test_messages_stay_in_their_room(ws_connect):
    async with ws_connect("/ws/lobby?nick=ada") as ada, ws_connect("/ws/kitchen?nick=cat") as cat:
        await ada.receive_json()  # joined
        await cat.receive_json()  # joined
        await ada.send_json({"type": "say", "text": "only for the lobby"})
        assert (await ada.receive_json())["text"] == "only for the lobby"
        await cat.receive_nothing(within=0.2)


@pytest.mark.anyio
async def test_typing_notices_go_to_the_others_only(ws_connect):
    async with ws_connect("/ws/lobby?nick=ada") as ada, ws_connect("/ws/lobby?nick=bob") as bob:
        await ada.receive_json()  # ada joined
        await ada.receive_json()  # bob joined
        await bob.receive_json()  # bob joined
        await ada.send_json({"type": "typing"})
        assert await bob.receive_json() == {"type": "typing", "nick": "ada"}
        await ada.receive_nothing(within=0.1)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "path",
    [
        "/ws/lobby",  # no nick at all
        "/ws/lobby?nick=",
        "/ws/lobby?nick=two%20words",
        "/ws/lobby?nick=%3Cscript%3E",
        "/ws/lobby?nick=" + "x" * 21,
        "/ws/no%20spaces?nick=ada",  # the room follows the same rule
    ],
)
async def test_a_bad_nickname_or_room_is_refused(ws_connect, path: str):
    with pytest.raises(HandshakeRejected) as refused:
        async with ws_connect(path):
            pass
    assert refused.value.status == 403


@pytest.mark.anyio
async def test_an_invalid_message_closes_with_1007(ws_connect):
    async with ws_connect("/ws/lobby?nick=ada") as ada:
        await ada.receive_json()  # joined
        await ada.send_json({"type": "say", "text": ""})  # text must not be empty
        with pytest.raises(ServerClosed) as closed:
            await ada.receive_json()
    assert closed.value.code == 1007


# -- origins ---------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("origin", [f"http://127.0.0.1:{PORT}", f"http://localhost:{PORT}"])
async def test_the_pages_own_origin_may_connect(ws_connect, origin: str):
    async with ws_connect("/ws/lobby?nick=ada", headers={"origin": origin}) as ada:
        assert (await ada.receive_json())["type"] == "joined"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "origin",
    ["http://evil.example", f"http://127.0.0.1:{PORT + 1}", f"https://127.0.0.1:{PORT}"],
)
async def test_a_page_from_another_origin_is_refused(ws_connect, origin: str):
    with pytest.raises(HandshakeRejected) as refused:
        async with ws_connect("/ws/lobby?nick=ada", headers={"origin": origin}):
            pass
    assert refused.value.status == 403


# -- the page and the AsyncAPI document -------------------------------------------------


async def get(app: Starlette, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return await http.get(path)


@pytest.mark.anyio
async def test_the_page_is_served_at_the_root(app: Starlette):
    page = await get(app, "/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'import { TetherClient } from "/tether.js";' in page.text  # served by the app itself
    assert "<script src" not in page.text and "https://" not in page.text  # nothing external
    client = await get(app, "/tether.js")
    assert client.status_code == 200
    assert client.headers["content-type"].startswith("text/javascript")
    assert "export class TetherClient" in client.text


@pytest.mark.anyio
async def test_the_asyncapi_document_and_page_are_served(app: Starlette):
    document = (await get(app, "/asyncapi.json")).json()
    assert document == generate(create_app(PORT), **asyncapi_options(port=PORT))
    channel = document["channels"]["Chat"]
    assert channel["address"] == "/ws/{room}"
    assert channel["bindings"]["ws"]["query"]["required"] == ["nick"]
    assert set(document["operations"]) == {
        "Chat.say",
        "Chat.typing",
        "Chat.who",
        "Chat.request",
        "Chat.send",
    }
    page = await get(app, "/asyncapi")
    assert page.status_code == 200 and "tether chat example" in page.text


def test_the_asyncapi_command_prints_the_document_in_the_docs():
    printed = subprocess.run(
        [sys.executable, "-m", "examples.chat.asyncapi"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert json.loads(printed) == generate(create_app(), **asyncapi_options())
    assert printed == documented(), (
        "the chat's AsyncAPI document in docs/asyncapi.md is stale: "
        "python -m examples.chat.asyncapi --docs rewrites it"
    )


def test_the_docs_option_rewrites_the_block_on_the_page(tmp_path: Path):
    page = tmp_path / "asyncapi.md"
    stale = '    {\n      "asyncapi": "2.6.0"\n    }\n'
    head = "# AsyncAPI\n\n<!-- asyncapi: chat -->\n??? example\n\n    ```json\n"
    page.write_text(f"{head}{stale}    ```\n\nAfter.\n")
    assert documented(page) == '{\n  "asyncapi": "2.6.0"\n}\n'
    write_docs(page)
    assert documented(page) == document_json()
    text = page.read_text()
    assert text.startswith(
        "# AsyncAPI\n\n<!-- asyncapi: chat -->\n??? example\n\n    ```json\n    {\n"
    )
    assert text.endswith("\n    }\n    ```\n\nAfter.\n") and "2.6.0" not in text


# -- one setting for Redis ---------------------------------------------------------------


def test_memory_broker_by_default_redis_by_one_setting(monkeypatch: pytest.MonkeyPatch):
    assert isinstance(controller_of(create_app()).broker, MemoryBroker)
    url = "redis://127.0.0.1:6399/0"
    assert controller_of(create_app(redis_url=url)).broker.url == url
    monkeypatch.setenv("TETHER_REDIS_URL", url)
    broker = controller_of(app_from_env()).broker
    assert isinstance(broker, RedisBroker) and broker.url == url


@pytest.mark.anyio
async def test_two_apps_on_one_redis_share_rooms(redis_server):
    one, two = create_app(redis_url=redis_server.url), create_app(redis_url=redis_server.url)
    async with (
        AppClient(one) as first,
        AppClient(two) as second,
        first.connect("/ws/lobby?nick=ada") as ada,
    ):
        await ada.receive_json()  # ada joined: her app has subscribed to the room
        async with second.connect("/ws/lobby?nick=bob") as bob:
            await bob.receive_json()  # bob joined
            assert await ada.receive_json() == {"type": "joined", "nick": "bob", "room": "lobby"}
            await bob.send_json({"type": "say", "text": "across"})
            assert await ada.receive_json() == {"type": "said", "nick": "bob", "text": "across"}
