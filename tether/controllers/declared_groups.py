"""The groups a controller declares it joins (`groups`), for its AsyncAPI document.

Nothing in a controller's signatures says which groups it joins: `join` is
called with a name made at run time. A class says so in `groups`, as it
lists `sends` and `calls`, keyed the way a broker's `history=` is (a group
name, or a `"prefix*"` pattern):

    groups = {"room:*": Said | Joined}                         # what is published there
    groups = {"room:*": Group(Said | Joined, presence_events=True)}

Like `sends`, this is a description: `join` and `publish` do not check
against it. It is checked when the class is defined.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tether.di.compiler import ConfigurationError

__all__ = ["Group", "check_groups", "group_prefix"]


@dataclass(frozen=True, slots=True)
class Group:
    """A group a controller joins, as its `groups` class attribute declares it.

    Attributes:
        messages: The type of what is published to the group (a union for
            several, `str`, `bytes`, or `Any` for any JSON).
        history: Whether the group keeps history, so that members receive
            each message in the envelope with its position (`group`,
            `offset`, `epoch`, `data`). None (the default) asks the
            controller's broker (its `history=` setting) for the group's name
            or, for a `"prefix*"` pattern, for the prefix.
        presence_events: Whether connections join it with
            `presence_events=True`, and so are sent its presence diffs.
    """

    messages: Any
    history: bool | None = None
    presence_events: bool = False


def group_prefix(key: str) -> str | None:
    """What a `"prefix*"` pattern matches the start of; None for an exact group name."""
    return key[:-1] if key.endswith("*") else None


def check_groups(owner: str, groups: Any) -> None:
    """Refuse a malformed `groups` declaration, naming the class and the entry."""
    if not isinstance(groups, Mapping):
        raise ConfigurationError(
            f"{owner}.groups must be a dict of group name or 'prefix*' pattern -> message "
            f"type (or Group(...)), e.g. {{'room:*': ChatMessage}}; got {type(groups).__name__}"
        )
    for key, declared in groups.items():
        if not isinstance(key, str) or not key:
            raise ConfigurationError(
                f"{owner}.groups: a key must be a group name or a 'prefix*' pattern, got {key!r}"
            )
        where = f"{owner}.groups[{key!r}]"
        if "*" in key[:-1]:
            raise ConfigurationError(
                f"{where}: '*' may only end a pattern ('room:*' matches every group "
                "starting with 'room:'), as in a broker's history="
            )
        if isinstance(declared, tuple):
            raise ConfigurationError(
                f"{where} must be the message type or Group(type, history=..., "
                f"presence_events=...), not a tuple {declared!r}"
            )
        if not isinstance(declared, Group):
            continue
        if declared.history is not None and not isinstance(declared.history, bool):
            raise ConfigurationError(
                f"{where}: history must be True, False or None (ask the broker), got "
                f"{declared.history!r}; how much is kept is the broker's history= setting"
            )
        if not isinstance(declared.presence_events, bool):
            raise ConfigurationError(
                f"{where}: presence_events must be True or False, got {declared.presence_events!r}"
            )
