"""AsyncAPI documents: generated from controllers, checked by the official parser."""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

import jsonschema
import msgspec
import pydantic
import pytest
from fastapi import APIRouter, FastAPI
from lilya.apps import Lilya
from lilya.routing import Include, WebSocketPath
from starlette.applications import Starlette
from starlette.routing import Mount, WebSocketRoute
from starlette.testclient import TestClient

from tether import (
    ConfigurationError,
    Group,
    Header,
    Provide,
    Query,
    WebSocket,
    WebSocketController,
    on,
)
from tether.asyncapi import asyncapi_routes, generate, render_page
from tether.brokers import GroupHistory, MemoryBroker
from tether.testing import connect

PARSER_DIR = Path(__file__).parent / "asyncapi"
INSTALL_TIMEOUT = 300
PARSE_TIMEOUT = 120
SERVERS = {"local": {"host": "localhost:8000", "protocol": "ws"}}


# -- the official parser ------------------------------------------------------------


@pytest.fixture(scope="session")
def asyncapi_parser() -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    """Run `@asyncapi/parser` on documents; return one report per document.

    Installs the pinned parser (tests/asyncapi/package-lock.json) into
    tests/asyncapi/node_modules on first use; skips only without node/npm.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to run the official AsyncAPI parser")
    if not (PARSER_DIR / "node_modules" / "@asyncapi" / "parser").is_dir():
        try:
            subprocess.run(
                [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
                cwd=PARSER_DIR,
                check=True,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
            )
        except subprocess.CalledProcessError as exc:
            pytest.fail(f"npm ci failed in {PARSER_DIR}:\n{exc.stdout}\n{exc.stderr}")
        except subprocess.TimeoutExpired:
            pytest.fail(f"npm ci did not finish within {INSTALL_TIMEOUT}s in {PARSER_DIR}")

    def parse(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
        done = subprocess.run(
            [node, str(PARSER_DIR / "validate.js")],
            input=json.dumps(documents),
            capture_output=True,
            text=True,
            timeout=PARSE_TIMEOUT,
        )
        try:
            reports = json.loads(done.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"the parser runner failed:\n{done.stdout}\n{done.stderr}")
        if not isinstance(reports, list):  # the runner could not read its input
            pytest.fail(f"the parser runner failed: {reports}")
        return reports

    return parse


# -- a controller that uses every feature ---------------------------------------------


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Join:
    room: str
    nick: str = "anon"


class Say(TypedDict):
    text: str
    color: str


class Leave(pydantic.BaseModel):
    """A client leaves the room."""

    reason: str | None = None
    at: int


class Move(msgspec.Struct):
    """A cursor move."""

    x: int
    y: int


class Ack(pydantic.BaseModel):
    """The server confirms a message."""

    ok: bool = True


@dataclasses.dataclass
class Presence:
    """Who is in the room."""

    nicks: list[str]


class Notice(msgspec.Struct):
    """A notice pushed by the server."""

    text: str


def get_tenant(tenant: str = Header(alias="X-Tenant")) -> str:
    return tenant


def get_db(tenant: str = Provide(get_tenant), limit: int = Query(10)) -> dict[str, Any]:
    return {"tenant": tenant, "limit": limit}


class Room(WebSocketController):
    """A chat room: join, talk, move, leave."""

    encoding = "json"
    event_key = "op"
    sends = (Presence, Notice)

    async def on_connect(
        self,
        websocket: WebSocket,
        room: str,
        kind: Color,
        token: str = Query(),
        user_agent: Annotated[str | None, Header()] = None,
        db: dict[str, Any] = Provide(get_db),
    ) -> None:
        await websocket.accept()

    @on("join")
    async def join(self, data: Join) -> Presence:
        """Enter the room; the server answers with who is there."""
        return Presence([data.nick])

    @on("say")
    @on("shout")
    async def say(self, data: Say) -> Ack:
        """Say something to everyone."""
        return Ack()

    @on("leave")
    async def leave(self, data: Leave) -> None:
        """Leave the room."""

    @on("move")
    async def move(self, data: Move) -> Ack | Notice | None:
        return None

    async def on_receive(self, data: dict[str, Any]) -> str:
        """Any other message."""
        return "unknown"


# -- a plain echo controller -------------------------------------------------------------


class Echo(WebSocketController):
    """Echo every text frame."""

    encoding = "text"

    async def on_receive(self, data: str) -> str:
        """Send the text back."""
        return data


class Raw(WebSocketController):
    async def on_receive(self, data):  # type: ignore[no-untyped-def]
        return data


class Typed(WebSocketController):
    """A chat line per message."""

    async def on_receive(self, data: Move | list[Move]) -> bytes:
        return b""


# -- apps ---------------------------------------------------------------------------------


def starlette_app() -> Starlette:
    return Starlette(routes=[Mount("/api", routes=[WebSocketRoute("/rooms/{room}/{kind}", Room)])])


def lilya_app() -> Lilya:
    return Lilya(routes=[Include("/api", routes=[WebSocketPath("/rooms/{room}/{kind}", Room)])])


def fastapi_app() -> FastAPI:
    router = APIRouter(routes=[WebSocketRoute("/rooms/{room}/{kind}", Room)])
    app = FastAPI()
    app.include_router(router, prefix="/api")
    return app


APPS = {"starlette": starlette_app, "lilya": lilya_app, "fastapi": fastapi_app}


def room_document(framework: str) -> dict[str, Any]:
    return generate(
        APPS[framework](),
        title="Rooms",
        version="1.2.0",
        servers=SERVERS,
        description="Chat rooms over WebSocket.",
    )


# -- more shapes of controller --------------------------------------------------------------


class Blob(WebSocketController):
    encoding = "bytes"

    async def on_receive(self, data):  # type: ignore[no-untyped-def]
        return None


class AnyJson(WebSocketController):
    encoding = "json"

    async def on_receive(self, data: Any) -> dict[str, int]:
        return {}


class Pusher(WebSocketController):
    """Pushes notices; reads nothing."""

    sends = (Notice, str)


class Cat(pydantic.BaseModel):
    pet: Literal["cat"]
    lives: int = 9


class Dog(pydantic.BaseModel):
    pet: Literal["dog"]
    good: bool = True


class Pets(WebSocketController):
    encoding = "json"

    async def on_receive(
        self, data: Annotated[Cat | Dog, pydantic.Field(discriminator="pet")]
    ) -> None:
        """One pet per message."""


def echo_app() -> Starlette:
    return Starlette(
        routes=[
            WebSocketRoute("/echo", Echo),
            WebSocketRoute("/raw/{id:int}", Raw),
            WebSocketRoute("/typed", Typed),
            Mount("/blob", app=Blob),
            WebSocketRoute("/any", AnyJson),
        ]
    )


def echo_document() -> dict[str, Any]:
    return generate(echo_app(), title="Echo", version="1", servers=SERVERS)


@dataclasses.dataclass
class Question:
    """What the server asks a client to confirm."""

    item: str


class Shop(WebSocketController):
    """Sells things; asks the buyer to confirm first."""

    max_concurrency = 2
    calls = {"confirm": (Question, bool), "ping": (None, Any)}

    @on("buy")
    async def buy(self, data: dict[str, Any]) -> str:
        return "bought" if await self.call("confirm", Question(data["item"])) else "kept"


def shop_document() -> dict[str, Any]:
    return generate([("/shop", Shop)], title="Shop", version="1")


@dataclasses.dataclass
class Posted:
    """A line posted to a board."""

    nick: str
    text: str


class Board(WebSocketController):
    """Boards that keep their history; presence in each; a news feed without history."""

    encoding = "json"
    broker = MemoryBroker(history={"board:*": GroupHistory(size=10)})
    groups = {
        "board:*": Group(Posted, presence_events=True),  # history: from the broker
        "news": Notice,
        "files": Group(bytes | Posted, history=True),
        "anything": Group(Any, history=False),
    }

    async def on_connect(self, websocket: WebSocket, board: str, nick: str = Query()) -> None:
        await websocket.accept()
        self.group = f"board:{board}"
        await self.join(self.group, presence={"nick": nick}, presence_key=nick,
                        presence_events=True)  # fmt: skip

    async def on_receive(self, data: dict[str, Any]) -> None:
        await self.publish(self.group, Posted(data["nick"], data["text"]))


def board_document() -> dict[str, Any]:
    return generate([WebSocketRoute("/boards/{board}", Board)], title="Boards", version="1")


def chat_document(*, history: bool) -> dict[str, Any]:
    """The chat example's document; with history its rooms' messages come in envelopes."""
    from examples.chat.app import asyncapi_options, create_app

    return generate(create_app(history=history), **asyncapi_options())


def mixed_document() -> dict[str, Any]:
    routes = [
        ("/push", Pusher),
        ("/pets", Pets),
        ("/echo", Echo),
        ("/echo-again", Echo),
        WebSocketRoute("/rooms/{room}/{kind}", Room),
    ]
    return generate(routes, title="Mixed", version="0.1")


def broken_document() -> dict[str, Any]:
    document = echo_document()
    del document["info"]["version"]
    return document


DOCUMENTS: dict[str, Callable[[], dict[str, Any]]] = {
    **{f"room-{name}": (lambda name=name: room_document(name)) for name in APPS},
    "echo": echo_document,
    "mixed": mixed_document,
    "shop": shop_document,
    "board": board_document,
    "chat": lambda: chat_document(history=False),
    "chat-history": lambda: chat_document(history=True),
}


@pytest.fixture(scope="module")
def parser_reports(asyncapi_parser: Any) -> dict[str, dict[str, Any]]:
    """Every document above, parsed in one run of the parser (it starts slowly)."""
    names = [*DOCUMENTS, "broken"]
    documents = [factory() for factory in DOCUMENTS.values()] + [broken_document()]
    return dict(zip(names, asyncapi_parser(documents), strict=True))


# -- the official parser accepts what we generate ---------------------------------------------


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_the_parser_accepts_the_document(parser_reports: Any, name: str) -> None:
    report = parser_reports[name]
    problems = [d for d in report["diagnostics"] if d["severity"] in ("error", "warning")]
    assert report["valid"] and not problems, json.dumps(
        {"problems": problems, "document": DOCUMENTS[name]()}, indent=2
    )


def test_the_parser_reports_errors(parser_reports: Any) -> None:
    report = parser_reports["broken"]
    assert not report["valid"]
    assert any(d["severity"] == "error" and d["path"] == ["info"] for d in report["diagnostics"]), (
        report
    )


# -- what the document says -------------------------------------------------------------------


def test_every_framework_gives_the_same_document() -> None:
    starlette = room_document("starlette")
    assert room_document("lilya") == starlette
    assert room_document("fastapi") == starlette


def test_info_and_servers() -> None:
    document = room_document("starlette")
    assert document["asyncapi"] == "3.0.0"
    assert document["info"] == {
        "title": "Rooms",
        "version": "1.2.0",
        "description": "Chat rooms over WebSocket.",
    }
    assert document["servers"] == SERVERS
    assert document["servers"] is not SERVERS


def test_channel_address_parameters_and_description() -> None:
    channel = room_document("lilya")["channels"]["Room"]
    assert channel["address"] == "/api/rooms/{room}/{kind}"
    assert set(channel["parameters"]) == {"room", "kind"}
    assert channel["parameters"]["kind"]["enum"] == ["red", "blue"]
    assert channel["description"] == "A chat room: join, talk, move, leave."


def test_convertors_are_stripped_from_the_address() -> None:
    channel = echo_document()["channels"]["Raw"]
    assert channel["address"] == "/raw/{id}"
    assert "integer" in channel["parameters"]["id"]["description"]


def test_query_and_header_bindings_include_dependencies() -> None:
    ws = room_document("fastapi")["channels"]["Room"]["bindings"]["ws"]
    assert ws["query"]["properties"] == {
        "token": {"type": "string"},
        "limit": {"type": "integer", "default": 10},
    }
    assert ws["query"]["required"] == ["token"]
    assert ws["headers"]["properties"]["user-agent"] == {"type": "string"}
    assert ws["headers"]["properties"]["x-tenant"] == {"type": "string"}  # via get_db -> get_tenant
    assert ws["headers"]["required"] == ["x-tenant"]


def test_operations_and_their_actions() -> None:
    operations = room_document("starlette")["operations"]
    actions = {name: op["action"] for name, op in operations.items()}
    assert actions == {
        "Room.join": "receive",
        "Room.say": "receive",
        "Room.leave": "receive",
        "Room.move": "receive",
        "Room.on_receive": "receive",
        "Room.request": "receive",
        "Room.send": "send",
    }
    assert all(op["channel"] == {"$ref": "#/channels/Room"} for op in operations.values())
    assert operations["Room.say"]["description"] == "Say something to everyone."


def test_routed_messages_name_their_event() -> None:
    document = room_document("starlette")
    say = document["operations"]["Room.say"]
    assert say["messages"] == [
        {"$ref": "#/channels/Room/messages/say"},
        {"$ref": "#/channels/Room/messages/shout"},
    ]
    shout = resolve(document, resolve(document, say["messages"][1])["$ref"])
    assert shout["name"] == "shout"
    base, pinned = shout["payload"]["allOf"]
    assert base == {"$ref": "#/components/schemas/Say"}
    assert pinned["properties"]["op"]["const"] == "shout"  # the custom event_key
    assert pinned["required"] == ["op"]


def test_payload_schemas_of_each_library() -> None:
    schemas = room_document("starlette")["components"]["schemas"]
    assert schemas["Join"]["properties"]["nick"] == {"type": "string", "default": "anon"}
    assert schemas["Say"]["required"] == ["color", "text"]  # TypedDict
    assert schemas["Leave"]["properties"]["at"]["type"] == "integer"  # pydantic
    assert schemas["Move"]["description"] == "A cursor move."  # msgspec
    assert schemas["Notice"]["properties"]["text"] == {"type": "string"}


def test_replies_and_sends() -> None:
    document = room_document("starlette")
    operations = document["operations"]
    assert operations["Room.join"]["reply"] == {
        "channel": {"$ref": "#/channels/Room"},
        "messages": [{"$ref": "#/channels/Room/messages/Presence"}],
    }
    assert "reply" not in operations["Room.leave"]
    move_replies = [
        m["$ref"].rsplit("/", 1)[-1] for m in operations["Room.move"]["reply"]["messages"]
    ]
    assert move_replies == ["Ack", "Notice"]
    sent = [m["$ref"].rsplit("/", 1)[-1] for m in operations["Room.send"]["messages"]]
    assert sorted(sent) == ["Ack", "Notice", "Presence", "errorReply", "reply", "text"]
    text = document["components"]["messages"]["text"]
    assert text["contentType"] == "text/plain"  # a returned str goes out as a text frame


def test_requests_are_a_receive_operation_with_reply_and_error_reply() -> None:
    document = room_document("starlette")
    request = document["operations"]["Room.request"]
    (asked,) = (resolve(document, resolve(document, m)["$ref"]) for m in request["messages"])
    assert asked["payload"]["required"] == ["op", "ref"]  # the event key, the request key
    replies = [
        resolve(document, resolve(document, m)["$ref"]) for m in request["reply"]["messages"]
    ]
    ok, failed = (reply["payload"] for reply in replies)
    assert ok["properties"]["ok"] == {"const": True} and ok["required"] == ["ref", "ok", "data"]
    assert failed["properties"]["error"]["required"] == ["code", "message"]


def test_server_calls_are_send_operations_with_the_clients_replies() -> None:
    document = shop_document()
    operations = document["operations"]
    confirm = operations["Shop.call.confirm"]
    assert confirm["action"] == "send"
    (asked,) = (resolve(document, resolve(document, m)["$ref"]) for m in confirm["messages"])
    assert asked["payload"]["required"] == ["type", "call", "data"]
    assert asked["payload"]["properties"]["type"] == {"type": "string", "const": "confirm"}
    assert asked["payload"]["properties"]["data"] == {"$ref": "#/components/schemas/Question"}
    replies = [
        resolve(document, resolve(document, m)["$ref"]) for m in confirm["reply"]["messages"]
    ]
    answered, failed = (reply["payload"] for reply in replies)
    assert answered["properties"]["data"] == {"type": "boolean"}
    assert answered["properties"]["ok"] == {"const": True}
    assert "type" not in answered["properties"]  # a reply carries no event key
    assert failed["required"] == ["call", "ok", "error"]
    ping = operations["Shop.call.ping"]
    (asked,) = (resolve(document, resolve(document, m)["$ref"]) for m in ping["messages"])
    assert asked["payload"]["properties"]["data"] == {"type": "null"}
    (answered, _) = (
        resolve(document, resolve(document, m)["$ref"]) for m in ping["reply"]["messages"]
    )
    assert answered["payload"]["properties"]["data"] == {}  # any JSON
    # The calls are the server's own: not among what the client sends.
    receives = [op for op in operations.values() if op["action"] == "receive"]
    assert not any("call." in m["$ref"] for op in receives for m in op["messages"])


def test_calls_are_checked_when_the_class_is_defined() -> None:
    with pytest.raises(ConfigurationError, match=r"Lone\.calls: `call` needs @on routes"):

        class Lone(WebSocketController):
            calls = {"confirm": (Question, bool)}

    with pytest.raises(ConfigurationError, match=r"Pairless\.calls\['confirm'\] must be a"):

        class Pairless(Shop):
            calls = {"confirm": Question}

    with pytest.raises(ConfigurationError, match=r"Listed\.calls must be a dict"):

        class Listed(Shop):
            calls = ["confirm"]  # type: ignore[assignment]


def sent_messages(document: dict[str, Any], channel: str) -> dict[str, dict[str, Any]]:
    """The messages of a channel's `send` operation, by their key in the channel."""
    refs = document["operations"][f"{channel}.send"]["messages"]
    return {
        ref["$ref"].rsplit("/", 1)[-1]: resolve(document, resolve(document, ref)["$ref"])
        for ref in refs
    }


