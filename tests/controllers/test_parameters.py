"""Where a hook's parameters come from: reserved names, markers, path params, defaults."""

import base64
import enum
import json
import logging
import uuid
from contextlib import asynccontextmanager
from typing import Annotated, Literal, Optional

import itsdangerous
import pytest
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import WebSocketRoute

from tether import Cookie, Header, Provide, Query, WebSocket, WebSocketController
from tether.testing import AppClient, HandshakeRejected, connect

pytestmark = pytest.mark.anyio


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


# -- reserved names ------------------------------------------------------------------


async def test_reserved_names_websocket_scope_and_state() -> None:
    class Reserved(WebSocketController):
        async def on_connect(self, websocket, scope, state) -> None:
            await websocket.accept()
            await websocket.send_json(
                {"path": scope["path"], "same": websocket is self.websocket, "db": state.db}
            )

    async with connect(Reserved, "/here", state={"db": "sqlite"}) as ws:
        assert await ws.receive_json() == {"path": "/here", "same": True, "db": "sqlite"}


async def test_any_parameter_annotated_websocket_gets_the_websocket() -> None:
    class Named(WebSocketController):
        async def on_connect(self, conn: WebSocket) -> None:
            await conn.accept()
            await conn.send_text(type(conn).__name__)

    async with connect(Named, "/") as ws:
        assert await ws.receive_text() == "WebSocket"


async def test_data_close_code_and_close_reason() -> None:
    seen = []

    class Hooks(WebSocketController):
        async def on_receive(self, data: str) -> None:
            seen.append(data)

        async def on_disconnect(self, close_code: int, close_reason: str) -> None:
            seen.append((close_code, close_reason))

    async with connect(Hooks, "/") as ws:
        await ws.send_text("hello")
        await ws.close(4002, "gone fishing")
    assert seen == ["hello", (4002, "gone fishing")]


class TokenBackend(AuthenticationBackend):
    async def authenticate(self, conn):
        token = conn.query_params.get("token")
        if token is None:
            return None
        return AuthCredentials(["chat"]), SimpleUser(token)


def sign_session(secret: str, session: dict) -> str:
    """The cookie Starlette's SessionMiddleware would have set for `session`."""
    payload = base64.b64encode(json.dumps(session).encode())
    return itsdangerous.TimestampSigner(secret).sign(payload).decode()


async def test_user_auth_and_session_from_starlette_middleware() -> None:
    class Profile(WebSocketController):
        async def on_connect(self, websocket: WebSocket, user, auth, session) -> None:
            await websocket.accept()
            await websocket.send_json(
                {"user": user.display_name, "scopes": auth.scopes, "session": dict(session)}
            )

    app = Starlette(
        routes=[WebSocketRoute("/ws", Profile)],
        middleware=[
            Middleware(SessionMiddleware, secret_key="s3cret"),
            Middleware(AuthenticationMiddleware, backend=TokenBackend()),
        ],
    )
    cookie = sign_session("s3cret", {"theme": "dark"})
    async with connect(app, "/ws?token=ada", cookies={"session": cookie}) as ws:
        assert await ws.receive_json() == {
            "user": "ada",
            "scopes": ["chat"],
            "session": {"theme": "dark"},
        }


async def test_state_is_the_lifespan_state_plus_what_hooks_set() -> None:
    @asynccontextmanager
    async def lifespan(app):
        yield {"greeting": "hi"}

    class Stateful(WebSocketController):
        async def on_connect(self, state) -> None:
            state.name = "ada"

        async def on_receive(self, data: str, state) -> str:
            return f"{state.greeting}, {state.name}: {data}"

    app = Starlette(routes=[WebSocketRoute("/ws", Stateful)], lifespan=lifespan)
    async with AppClient(app) as client, client.connect("/ws") as ws:
        await ws.send_text("ok")
        assert await ws.receive_text() == "hi, ada: ok"


# -- markers ------------------------------------------------------------------------


async def test_query_header_and_cookie_as_defaults() -> None:
    class Markers(WebSocketController):
        async def on_connect(
            self,
            websocket: WebSocket,
            page: int = Query(),
            size: int = Query(10),
            x_agent: str = Header(),
            sid: str = Cookie(),
        ) -> None:
            await websocket.accept()
            await websocket.send_json([page, size, x_agent, sid])

    async with connect(
        Markers, "/?page=3", headers={"X-Agent": "probe/1"}, cookies={"sid": "abc"}
    ) as ws:
        assert await ws.receive_json() == [3, 10, "probe/1", "abc"]


async def test_markers_inside_annotated() -> None:
    def get_greeting() -> str:
        return "hello"

    class Annotated_(WebSocketController):
        async def on_connect(
            self,
            websocket: WebSocket,
            page: Annotated[int, Query()],
            agent: Annotated[str, Header(alias="user-agent")],
            sid: Annotated[str, Cookie()] = "none",
            greeting: Annotated[str, Provide(get_greeting)] = "unused",
        ) -> None:
            await websocket.accept()
            await websocket.send_json([page, agent, sid, greeting])

    async with connect(Annotated_, "/?page=7", headers={"User-Agent": "tests"}) as ws:
        assert await ws.receive_json() == [7, "tests", "none", "hello"]


