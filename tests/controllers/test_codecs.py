"""Which library validates a message type: pydantic for whatever mentions pydantic."""

from __future__ import annotations

import dataclasses
import types
from typing import Annotated

import msgspec
import pydantic

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