def matches(document: dict[str, Any], message: dict[str, Any], frame: Any) -> bool:
    """Whether a frame is valid against a message's payload (its `$ref`s into the document)."""
    schema = {**message["payload"], "components": document["components"]}
    return jsonschema.Draft202012Validator(schema).is_valid(frame)


def test_declared_groups_add_their_messages_to_the_send_operation() -> None:
    document = board_document()
    sent = sent_messages(document, "Board")
    assert list(sent) == [
        "group.board", "presence_diff.board", "Notice", "group.files", "group.anything",
    ]  # fmt: skip
    envelope = sent["group.board"]["payload"]
    assert envelope["required"] == ["group", "offset", "epoch", "data"]
    assert envelope["properties"]["group"] == {"type": "string", "pattern": "^board:"}
    assert envelope["properties"]["data"] == {"$ref": "#/components/schemas/Posted"}
    diff = sent["presence_diff.board"]["payload"]
    assert diff["properties"]["event"] == {"type": "string", "const": "presence_diff"}
    assert diff["required"] == ["event", "group", "joins", "leaves"]
    # A group without history sends its messages as published: the type itself.
    assert sent["Notice"]["payload"] == {"$ref": "#/components/schemas/Notice"}
    # bytes go in the envelope's "bytes", in base64, instead of "data".
    files = sent["group.files"]["payload"]
    assert files["properties"]["group"] == {"type": "string", "const": "files"}
    assert files["oneOf"] == [{"required": ["data"]}, {"required": ["bytes"]}]
    assert sent["group.anything"]["payload"] == {}  # untyped, bare: anything
    description = document["operations"]["Board.send"]["description"]
    assert "- `board:*`: each message in the history envelope" in description
    assert "- `news`: each message as it was published (`Notice`)." in description