async def test_aliases() -> None:
    class Aliased(WebSocketController):
        async def on_connect(
            self,
            websocket: WebSocket,
            from_: str = Query(alias="from"),
            token: str = Header(alias="X-Auth-Token"),
            session_id: str = Cookie(alias="session-id"),
        ) -> None:
            await websocket.accept()
            await websocket.send_json([from_, token, session_id])

    async with connect(
        Aliased, "/?from=home", headers={"x-auth-token": "t0k"}, cookies={"session-id": "s1"}
    ) as ws:
        assert await ws.receive_json() == ["home", "t0k", "s1"]


async def test_header_underscores_match_hyphens_case_insensitively() -> None:
    class Agent(WebSocketController):
        async def on_connect(self, websocket: WebSocket, x_client_name: str = Header()) -> None:
            await websocket.accept()
            await websocket.send_text(x_client_name)

    async with connect(Agent, "/", headers=[(b"X-CLIENT-NAME", b"Shouty")]) as ws:
        assert await ws.receive_text() == "Shouty"


async def test_a_repeated_header_gives_a_list_or_its_first_value() -> None:
    class Tagged(WebSocketController):
        async def on_connect(
            self,
            websocket: WebSocket,
            tags: list[str] = Header(alias="x-tag"),
            first: str = Header(alias="x-tag"),
            missing: list[int] | None = Header(None, alias="x-none"),
        ) -> None:
            await websocket.accept()
            await websocket.send_json([tags, first, missing])

    headers = [(b"x-tag", b"red"), (b"x-other", b"-"), (b"x-tag", b"blue")]
    async with connect(Tagged, "/", headers=headers) as ws:
        assert await ws.receive_json() == [["red", "blue"], "red", None]


async def test_path_params_converted_and_defaults() -> None:
    class Room(WebSocketController):
        async def on_connect(
            self, websocket: WebSocket, room: str, number: int, missing: str = "fallback"
        ) -> None:
            await websocket.accept()
            await websocket.send_json([room, number, missing])

    app = Starlette(routes=[WebSocketRoute("/rooms/{room}/{number}", Room)])
    async with connect(app, "/rooms/lobby/42") as ws:
        assert await ws.receive_json() == ["lobby", 42, "fallback"]


async def test_path_convertors_hand_over_typed_values() -> None:
    class Typed(WebSocketController):
        async def on_connect(self, websocket: WebSocket, id: uuid.UUID, n: int) -> None:
            await websocket.accept()
            await websocket.send_json([type(id).__name__, str(id), n])

    app = Starlette(routes=[WebSocketRoute("/{id:uuid}/{n:int}", Typed)])
    key = uuid.uuid4()
    async with connect(app, f"/{key}/5") as ws:
        assert await ws.receive_json() == ["UUID", str(key), 5]


# -- conversion ---------------------------------------------------------------------


class Conversions(WebSocketController):
    async def on_connect(
        self,
        websocket: WebSocket,
        n: int = Query(0),
        ratio: float = Query(0.0),
        flag: bool = Query(False),
        key: Optional[uuid.UUID] = Query(None),  # noqa: UP045 - the spelling under test
        color: Color = Query(Color.RED),
        mode: Literal["fast", "slow"] = Query("slow"),
        ids: list[int] = Query([]),
        tag: str | None = Query(None),
    ) -> None:
        await websocket.accept()
        await websocket.send_json(
            {
                "n": n,
                "ratio": ratio,
                "flag": flag,
                "key": None if key is None else str(key),
                "color": color.name,
                "mode": mode,
                "ids": ids,
                "tag": tag,
            }
        )


async def test_query_values_are_converted_to_the_annotation() -> None:
    key = uuid.uuid4()
    query = f"n=5&ratio=0.25&flag=yes&key={key}&color=blue&mode=fast&ids=1&ids=2&ids=3"
    async with connect(Conversions, f"/?{query}") as ws:
        assert await ws.receive_json() == {
            "n": 5,
            "ratio": 0.25,
            "flag": True,
            "key": str(key),
            "color": "BLUE",
            "mode": "fast",
            "ids": [1, 2, 3],
            "tag": None,
        }


