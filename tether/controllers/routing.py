"""`@on("event")`: route a JSON message to a method by its event key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

EVENTS_ATTRIBUTE = "__tether_events__"


def on(event: str) -> Callable[[F], F]:
    """Route JSON messages whose event key (`event_key`, default `"type"`) is `event`.

    The decorated method takes the same parameters as `on_receive`; its `data`
    is the whole message, validated into `data`'s annotation when it has one.
    Messages whose event has no handler, whose event key is missing or not a
    string, or that are not JSON objects go to `on_receive` (without one they
    close with 1003, saying which). Stack the decorator to route several
    events to one method.
    """
    if not isinstance(event, str) or not event:
        raise TypeError(f"@on needs a non-empty event name, got {event!r}")

    def mark(func: F) -> F:
        events = getattr(func, EVENTS_ATTRIBUTE, ())
        setattr(func, EVENTS_ATTRIBUTE, (*events, event))
        return func

    return mark


def events_of(func: Any) -> tuple[str, ...]:
    """The events a method was decorated for with `@on`."""
    return getattr(func, EVENTS_ATTRIBUTE, ())


def unroutable(message: Any, event_key: str) -> str:
    """Why a parsed JSON message reaches no `@on` handler (the reason of its 1003 close)."""
    if type(message) is not dict:
        return f"expected a JSON object with a {event_key!r} key"
    event = message.get(event_key)
    if event is None and event_key not in message:
        return f"the event key {event_key!r} is missing"
    if type(event) is not str:
        return f"the event key {event_key!r} is not a string"
    return f"unknown event {event!r}"