def test_the_history_of_a_group_is_asked_of_the_broker() -> None:
    class Plain(Board):
        broker = MemoryBroker()

    class Kept(Board):
        broker = MemoryBroker(history=GroupHistory())  # every group
        groups = {"news": Notice}

    plain = sent_messages(generate([("/b/{board}", Plain)], title="t", version="1"), "Plain")
    assert "group.board" not in plain and "Posted" in plain  # no history: bare
    kept = sent_messages(generate([("/k", Kept)], title="t", version="1"), "Kept")
    assert list(kept) == ["group.news"]
    assert kept["group.news"]["payload"]["properties"]["data"] == {
        "$ref": "#/components/schemas/Notice"
    }


@pytest.mark.anyio
async def test_the_frames_members_receive_match_the_document() -> None:
    document = board_document()
    sent = sent_messages(document, "Board")
    envelope, diff = sent["group.board"], sent["presence_diff.board"]
    app = Starlette(routes=[WebSocketRoute("/boards/{board}", Board)])
    async with connect(app, "/boards/chess?nick=ada") as ada:
        assert matches(document, diff, await ada.receive_json())  # her own arrival
        async with connect(app, "/boards/chess?nick=bob"):
            joined = await ada.receive_json()
            assert joined["joins"] == {"bob": [{"nick": "bob"}]}
            assert matches(document, diff, joined)
            await ada.send_json({"nick": "ada", "text": "e4"})
            posted = await ada.receive_json()
            assert posted["data"] == {"nick": "ada", "text": "e4"}
            assert matches(document, envelope, posted)
            assert not matches(document, diff, posted)
            assert not matches(document, envelope, posted["data"])  # bare: not the envelope
        left = await ada.receive_json()
        assert left["leaves"] == {"bob": [{"nick": "bob"}]} and matches(document, diff, left)


