"""`self.join`, `self.leave` and `self.publish` without `await` are refused at class definition."""

import inspect

import pytest

from tether import ConfigurationError, WebSocketController, on
from tether.testing import connect

pytestmark = pytest.mark.anyio


def line_of(marker: str, func: object) -> int:
    """The line of `func`'s source that contains `marker`."""
    lines, first = inspect.getsourcelines(func)  # type: ignore[arg-type]
    return first + next(i for i, line in enumerate(lines) if marker in line)


def test_an_unawaited_join_is_refused_with_the_line_and_the_fix() -> None:
    with pytest.raises(ConfigurationError) as refused:

        class Room(WebSocketController):
            async def on_connect(self, room: str) -> None:
                self.join(room)  # the mistake

    line = line_of("the mistake", test_an_unawaited_join_is_refused_with_the_line_and_the_fix)
    assert str(refused.value) == (
        f"Room.on_connect, line {line}: self.join(...) is not awaited, so it never runs: "
        "did you forget await? Write `await self.join(...)`."
    )


def test_an_unawaited_publish_in_a_plain_def_handler_is_refused_with_both_fixes() -> None:
    with pytest.raises(ConfigurationError) as refused:

        class Room(WebSocketController):
            @on("say")
            def say(me, data: dict) -> None:
                if data:
                    me.publish("room", data)  # the mistake

    line = line_of(
        "the mistake", test_an_unawaited_publish_in_a_plain_def_handler_is_refused_with_both_fixes
    )
    assert str(refused.value) == (
        f"Room.say, line {line}: me.publish(...) is not awaited, so it never runs: "
        "did you forget await? Write `await me.publish(...)` and make say async def."
    )


def test_a_helper_method_is_checked_too() -> None:
    with pytest.raises(ConfigurationError, match=r"Room\._leave_all, line \d+: self\.leave"):

        class Room(WebSocketController):
            async def _leave_all(self) -> None:
                for group in ("a", "b"):
                    self.leave(group)


async def test_awaited_calls_and_kept_coroutines_pass() -> None:
    class Room(WebSocketController):
        async def on_connect(self) -> None:
            await self.join("room")
            pending = self.publish("room", "hello")  # awaited below: fine
            await pending

    async with connect(Room, "/") as ws:
        assert await ws.receive_text() == "hello"


def test_a_subclass_with_its_own_plain_join_may_call_it_plainly() -> None:
    class Local(WebSocketController):
        def join(self, group: str) -> None:  # type: ignore[override]
            self.groups = [group]

        async def on_connect(self) -> None:
            self.join("room")

    assert Local