async def test_defaults_apply_when_values_are_absent() -> None:
    async with connect(Conversions, "/") as ws:
        assert await ws.receive_json() == {
            "n": 0,
            "ratio": 0.0,
            "flag": False,
            "key": None,
            "color": "RED",
            "mode": "slow",
            "ids": [],
            "tag": None,
        }


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("n=five", "query parameter 'n'"),
        ("ratio=x", "query parameter 'ratio'"),
        ("flag=maybe", "query parameter 'flag'"),
        ("key=not-a-uuid", "query parameter 'key'"),
        ("color=green", "query parameter 'color'"),
        ("mode=medium", "query parameter 'mode'"),
        ("ids=1&ids=two", "query parameter 'ids'"),
    ],
)
async def test_an_unconvertible_value_refuses_the_handshake(
    query: str, names: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tether")
    with pytest.raises(HandshakeRejected) as refused:
        async with connect(Conversions, f"/?{query}"):
            pass
    assert refused.value.status == 403
    assert names in refused.value.reason
    assert any(r.name == "tether" and names in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("/", "query parameter 'token'"),
        ("/?token=t", "header 'x-agent'"),
    ],
)
async def test_a_missing_required_value_refuses_the_handshake(
    path: str, names: str, caplog: pytest.LogCaptureFixture
) -> None:
    connected = []

    class Strict(WebSocketController):
        async def on_connect(self, token: str = Query(), x_agent: str = Header()) -> None:
            connected.append(token)

    caplog.set_level(logging.WARNING, logger="tether")
    with pytest.raises(HandshakeRejected) as refused:
        async with connect(Strict, path):
            pass
    assert refused.value.status == 403
    assert f"{names} is required" in refused.value.reason
    assert connected == []  # refused before on_connect
    assert any(f"{names} is required" in r.getMessage() for r in caplog.records)


async def test_a_required_value_of_another_hook_is_checked_at_connect() -> None:
    received = []

    class Late(WebSocketController):
        async def on_receive(self, data: str, room: int = Query()) -> None:
            received.append((room, data))

    with pytest.raises(HandshakeRejected) as refused:
        async with connect(Late, "/?room=abc"):
            pass
    assert "query parameter 'room'" in refused.value.reason

    async with connect(Late, "/?room=9") as ws:
        await ws.send_text("x")
    assert received == [(9, "x")]


async def test_a_missing_path_param_refuses_and_names_it(caplog: pytest.LogCaptureFixture) -> None:
    class NeedsRoom(WebSocketController):
        async def on_connect(self, room: str) -> None:
            pass

    caplog.set_level(logging.WARNING, logger="tether")
    with pytest.raises(HandshakeRejected) as refused:
        async with connect(NeedsRoom, "/"):
            pass
    assert refused.value.status == 403
    assert "path parameter 'room'" in refused.value.reason
    assert any("path parameter 'room'" in r.getMessage() for r in caplog.records)


async def test_a_value_only_a_message_scoped_dependency_reads_is_checked_at_connect() -> None:
    def token_of(token: str = Query()) -> str:
        return token

    class PerMessage(WebSocketController):
        async def on_receive(self, data: str, token: str = Provide(token_of, scope="message")):
            return f"{data}:{token}"

    with pytest.raises(HandshakeRejected) as refused:
        async with connect(PerMessage, "/"):
            pass
    assert refused.value.status == 403
    assert "query parameter 'token'" in refused.value.reason

    async with connect(PerMessage, "/?token=t") as ws:
        await ws.send_text("hi")
        assert await ws.receive_text() == "hi:t"


class Message(WebSocketController):
    async def on_receive(self, message):  # type: ignore[no-untyped-def]
        ...


class Msg(WebSocketController):
    async def on_receive(self, msg: str) -> None: ...


class Code(WebSocketController):
    async def on_disconnect(self, code: int) -> None: ...


class Reason(WebSocketController):
    async def on_disconnect(self, reason: str) -> None: ...


class Ws(WebSocketController):
    async def on_connect(self, ws: object) -> None: ...


@pytest.mark.parametrize(
    ("controller", "reason"),
    [
        (Message, "path parameter 'message' is required; did you mean 'data'?"),
        (Msg, "path parameter 'msg' is required; did you mean 'data'?"),
        (Code, "path parameter 'code' is required; did you mean 'close_code'?"),
        (Reason, "path parameter 'reason' is required; did you mean 'close_reason'?"),
        (Ws, "path parameter 'ws' is required; did you mean 'websocket'?"),
    ],
)
async def test_a_refusal_names_the_reserved_name_a_parameter_likely_meant(
    controller: type[WebSocketController], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tether")
    with pytest.raises(HandshakeRejected) as refused:
        async with connect(controller, "/"):
            pass
    assert refused.value.status == 403
    assert refused.value.reason == reason
    logged = f"{controller.__name__} refused a connection: {reason}"
    assert any(r.getMessage() == logged for r in caplog.records)


async def test_a_route_that_has_the_value_serves_the_same_name() -> None:
    class Rooms(WebSocketController):
        async def on_receive(self, data: str, message: str) -> str:
            return f"{message}: {data}"

    app = Starlette(routes=[WebSocketRoute("/ws/{message}", Rooms)])
    async with AppClient(app) as client, client.connect("/ws/motd") as ws:
        await ws.send_text("hi")
        assert await ws.receive_text() == "motd: hi"