def test_groups_are_checked_when_the_class_is_defined() -> None:
    with pytest.raises(ConfigurationError, match=r"Listed\.groups must be a dict"):

        class Listed(WebSocketController):
            groups = ["room:*"]  # type: ignore[assignment]

    with pytest.raises(ConfigurationError, match=r"Inner\.groups\['a\*b'\]: '\*' may only end"):

        class Inner(WebSocketController):
            groups = {"a*b": Notice}

    with pytest.raises(ConfigurationError, match=r"Paired\.groups\['room:\*'\] must be the"):

        class Paired(WebSocketController):
            groups = {"room:*": (Notice, "history")}

    with pytest.raises(ConfigurationError, match=r"Sized\.groups\['room'\]: history must be"):

        class Sized(WebSocketController):
            groups = {"room": Group(Notice, history=GroupHistory())}  # type: ignore[arg-type]

    with pytest.raises(ConfigurationError, match=r"Watching\.groups\['room'\]: presence_events"):

        class Watching(WebSocketController):
            groups = {"room": Group(Notice, presence_events="yes")}  # type: ignore[arg-type]


def test_routed_fallback_takes_any_other_object() -> None:
    document = room_document("starlette")
    (ref,) = document["operations"]["Room.on_receive"]["messages"]
    message = resolve(document, resolve(document, ref)["$ref"])
    assert message["payload"] == {}
    assert "`op` has no handler" in message["summary"]


