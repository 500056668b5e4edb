"""Signatures tether cannot serve are refused when the class is defined, with a clear message."""

import dataclasses
import re
from typing import Annotated, Any

import pytest
from fastapi import Depends

from tether import ConfigurationError, Provide, Query, WebSocket, WebSocketController, on


def raises_configuration_error(*parts: str) -> pytest.RaisesExc:
    """Expect a ConfigurationError whose message contains every part, in order."""
    return pytest.raises(ConfigurationError, match=".*".join(re.escape(p) for p in parts))


def get_db() -> str:
    return "db"


def test_a_foreign_marker_names_controller_hook_and_parameter() -> None:
    with raises_configuration_error("Chat.on_connect", "'db'", "another framework's marker"):

        class Chat(WebSocketController):
            async def on_connect(self, db: str = Depends(get_db)) -> None: ...


def test_a_foreign_marker_inside_annotated() -> None:
    with raises_configuration_error("Chat.on_receive", "'db'", "Provide"):

        class Chat(WebSocketController):
            async def on_receive(self, data: str, db: Annotated[str, Depends(get_db)]) -> None: ...


def cycle_a(b: str = Provide(lambda: "unused")) -> str:
    return b


def ping(p: str = Provide(lambda: "x")) -> str:
    return p


def pong(p: str = Provide(ping)) -> str:
    return p


# Close the loop after both exist: ping -> pong -> ping.
ping.__defaults__ = (Provide(pong),)


def test_a_dependency_cycle() -> None:
    with raises_configuration_error("Loop.on_connect", "'value'", "dependency cycle", "ping"):

        class Loop(WebSocketController):
            async def on_connect(self, value: str = Provide(ping)) -> None: ...


def per_message(data: str) -> str:
    return data


def uses_message_value(value: str = Provide(per_message, scope="message")) -> str:
    return value


def uses_data(data: str) -> str:
    return data


def uses_query(room: str = Query()) -> str:
    return room


def uses_websocket(websocket: WebSocket) -> str:
    return websocket.url.path


@pytest.mark.parametrize(
    ("dependency", "scope", "culprit"),
    [
        (uses_message_value, "connection", "'value'"),
        (uses_data, "connection", "'data'"),
        (uses_query, "app", "'room'"),
        (uses_websocket, "app", "'websocket'"),
    ],
)
def test_a_dependency_may_not_use_a_narrower_scope(dependency, scope, culprit) -> None:
    with raises_configuration_error("Scoped.on_receive", "'dep'", f"{scope}-scoped", culprit):

        class Scoped(WebSocketController):
            async def on_receive(self, data: str, dep: str = Provide(dependency, scope=scope)):
                return dep


def test_data_on_on_connect() -> None:
    with raises_configuration_error("Early.on_connect", "'data'", "not available"):

        class Early(WebSocketController):
            async def on_connect(self, data: str) -> None: ...


def test_a_dependency_asking_for_data_in_on_connect() -> None:
    with raises_configuration_error("Early.on_connect", "'value'", "'data'"):

        class Early(WebSocketController):
            async def on_connect(self, value: str = Provide(uses_data, scope="message")): ...


def test_close_code_on_on_receive() -> None:
    with raises_configuration_error("Late.on_receive", "'close_code'", "on_disconnect"):

        class Late(WebSocketController):
            async def on_receive(self, data: str, close_code: int) -> None: ...


def test_close_code_in_an_on_handler() -> None:
    with raises_configuration_error("Late.handle", "'close_reason'"):

        class Late(WebSocketController):
            @on("bye")
            async def handle(self, close_reason: str) -> None: ...


@pytest.mark.parametrize("signature", ["*args", "**kwargs"])
def test_star_args(signature: str) -> None:
    namespace: dict = {}
    exec(f"async def on_receive(self, data, {signature}): ...", namespace)
    with raises_configuration_error("Greedy.on_receive", "*args and **kwargs cannot be injected"):
        type("Greedy", (WebSocketController,), {"on_receive": namespace["on_receive"]})


