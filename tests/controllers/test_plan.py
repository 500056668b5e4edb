"""What a controller class is checked for when it is defined: its hook names."""

from typing import Any

import pytest

from tether import ConfigurationError, WebSocketController, on
from tether.testing import connect

pytestmark = pytest.mark.anyio

HOOKS = "The hooks are on_connect, on_receive, on_disconnect, on_decode_error, on_error."


def not_a_hook(name: str, meant: str | None) -> str:
    hint = f"did you mean {meant}? " if meant else ""
    return (
        f"Chat.{name} is not a hook, so tether would never call it: {hint}{HOOKS} "
        'To route an event to it, decorate it with @on("event"); for a helper, pick a '
        f"name without the on_ prefix (e.g. _{name})."
    )


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("on_recieve", "on_receive"),
        ("on_conect", "on_connect"),
        ("on_disconect", "on_disconnect"),
        ("on_decode_eror", "on_decode_error"),
        ("on_errors", "on_error"),
        # What other frameworks call the same hooks.
        ("on_accept", "on_connect"),
        ("on_message", "on_receive"),
        ("on_close", "on_disconnect"),
        # Like no hook at all.
        ("on_something", None),
    ],
)
def test_an_unknown_on_method_is_refused_naming_the_hook_it_likely_meant(
    name: str, meant: str | None
) -> None:
    async def method(self: Any, data: Any) -> None: ...

    with pytest.raises(ConfigurationError) as refused:
        type("Chat", (WebSocketController,), {name: method})
    assert str(refused.value) == not_a_hook(name, meant)


def test_a_misspelled_hook_in_a_class_body_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"Chat\.on_recieve .* did you mean on_receive\?"):

        class Chat(WebSocketController):
            async def on_recieve(self, data: str) -> str:
                return data


def test_a_misspelled_hook_in_a_mixin_is_refused_too() -> None:
    class Greeting:
        async def on_conect(self) -> None: ...

    with pytest.raises(ConfigurationError, match=r"Chat\.on_conect .* did you mean on_connect\?"):

        class Chat(Greeting, WebSocketController):
            pass


async def test_on_methods_routed_with_on_and_helpers_without_the_prefix_are_allowed() -> None:
    class Chat(WebSocketController):
        on_error_reason = "oops"  # not a method: not a hook either

        @on("ping")
        async def on_ping(self, data: dict) -> dict:
            return {"type": "pong", "seen": self._on_seen(data)}

        def _on_seen(self, data: dict) -> int:
            return len(data)

    async with connect(Chat, "/") as ws:
        await ws.send_json({"type": "ping"})
        assert await ws.receive_json() == {"type": "pong", "seen": 1}