def test_plain_frames_follow_the_encoding() -> None:
    document = echo_document()

    def payloads(channel: str) -> list[tuple[str | None, dict[str, Any]]]:
        (operation,) = (
            op
            for name, op in document["operations"].items()
            if op["action"] == "receive" and name.startswith(channel + ".")
        )
        messages = [resolve(document, resolve(document, m)["$ref"]) for m in operation["messages"]]
        return [(m.get("contentType"), m["payload"]) for m in messages]

    assert payloads("Echo") == [("text/plain", {"type": "string"})]
    assert payloads("Blob") == [
        ("application/octet-stream", {"type": "string", "format": "binary"})
    ]
    assert payloads("AnyJson") == [("application/json", {})]
    ((content_type, frame),) = payloads("Raw")
    assert content_type is None
    assert frame["oneOf"] == [{"type": "string"}, {"type": "string", "format": "binary"}]
    assert [p for _, p in payloads("Typed")] == [
        {"$ref": "#/components/schemas/Move"},
        {"type": "array", "items": {"$ref": "#/components/schemas/Move"}},
    ]
    assert document["channels"]["Blob"]["address"] == "/blob"  # Mount(app=Controller)


def test_sends_without_handlers_and_discriminated_unions() -> None:
    document = mixed_document()
    push = document["operations"]
    assert "Pusher.send" in push
    assert not any(name.startswith("Pusher.on_") for name in push)
    assert document["channels"]["Pusher"]["description"] == "Pushes notices; reads nothing."
    (ref,) = document["operations"]["Pets.on_receive"]["messages"]
    pets = resolve(document, resolve(document, ref)["$ref"])["payload"]
    assert pets["discriminator"] == "pet"  # AsyncAPI's form: a property name
    assert len(pets["oneOf"]) == 2