def test_a_parameter_from_nowhere_is_not_an_error_until_a_connection_lacks_it() -> None:
    # A name that is neither reserved nor marked may come from the route's path.
    class Room(WebSocketController):
        async def on_connect(self, room: str) -> None: ...


def test_a_reserved_name_with_a_marker() -> None:
    with raises_configuration_error("Odd.on_connect", "'user'", "reserved name"):

        class Odd(WebSocketController):
            async def on_connect(self, user: str = Query()) -> None: ...


def test_two_markers_on_one_parameter() -> None:
    with raises_configuration_error("Odd.on_connect", "'page'", "one marker per parameter"):

        class Odd(WebSocketController):
            async def on_connect(self, page: Annotated[int, Query()] = Query(1)) -> None: ...


def test_an_unconvertible_annotation() -> None:
    with raises_configuration_error("Odd.on_connect", "'page'", "cannot convert"):

        class Odd(WebSocketController):
            async def on_connect(self, page: dict[str, int] = Query()) -> None: ...


def test_one_event_routed_to_two_methods() -> None:
    with raises_configuration_error("Twice", "'ping'", "Twice.a", "Twice.b"):

        class Twice(WebSocketController):
            @on("ping")
            async def a(self) -> None: ...

            @on("ping")
            async def b(self) -> None: ...


def test_an_unknown_encoding() -> None:
    with raises_configuration_error("Weird.encoding"):

        class Weird(WebSocketController):
            encoding = "xml"  # type: ignore[assignment]


def test_provide_checks_its_arguments() -> None:
    with pytest.raises(TypeError, match="callable"):
        Provide("get_db")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scope"):
        Provide(get_db, scope="request")  # type: ignore[arg-type]


def outer(value: str = Provide(uses_message_value)) -> str:
    return value


def wants_fastapi(db: str = Depends(get_db)) -> str:
    return db


def test_errors_deep_in_the_graph_name_the_path_from_the_hook() -> None:
    with raises_configuration_error(
        "Deep.on_receive", "'dep'", "outer, parameter 'value'", "connection-scoped"
    ):

        class Deep(WebSocketController):
            async def on_receive(self, data: str, dep: str = Provide(outer)) -> None: ...

    with raises_configuration_error("Deep.on_connect", "'dep'", "wants_fastapi", "'db'"):

        class Deep(WebSocketController):
            async def on_connect(self, dep: str = Provide(wants_fastapi)) -> None: ...


# -- a reserved value asked for under another name ------------------------------------


@dataclasses.dataclass
class ChatMessage:
    text: str


@pytest.mark.parametrize(
    ("annotation", "shown"),
    [
        (ChatMessage, "ChatMessage"),
        (dict, "dict"),
        (list[int], "list[int]"),
        (ChatMessage | None, "ChatMessage | None"),
    ],
)
def test_a_message_under_another_name_is_refused_when_no_path_could_hold_it(
    annotation: Any, shown: str
) -> None:
    async def on_receive(self: Any, message: annotation) -> None: ...  # type: ignore[valid-type]

    with pytest.raises(ConfigurationError) as refused:
        type("Chat", (WebSocketController,), {"on_receive": on_receive})
    assert str(refused.value) == (
        f"Chat.on_receive, parameter 'message': {shown} cannot come from the path; "
        "did you mean 'data'? Rename 'message' to 'data' to receive the message."
    )


def test_a_routed_handler_is_checked_the_same_way() -> None:
    with raises_configuration_error("Chat.say, parameter 'payload'", "did you mean 'data'?"):

        class Chat(WebSocketController):
            @on("say")
            async def say(self, payload: ChatMessage) -> None: ...


def test_a_name_that_could_be_a_path_parameter_is_left_for_the_route() -> None:
    class Chat(WebSocketController):
        async def on_receive(self, data: str, message: str) -> None: ...

        async def on_disconnect(self, code: int) -> None: ...

    assert Chat  # `/ws/{message}/{code:int}` would serve it
