"""Codecs: which library validates a message type, and which types are refused.

pydantic takes whatever mentions pydantic; a type that no installed library
can validate is a `ConfigurationError` when the class is defined.
"""

import dataclasses
import types
from typing import Annotated, Any

import msgspec
import pydantic
import pytest

from tether import ConfigurationError, WebSocketController, on
from tether.controllers.codecs import mentions_pydantic


class Model(pydantic.BaseModel):
    text: str


class Child(Model):
    pass


class Struct(msgspec.Struct):
    text: str


@dataclasses.dataclass
class Plain:
    text: str


def test_a_model_anywhere_in_the_type_is_pydantics() -> None:
    assert mentions_pydantic(Model)
    assert mentions_pydantic(Child)
    assert mentions_pydantic(list[Model])
    assert mentions_pydantic(dict[str, Model | None])
    assert mentions_pydantic(Annotated[Struct | Model, "note"])


def test_pydantic_metadata_in_annotated_is_pydantics() -> None:
    assert mentions_pydantic(Annotated[int, pydantic.Field(gt=0)])


def test_types_without_pydantic_are_not() -> None:
    assert not mentions_pydantic(Struct)
    assert not mentions_pydantic(Plain)
    assert not mentions_pydantic(list[Plain])
    assert not mentions_pydantic(Annotated[int, "positive"])


def test_a_module_merely_named_like_pydantic_is_not() -> None:
    lookalike = types.new_class("Lookalike")
    lookalike.__module__ = "pydanticish.models"
    assert not mentions_pydantic(lookalike)
    ecosystem = types.new_class("Color")
    ecosystem.__module__ = "pydantic_extra_types.color"
    assert mentions_pydantic(ecosystem)


# -- types no library can validate ------------------------------------------------------


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