def test_a_controller_mounted_twice_gets_two_channels() -> None:
    channels = mixed_document()["channels"]
    assert channels["Echo"]["address"] == "/echo"
    assert channels["Echo_2"]["address"] == "/echo-again"


def test_addresses_are_where_fastapi_serves_included_routers() -> None:
    inner = APIRouter()
    inner.add_websocket_route("/x/{a}", Echo)
    outer = APIRouter(prefix="/out", routes=[WebSocketRoute("/y", Echo)])
    outer.include_router(inner, prefix="/mid")
    app = FastAPI()
    app.include_router(outer, prefix="/api")
    document = generate(app, title="t", version="1")
    addresses = sorted(c["address"] for c in document["channels"].values())
    assert addresses == ["/api/out/mid/x/{a}", "/api/y"]
    with TestClient(app) as client:
        for address in addresses:
            with client.websocket_connect(address.replace("{a}", "1")) as websocket:
                websocket.send_text("hi")
                assert websocket.receive_text() == "hi"


def test_routes_that_are_not_controllers_are_skipped() -> None:
    app = FastAPI()

    @app.websocket("/plain")
    async def plain(websocket: Any) -> None: ...

    @app.get("/http")
    async def http() -> dict[str, str]:
        return {}

    app.router.routes.append(WebSocketRoute("/echo", Echo))
    document = generate(app, title="t", version="1")
    assert [c["address"] for c in document["channels"].values()] == ["/echo"]


