"""`describe_controller`: what a controller's hooks take and return, read-only."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import AsyncIterator
from typing import Annotated

import pytest

from tether import Cookie, Header, Provide, Query, WebSocket, WebSocketController, on
from tether.controllers import (
    ControllerInfo,
    DependencyInfo,
    HookInfo,
    ParameterInfo,
    describe_controller,
)

EMPTY = inspect.Parameter.empty


@dataclasses.dataclass
class Say:
    text: str


@dataclasses.dataclass
class Ack:
    ok: bool


@dataclasses.dataclass
class Notice:
    text: str


def settings(region: str = "eu") -> dict:
    return {"region": region}


async def database(
    config: dict = Provide(settings, scope="app"), schema: str = Query("public")
) -> AsyncIterator[str]:
    yield "db"


def is_member(token: str = Query()) -> bool:
    return token == "ok"


class Room(WebSocketController):
    """A chat room."""

    encoding = "json"
    event_key = "kind"
    sends = [Notice]
    calls = {"confirm": (Say, bool)}
    max_concurrency = 2
    permissions = [is_member]

    async def on_connect(
        self,
        socket: WebSocket,
        room: str,
        db: str = Provide(database),
        agent: Annotated[str, Header(alias="X-Agent")] = "unknown",
        sid: str | None = Cookie(None),
    ) -> None: ...

    async def on_receive(self, data: Say, page: int = Query(1)) -> Ack:
        return Ack(True)

    @on("join")
    @on("leave")
    async def membership(self, data: dict) -> None: ...

    async def on_disconnect(
        self, close_code: int, audit: str = Provide(database, scope="message", use_cache=False)
    ) -> None: ...


def by_name(parameters: tuple[ParameterInfo, ...]) -> dict[str, ParameterInfo]:
    return {p.name: p for p in parameters}


def test_the_class_and_its_settings() -> None:
    info = describe_controller(Room)
    assert isinstance(info, ControllerInfo)
    assert info.controller is Room
    assert (info.encoding, info.event_key, info.sends) == ("json", "kind", (Notice,))
    assert dict(info.calls) == {"confirm": (Say, bool)}


def test_each_parameter_says_where_its_value_comes_from() -> None:
    connect = describe_controller(Room).on_connect
    assert isinstance(connect, HookInfo)
    assert connect.name == "Room.on_connect"
    assert connect.function is Room.on_connect
    assert connect.returns is type(None)  # `-> None`, as typing.get_type_hints resolves it
    params = by_name(connect.parameters)
    assert list(params) == ["socket", "room", "db", "agent", "sid"]  # `self` left out
    assert (params["socket"].source, params["socket"].key) == ("reserved", "websocket")
    assert params["room"] == ParameterInfo("room", "path", "room", str, EMPTY)
    assert params["room"].required
    assert (params["agent"].source, params["agent"].key) == ("header", "x-agent")
    assert typing.get_origin(params["agent"].annotation) is Annotated  # as written
    assert typing.get_args(params["agent"].annotation)[0] is str
    assert params["agent"].default == "unknown"
    assert not params["agent"].required
    assert (params["sid"].source, params["sid"].key, params["sid"].default) == (
        "cookie",
        "sid",
        None,
    )


def test_dependencies_are_described_with_their_own_parameters() -> None:
    db = by_name(describe_controller(Room).on_connect.parameters)["db"]
    assert (db.source, db.key) == ("dependency", None)
    assert db.dependency == DependencyInfo(
        call=database,
        scope="connection",
        use_cache=True,
        parameters=(
            ParameterInfo(
                "config",
                "dependency",
                None,
                dict,
                EMPTY,
                DependencyInfo(
                    settings, "app", True, (ParameterInfo("region", "path", "region", str, "eu"),)
                ),
            ),
            ParameterInfo("schema", "query", "schema", str, "public"),
        ),
    )
    audit = by_name(describe_controller(Room).on_disconnect.parameters)["audit"]
    assert (audit.dependency.scope, audit.dependency.use_cache) == ("message", False)


def test_data_and_the_return_annotation() -> None:
    receive = describe_controller(Room).on_receive
    assert receive.data == ParameterInfo("data", "reserved", "data", Say, EMPTY)
    assert receive.returns is Ack
    assert by_name(receive.parameters)["page"].default == 1
    assert describe_controller(Room).on_disconnect.data is None


def test_a_handler_of_several_events_is_one_hook() -> None:
    info = describe_controller(Room)
    assert list(info.events) == ["join", "leave"]
    assert info.events["join"] is info.events["leave"]
    assert info.events["join"].name == "Room.membership"
    assert [hook.name for hook in info.hooks] == [
        "Room.on_connect",
        "Room.on_receive",
        "Room.on_disconnect",
        "Room.membership",
    ]


def test_permissions_are_described_like_hooks() -> None:
    (permission,) = describe_controller(Room).permissions
    assert permission.name == "Room.permissions[is_member]"
    assert permission.function is is_member
    assert permission.parameters == (ParameterInfo("token", "query", "token", str, EMPTY),)
    assert permission.returns is bool


def test_inherited_hooks_are_the_subclass_hooks() -> None:
    class Lobby(Room):
        pass

    info = describe_controller(Lobby)
    assert info.controller is Lobby
    assert info.on_receive.function is Room.on_receive


def test_a_class_without_hooks_has_none() -> None:
    class Silent(WebSocketController):
        pass

    info = describe_controller(Silent)
    assert (info.on_connect, info.on_receive, info.on_disconnect) == (None, None, None)
    assert (info.hooks, info.permissions, dict(info.events), info.sends) == ((), (), {}, ())
    assert dict(info.calls) == {}


def test_the_description_is_read_only() -> None:
    info = describe_controller(Room)
    with pytest.raises(AttributeError):
        info.encoding = "text"  # type: ignore[misc]
    with pytest.raises(TypeError):
        info.events["other"] = info.events["join"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        info.on_receive.parameters[0].default = None  # type: ignore[misc]


def test_an_unresolvable_annotation_stays_a_string() -> None:
    class Later(WebSocketController):
        async def on_receive(self, data: str) -> Missing:  # type: ignore[name-defined]  # noqa: F821
            return None

    receive = describe_controller(Later).on_receive
    assert receive.returns == "Missing"
    assert receive.data.annotation is str  # resolved although the return annotation is not


@pytest.mark.parametrize("not_a_controller", [WebSocketController, int, "Room", object()])
def test_only_controller_classes_are_described(not_a_controller: object) -> None:
    with pytest.raises(TypeError, match="needs a WebSocketController subclass"):
        describe_controller(not_a_controller)  # type: ignore[arg-type]
