"""Guards: origins, permissions and subprotocols refuse or shape the handshake."""

from __future__ import annotations

import pytest
from starlette.exceptions import HTTPException

from tether import ConfigurationError, Header, Provide, Query, WebSocket, WebSocketController
from tether.testing import HandshakeRejected, connect

pytestmark = pytest.mark.anyio


class Echo(WebSocketController):
    encoding = "text"

    async def on_receive(self, data: str) -> str:
        return data


class Browsers(Echo):
    allowed_origins = ["https://app.example.org", "https://*.example.com"]


@pytest.mark.parametrize(
    "origin",
    ["https://app.example.org", "https://chat.example.com", "https://a.b.example.com", None],
)
async def test_allowed_origins_pass(origin: str | None) -> None:
    headers = {"origin": origin} if origin else {}
    async with connect(Browsers, "/", headers=headers) as ws:
        await ws.send_text("hi")
        assert await ws.receive_text() == "hi"


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example.net",
        "http://app.example.org",  # another scheme is another origin
        "https://example.com",  # the pattern covers subdomains only
        "https://app.example.org.evil.net",
        "null",
    ],
)
async def test_other_origins_are_refused_with_403(origin: str) -> None:
    with pytest.raises(HandshakeRejected) as refused:
        async with connect(Browsers, "/", headers={"origin": origin}):
            pass
    assert refused.value.status == 403


async def test_subclasses_inherit_the_origin_check() -> None:
    class Child(Browsers):
        pass

    with pytest.raises(HandshakeRejected):
        async with connect(Child, "/", headers={"origin": "https://evil.example.net"}):
            pass


async def test_require_origin_refuses_non_browser_clients() -> None:
    class Strict(Echo):
        allowed_origins = ["*"]
        require_origin = True

    with pytest.raises(HandshakeRejected):
        async with connect(Strict, "/"):
            pass
    async with connect(Strict, "/", headers={"origin": "https://anything.test"}) as ws:
        await ws.send_text("ok")
        assert await ws.receive_text() == "ok"


def test_a_malformed_origin_fails_when_the_class_is_defined() -> None:
    with pytest.raises(ConfigurationError, match=r"Bad\.allowed_origins"):

        class Bad(Echo):
            allowed_origins = ["example.org"]


def is_staff(role: str = Header("guest", alias="x-role")) -> bool:
    return role == "staff"


async def has_token(token: str | None = Query(None)) -> bool:
    return token == "secret"


def teapot(websocket: WebSocket) -> bool:
    raise HTTPException(418, "short and stout")


class StaffOnly(Echo):
    permissions = [is_staff, has_token]


async def test_permissions_run_with_injection_before_on_connect() -> None:
    async with connect(StaffOnly, "/?token=secret", headers={"x-role": "staff"}) as ws:
        await ws.send_text("in")
        assert await ws.receive_text() == "in"


@pytest.mark.parametrize(
    ("path", "role"), [("/?token=secret", "guest"), ("/?token=nope", "staff"), ("/", "staff")]
)
async def test_a_falsy_permission_refuses_with_403(path: str, role: str) -> None:
    with pytest.raises(HandshakeRejected) as refused:
        async with connect(StaffOnly, path, headers={"x-role": role}):
            pass
    assert refused.value.status == 403


async def test_an_http_exception_carries_its_status_and_body() -> None:
    class Kettle(Echo):
        permissions = [teapot]

    with pytest.raises(HandshakeRejected) as refused:
        async with connect(Kettle, "/"):
            pass
    assert refused.value.status == 418
    assert refused.value.text == "short and stout"


async def test_permissions_share_connection_dependencies_with_hooks() -> None:
    made: list[str] = []

    def session_user() -> str:
        made.append("user")
        return "ada"

    def named(user_name: str = Provide(session_user)) -> bool:
        return user_name == "ada"

    class Shared(WebSocketController):
        permissions = [named]

        async def on_connect(self, websocket: WebSocket, user_name: str = Provide(session_user)):
            await websocket.accept()
            await websocket.send_text(user_name)

    async with connect(Shared, "/") as ws:
        assert await ws.receive_text() == "ada"
    assert made == ["user"]


class Chatty(Echo):
    subprotocols = ["chat.v2", "chat.v1"]

    async def on_connect(self, websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(f"using {websocket.subprotocol}")


async def test_the_servers_preferred_subprotocol_wins() -> None:
    async with connect(Chatty, "/", subprotocols=["chat.v1", "chat.v2"]) as ws:
        assert ws.subprotocol == "chat.v2"
        assert await ws.receive_text() == "using chat.v2"


async def test_a_client_offering_no_subprotocol_is_accepted_without_one() -> None:
    async with connect(Chatty, "/") as ws:
        assert ws.subprotocol is None
        assert await ws.receive_text() == "using None"


async def test_an_offer_with_no_overlap_is_refused() -> None:
    with pytest.raises(HandshakeRejected) as refused:
        async with connect(Chatty, "/", subprotocols=["mqtt"]):
            pass
    assert refused.value.status == 403


async def test_auto_accept_uses_the_negotiated_subprotocol() -> None:
    class Quiet(Echo):
        subprotocols = ["a"]

    async with connect(Quiet, "/", subprotocols=["b", "a"]) as ws:
        assert ws.subprotocol == "a"