def test_a_bad_source_is_refused() -> None:
    with pytest.raises(TypeError, match=r"needs an app with \.routes"):
        generate(object(), title="t", version="1")
    with pytest.raises(TypeError, match="controller class"):
        generate([("/x", int)], title="t", version="1")


def keys(refs: list[dict[str, str]]) -> list[str]:
    return [ref["$ref"].rsplit("/", 1)[-1] for ref in refs]


def test_an_unresolvable_annotation_names_the_hook() -> None:
    def make() -> type[WebSocketController]:
        class Later(WebSocketController):
            async def on_receive(self, data: str) -> Missing:  # type: ignore[name-defined]  # noqa: F821
                return None

        return Later

    with pytest.raises(TypeError, match=r"Later\.on_receive, return value: .*'Missing'"):
        generate([("/later", make())], title="t", version="1")


def resolve(document: dict[str, Any], ref: dict[str, str] | str) -> Any:
    pointer = ref if isinstance(ref, str) else ref["$ref"]
    node: Any = document
    for part in pointer.removeprefix("#/").split("/"):
        node = node[part]
    return node


# -- serving the document and its page ------------------------------------------------------


def test_routes_serve_json_and_page_in_starlette() -> None:
    app = Starlette(routes=[WebSocketRoute("/echo", Echo)])
    app.routes.extend(asyncapi_routes(app, title="Echo", version="1"))
    app.routes.append(WebSocketRoute("/late", Raw))  # added before the first request: included
    with TestClient(app) as client:
        response = client.get("/asyncapi.json")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        document = response.json()
        assert [c["address"] for c in document["channels"].values()] == ["/echo", "/late"]
        app.routes.append(WebSocketRoute("/later", Blob))  # after: the cached document stays
        assert client.get("/asyncapi.json").json() == document
        page = client.get("/asyncapi")
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "<title>Echo</title>" in page.text
        assert client.post("/asyncapi.json").status_code == 405


