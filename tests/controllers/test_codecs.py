"""Codecs: a `data` type no installed library can validate is refused at class definition."""

from typing import Any

import pytest

from tether import ConfigurationError, WebSocketController, on


class Point:
    """A plain class: neither msgspec nor pydantic can build it from JSON."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y


PLAIN = (
    "parameter 'data': no installed library can validate messages into Point, a plain class; "
    "make it a dataclass, TypedDict, msgspec Struct or pydantic model"
)


@pytest.mark.parametrize("annotation", [Point, list[Point], dict[str, Point], Point | None])
def test_a_data_type_no_library_can_validate_is_a_configuration_error(annotation: Any) -> None:
    async def on_receive(self: Any, data: annotation) -> None: ...  # type: ignore[valid-type]

    with pytest.raises(ConfigurationError) as refused:
        type("Shapes", (WebSocketController,), {"on_receive": on_receive})
    assert str(refused.value) == f"Shapes.on_receive, {PLAIN}"


def test_a_routed_handler_with_such_a_type_is_refused_too() -> None:
    with pytest.raises(ConfigurationError) as refused:

        class Shapes(WebSocketController):
            @on("draw")
            async def draw(self, data: Point) -> None: ...

    assert str(refused.value) == f"Shapes.draw, {PLAIN}"