def test_routes_read_the_serving_app_by_default() -> None:
    app = FastAPI(routes=[WebSocketRoute("/echo", Echo)])
    app.router.routes.extend(asyncapi_routes(title="Echo", version="1", path="/docs/ws"))
    with TestClient(app) as client:
        document = client.get("/docs/ws.json").json()
        assert document["channels"]["Echo"]["address"] == "/echo"
        assert client.get("/docs/ws").status_code == 200


def test_routes_in_lilya() -> None:
    from lilya.routing import Path as LilyaPath
    from lilya.testclient import TestClient as LilyaClient

    app = lilya_app()
    routes = asyncapi_routes(app, title="Rooms", version="1")
    assert all(isinstance(route, LilyaPath) for route in routes)
    app.router.routes.extend(routes)
    client = LilyaClient(app)
    assert client.get("/asyncapi.json").json()["channels"]["Room"]["address"] == (
        "/api/rooms/{room}/{kind}"
    )
    assert "asyncapi-document" in client.get("/asyncapi").text


def test_the_page_embeds_the_document_and_loads_nothing() -> None:
    document = room_document("starlette")
    document["info"]["description"] = "</script><b>not markup</b>"
    page = render_page(document)
    assert "src=" not in page and "http://" not in page and "https://" not in page
    assert "</script><b>" not in page  # the embedded JSON cannot end the script element
    start = page.index('id="asyncapi-document">') + len('id="asyncapi-document">')
    embedded = page[start : page.index("</script>", start)]
    assert json.loads(embedded) == document


def rendered(document: dict[str, Any], tmp_path: Path) -> str:
    """What a browser shows for the page of `document` (its script run in node)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is needed to run the page's script")
    page = tmp_path / "asyncapi.html"
    page.write_text(render_page(document), encoding="utf-8")
    done = subprocess.run(
        [node, str(PARSER_DIR / "render_page.js"), str(page)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_page_renders_channels_operations_and_messages(tmp_path: Path) -> None:
    shown = rendered(room_document("starlette"), tmp_path)
    assert "<code> /api/rooms/{room}/{kind}" in shown
    assert "<h3>  Room.say" in shown and "<span> send" in shown
    assert "<code> shout" in shown and '"const": "shout"' in shown
    assert "<code> x-tenant" in shown
    assert "[object Object]" not in shown


def test_the_page_shows_backticked_names_as_code_not_backticks(tmp_path: Path) -> None:
    document = room_document("starlette")
    document["info"]["description"] = "Rooms; say `hi`, and a lone ` stays."
    shown = rendered(document, tmp_path)
    # One line per element ("<tag> its text"); a schema's JSON lines follow its <pre>.
    elements = [line for line in shown.splitlines() if re.match(r"\s*<\w+> ", line)]
    with_backticks = [line for line in elements if "`" in line]
    assert with_backticks == ["  <p> Rooms; say , and a lone ` stays."]
    assert "  <p> Rooms; say , and a lone ` stays.\n    <code> hi\n" in shown
    assert "<p>  Path parameter  (string).\n      <code> {room}\n      <code> room\n" in shown
    assert "<summary>  application/json —  is .\n" in shown  # `op` is `join`: two code spans


def test_the_query_and_header_tables_are_labelled(tmp_path: Path) -> None:
    shown = rendered(room_document("starlette"), tmp_path)
    header = "".join(f"        <th> {name}\n" for name in ("name", "type", "required", "default"))
    header = "      <tr> \n" + header
    assert (
        "    <table> \n      <caption> Query parameters\n" + header + "      <tr> \n"
        "        <td> \n          <code> token\n        <td> string\n        <td> yes\n"
        "        <td> \n      <tr> \n"
        "        <td> \n          <code> limit\n        <td> integer\n        <td> no\n"
        "        <td> \n          <code> 10\n"
    ) in shown
    assert "    <table> \n      <caption> Headers\n" + header in shown
    assert "<h4>" not in shown  # the caption labels each table, no loose heading
