"""Build the AsyncAPI 3.0 document: one channel per mounted controller.

For each controller the app *receives* what `on_receive` and the `@on`
handlers take (one message per event, its event key pinned with `const`),
and *sends* what they return plus the types listed in `sends`. A handler
that returns something also gets a `reply` on its receive operation. A
controller with `@on` routes also gets a `request` operation (an event with
its `request_key`) whose reply is the `reply` or `errorReply` envelope.
Each call the server makes (`calls`: `self.call(event, ...)`) is a `send`
operation whose reply is the client's `call.<event>.reply` or `callErrorReply`.
Each group in `groups` adds to the `send` operation what its members receive:
the published types as they are, or in a group that keeps history the
`group.<name>` envelope with the message's position; and with
`presence_events`, the group's `presence_diff.<name>` frames.
"""

from __future__ import annotations

import copy
import inspect
import typing
from collections.abc import Mapping
from typing import Any

from tether.asyncapi.discovery import Endpoint, find_endpoints
from tether.asyncapi.handshake import Handshake, read_handshake
from tether.asyncapi.schemas import (
    UNTYPED,
    SchemaRegistry,
    component_name,
    is_discriminated,
    type_name,
    union_members,
    value_schema,
)
from tether.controllers.declared_groups import Group, group_prefix
from tether.controllers.description import ControllerInfo, HookInfo, describe_controller
from tether.di.conversion import unwrap_annotated

ASYNCAPI_VERSION = "3.0.0"
WS_BINDING_VERSION = "0.1.0"
JSON = "application/json"
TEXT = "text/plain"
BINARY = "application/octet-stream"

_TEXT_SCHEMA = {"type": "string"}
_BINARY_SCHEMA = {"type": "string", "format": "binary"}
_REGEX_SPECIAL = frozenset("\\^$.|?*+()[]{}/")
_CONVERTOR_NAMES = {"str": "string", "int": "integer", "float": "number", "uuid": "UUID"}


def generate(
    app_or_routes: Any,
    *,
    title: str,
    version: str,
    servers: Mapping[str, Any] | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """Describe the WebSocket controllers of an app as an AsyncAPI 3.0 document.

    Args:
        app_or_routes: A Starlette, FastAPI or Lilya app (mounted sub-apps and
            included routers are walked), a list of routes (`WebSocketRoute`,
            `WebSocketPath`, `Mount`, `Include`, ...) or `(path, Controller)` pairs.
        title: The API's title (`info.title`).
        version: The API's version (`info.version`), not AsyncAPI's.
        servers: AsyncAPI server objects by name, copied as given, e.g.
            `{"local": {"host": "localhost:8000", "protocol": "ws"}}`.
        description: `info.description` (CommonMark).

    Returns:
        The document as a JSON-ready dict. Routes whose endpoint is not a
        `WebSocketController` subclass are left out.

    Raises:
        TypeError: `app_or_routes` has no routes, or a message type cannot be
            described (the error names the controller and hook).
    """
    builder = _Builder()
    for endpoint in find_endpoints(app_or_routes):
        builder.add(endpoint)
    info: dict[str, Any] = {"title": title, "version": version}
    if description:
        info["description"] = description
    document: dict[str, Any] = {"asyncapi": ASYNCAPI_VERSION, "info": info}
    if servers:
        document["servers"] = copy.deepcopy(dict(servers))
    document["defaultContentType"] = JSON
    document["channels"] = builder.channels
    document["operations"] = builder.operations
    components = {"schemas": builder.schemas.components, "messages": builder.messages}
    document["components"] = {key: value for key, value in components.items() if value}
    return document


class _Builder:
    """Collects channels, operations and components while endpoints are added."""

    def __init__(self) -> None:
        self.schemas = SchemaRegistry()
        self.channels: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, Any]] = {}

    def add(self, endpoint: Endpoint) -> None:
        """Add the channel and operations of one mounted controller."""
        controller = endpoint.controller
        channel: dict[str, Any] = {"address": endpoint.address, "title": controller.__name__}
        channel_id = _claim(self.channels, [component_name(controller.__name__)], channel)
        _set(channel, "description", _doc(controller))
        handshake = read_handshake(controller)
        if endpoint.convertors:
            channel["parameters"] = _parameters(endpoint, handshake)
        _set(channel, "bindings", _bindings(handshake))
        channel["messages"] = {}
        _Channel(self, channel_id, channel, controller).describe()


class _Channel:
    """The messages and operations of one channel."""

    def __init__(
        self, builder: _Builder, channel_id: str, channel: dict[str, Any], cls: Any
    ) -> None:
        self.builder = builder
        self.id = channel_id
        self.channel = channel
        self.cls = cls
        self.info: ControllerInfo = describe_controller(cls)
        self.sent: list[str] = []

    def describe(self) -> None:
        info = self.info
        by_handler: dict[str, tuple[HookInfo, list[str]]] = {}
        for event, hook in info.events.items():
            by_handler.setdefault(hook.name, (hook, []))[1].append(event)
        for hook, events in by_handler.values():
            data = _data_annotation(hook)
            messages = [self._event_message(event, data, hook.name) for event in events]
            self._receive(hook, messages)
        if info.on_receive is not None:
            messages = self._data_messages(info.on_receive, routed=bool(info.events))
            self._receive(info.on_receive, messages)
        for annotation in info.sends:
            for key in self._value_messages(annotation, f"{self.cls.__name__}.sends"):
                self._sending(key)
        joined = [self._group(name, group) for name, group in info.groups.items()]
        key = getattr(self.cls, "request_key", None)
        if info.events and key is not None:
            self._requests(key)
        for event in sorted(info.calls):
            self._server_call(event, *info.calls[event])
        if self.sent:
            operation: dict[str, Any] = {
                "action": "send",
                "channel": self._channel_ref(),
                "summary": "Messages the server sends: handler replies, `sends`"
                + (" and group messages." if joined else "."),
            }
            _set(operation, "description", "\n".join(joined))
            operation["messages"] = [self._message_ref(key) for key in self.sent]
            self._operation("send", operation)

    # -- operations ---------------------------------------------------------------

    def _receive(self, hook: HookInfo, messages: list[str]) -> None:
        operation: dict[str, Any] = {"action": "receive", "channel": self._channel_ref()}
        _set(operation, "title", hook.name)
        _set(operation, "description", _doc(hook.function))
        operation["messages"] = [self._message_ref(key) for key in messages]
        replies = self._value_messages(hook.returns, f"{hook.name}, return value")
        if replies:
            operation["reply"] = {
                "channel": self._channel_ref(),
                "messages": [self._message_ref(key) for key in replies],
            }
            for key in replies:
                self._sending(key)
        self._operation(hook.name.rsplit(".", 1)[-1], operation)

    def _requests(self, key: str) -> None:
        """Any routed event sent with an id is a request, answered with that id (the protocol)."""
        event_key = self.info.event_key
        request_id = {"type": ["integer", "string"], "description": "Chosen by the client."}
        request = self._message(
            "request",
            "request",
            {
                "type": "object",
                "properties": {event_key: {"type": "string"}, key: request_id},
                "required": [event_key, key],
            },
            JSON,
            summary=f"Any event above with a `{key}`: answered once, with the same `{key}`.",
        )
        answered = self._message(
            "reply",
            "reply",
            {
                "type": "object",
                "properties": {key: request_id, "ok": {"const": True}, "data": {}},
                "required": [key, "ok", "data"],
            },
            JSON,
            summary="The handler's return value, for the request with this id.",
        )
        failed = self._message(
            "errorReply",
            "errorReply",
            {
                "type": "object",
                "properties": {
                    key: {"type": ["integer", "string", "null"]},
                    "ok": {"const": False},
                    "error": _error_schema(),
                },
                "required": [key, "ok", "error"],
            },
            JSON,
            summary="The request failed: bad_request, unknown_event, invalid_data, "
            "duplicate_id, internal_error, or the handler's own code.",
        )
        self._operation(
            "request",
            {
                "action": "receive",
                "channel": self._channel_ref(),
                "summary": "Requests: events with an id, each answered with a reply.",
                "messages": [self._message_ref(request)],
                "reply": {
                    "channel": self._channel_ref(),
                    "messages": [self._message_ref(answered), self._message_ref(failed)],
                },
            },
        )
        self._sending(answered)
        self._sending(failed)

    def _server_call(self, event: str, data: Any, result: Any) -> None:
        """A call the server makes (`self.call`): its frame, and the client's replies to it."""
        event_key = self.info.event_key
        where = f"{self.cls.__name__}.calls[{event!r}]"
        call_id = {"type": "integer", "minimum": 1, "description": "Counts up per connection."}
        asked = self._message(
            f"call.{event}",
            f"call.{event}",
            {
                "type": "object",
                "properties": {
                    event_key: {"type": "string", "const": event},
                    "call": call_id,
                    "data": self._call_schema(data, f"{where}, data"),
                },
                "required": [event_key, "call", "data"],
            },
            JSON,
            summary=f"The server calls `{event}`: answer once, with the same `call`.",
        )
        answered = self._message(
            f"call.{event}.reply",
            f"call.{event}.reply",
            {
                "type": "object",
                "properties": {
                    "call": call_id,
                    "ok": {"const": True},
                    "data": self._call_schema(result, f"{where}, result"),
                },
                "required": ["call", "ok", "data"],
            },
            JSON,
            summary=f"The client's answer to `{event}`, without `{event_key}`.",
        )
        failed = self._message(
            "callErrorReply",
            "callErrorReply",
            {
                "type": "object",
                "properties": {
                    "call": call_id,
                    "ok": {"const": False},
                    "error": _error_schema(),
                },
                "required": ["call", "ok", "error"],
            },
            JSON,
            summary="The client could not answer a call: unknown_event, internal_error, "
            "or a code of its own.",
        )
        operation: dict[str, Any] = {
            "action": "send",
            "channel": self._channel_ref(),
            "title": f"call {event}",
            "summary": f"`self.call({event!r}, ...)`: the client's reply is what it returns.",
            "messages": [self._message_ref(asked)],
            "reply": {
                "channel": self._channel_ref(),
                "messages": [self._message_ref(answered), self._message_ref(failed)],
            },
        }
        self._operation(f"call.{event}", operation)

    def _group(self, name: str, group: Group) -> str:
        """Add what members of a declared group receive; return a line saying what it is."""
        where = f"{self.cls.__name__}.groups[{name!r}]"
        if group.history:
            key = self._envelope(name, group.messages, where)
            self._sending(key)
            said = [f"each message in the history envelope with its position (`{key}`)"]
        else:
            keys = self._value_messages(group.messages, where)
            if not keys:  # untyped: whatever is published, as it is
                summary = f"A message published to `{name}`, as it was published."
                keys = [self._message(f"group.{name}", f"group.{name}", {}, None, summary=summary)]
            for key in keys:
                self._sending(key)
            said = ["each message as it was published (" + ", ".join(f"`{k}`" for k in keys) + ")"]
        if group.presence_events:
            key = self._presence_diff(name)
            self._sending(key)
            said.append(f"its presence diffs (`{key}`)")
        return f"- `{name}`: " + "; ".join(said) + "."

    def _envelope(self, name: str, messages: Any, where: str) -> str:
        """A message of a group with history: `{"group", "offset", "epoch", "data"}`."""
        base = unwrap_annotated(messages)[0]
        members = (messages,) if is_discriminated(messages) else union_members(messages)
        untyped = base in UNTYPED
        json_members = [m for m in members if unwrap_annotated(m)[0] is not bytes]
        properties: dict[str, Any] = {
            "group": _group_name_schema(name),
            "offset": {
                "type": "integer",
                "minimum": 1,
                "description": "1, 2, 3, ... within an epoch, with no gaps.",
            },
            "epoch": {
                "type": "string",
                "description": "The history's epoch: a new one means earlier positions are lost.",
            },
        }
        required = ["group", "offset", "epoch"]
        if untyped or json_members:
            if untyped:
                data: dict[str, Any] = {}
            elif len(json_members) == 1:
                data = self._schema(json_members[0], where)
            else:
                data = {"anyOf": [self._schema(m, where) for m in json_members]}
            properties["data"] = data
        has_bytes = untyped or len(json_members) < len(members)
        if has_bytes:
            properties["bytes"] = {
                "type": "string",
                "contentEncoding": "base64",
                "description": "A `bytes` message, in base64, instead of `data`.",
            }
        payload: dict[str, Any] = {"type": "object", "properties": properties}
        if "data" in properties and has_bytes:
            payload["required"] = required
            payload["oneOf"] = [{"required": ["data"]}, {"required": ["bytes"]}]
        else:
            payload["required"] = [*required, "data" if "data" in properties else "bytes"]
        return self._message(
            f"group.{name}",
            f"group.{name}",
            payload,
            JSON,
            summary=f"A message published to `{name}`, with its position "
            "(keep `<epoch>:<offset>` to recover from).",
        )

    def _presence_diff(self, name: str) -> str:
        """The frame watchers of a group's presence get as others join and leave."""
        entries = {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {}},
            "description": "Each key with one presence payload per connection.",
        }
        payload = {
            "type": "object",
            "properties": {
                "event": {"type": "string", "const": "presence_diff"},
                "group": _group_name_schema(name),
                "joins": entries,
                "leaves": dict(entries),
            },
            "required": ["event", "group", "joins", "leaves"],
        }
        return self._message(
            f"presence_diff.{name}",
            f"presence_diff.{name}",
            payload,
            JSON,
            summary=f"Who became present in `{name}` and who left; apply `leaves` first.",
        )

    def _call_schema(self, annotation: Any, where: str) -> dict[str, Any]:
        """A call's data or result: any JSON when untyped, `null` for None."""
        base = unwrap_annotated(annotation)[0]
        if base in UNTYPED:
            return {}
        if base is None or base is type(None):
            return {"type": "null"}
        return self._schema(annotation, where)

    def _operation(self, name: str, operation: dict[str, Any]) -> None:
        _claim(self.builder.operations, [component_name(f"{self.id}.{name}")], operation)

    def _sending(self, key: str) -> None:
        if key not in self.sent:
            self.sent.append(key)

    def _channel_ref(self) -> dict[str, str]:
        return {"$ref": f"#/channels/{self.id}"}

    def _message_ref(self, key: str) -> dict[str, str]:
        return {"$ref": f"#/channels/{self.id}/messages/{key}"}

    # -- messages -------------------------------------------------------------------

    def _event_message(self, event: str, data: Any, where: str) -> str:
        """A routed message: its event key is a `const`, the rest is `data`'s schema."""
        key = self.info.event_key
        pinned = {
            "type": "object",
            "properties": {key: {"type": "string", "const": event}},
            "required": [key],
        }
        base = unwrap_annotated(data)[0]
        if base in UNTYPED or (typing.get_origin(base) or base) is dict:
            payload = pinned
        else:
            payload = {"allOf": [self._schema(data, f"{where}, parameter 'data'"), pinned]}
        summary = f"`{key}` is `{event}`."
        return self._message(event, event, payload, JSON, summary=summary)

    def _data_messages(self, hook: HookInfo, *, routed: bool) -> list[str]:
        """The messages `on_receive` takes, from its `data` annotation and the encoding."""
        data = _data_annotation(hook)
        base = unwrap_annotated(data)[0]
        encoding = "json" if routed else self.info.encoding
        if routed and (typing.get_origin(base) or base) is dict:
            base = Any  # a routed fallback gets every other JSON object
        if base in UNTYPED or base in (str, bytes):
            if encoding == "json":  # parsed, but not validated
                summary = "Any JSON message."
                if routed:
                    summary = f"Any JSON message whose `{self.info.event_key}` has no handler."
                return [self._message("message", "message", {}, JSON, summary=summary)]
            if encoding == "text" or base is str:
                return [self._text()]
            if encoding == "bytes" or base is bytes:
                return [self._binary()]
            payload = {"oneOf": [_TEXT_SCHEMA, _BINARY_SCHEMA]}
            summary = "A text or binary frame."
            return [self._message("frame", "frame", payload, None, summary=summary)]
        return self._typed_messages(data, f"{hook.name}, parameter 'data'")

    def _value_messages(self, annotation: Any, where: str) -> list[str]:
        """The messages a return value (or a `sends` entry) of this type is sent as."""
        base = unwrap_annotated(annotation)[0]
        if base in UNTYPED or base is None or base is type(None):
            return []
        return self._typed_messages(annotation, where)

    def _typed_messages(self, annotation: Any, where: str) -> list[str]:
        members = (annotation,) if is_discriminated(annotation) else union_members(annotation)
        keys = []
        for member in members:
            base = unwrap_annotated(member)[0]
            if base is str:
                keys.append(self._text())
            elif base is bytes:
                keys.append(self._binary())
            else:
                name = type_name(member)
                schema = self._schema(member, where)
                keys.append(self._message(name, name, schema, JSON))
        return keys

    def _schema(self, annotation: Any, where: str) -> dict[str, Any]:
        try:
            return self.builder.schemas.schema_for(annotation)
        except TypeError as exc:
            raise TypeError(f"AsyncAPI: {where}: {exc}") from exc

    def _text(self) -> str:
        return self._message("text", "text", dict(_TEXT_SCHEMA), TEXT, summary="A text frame.")

    def _binary(self) -> str:
        return self._message(
            "binary", "binary", dict(_BINARY_SCHEMA), BINARY, summary="A binary frame."
        )

    def _message(
        self,
        key: str,
        name: str,
        payload: dict[str, Any],
        content_type: str | None,
        *,
        summary: str | None = None,
    ) -> str:
        """Register a message in components and in this channel; return its channel key."""
        message: dict[str, Any] = {"name": name}
        _set(message, "summary", summary)
        _set(message, "contentType", content_type)
        message["payload"] = payload
        key = component_name(key)
        component_key = _claim(
            self.builder.messages, [key, component_name(f"{self.id}.{key}")], message
        )
        reference = {"$ref": f"#/components/messages/{component_key}"}
        return _claim(self.channel["messages"], [key], reference)


# -- helpers ---------------------------------------------------------------------------


def _parameters(endpoint: Endpoint, handshake: Handshake) -> dict[str, Any]:
    parameters: dict[str, Any] = {}
    for name, convertor in endpoint.convertors.items():
        kind = _CONVERTOR_NAMES.get(convertor, convertor)
        parameter: dict[str, Any] = {"description": f"Path parameter `{name}` ({kind})."}
        annotation = handshake.path_types.get(name)
        if annotation is not None:
            enum = value_schema(annotation).get("enum")
            if enum and all(isinstance(value, str) for value in enum):
                parameter["enum"] = enum
        parameters[name] = parameter
    return parameters


def _bindings(handshake: Handshake) -> dict[str, Any] | None:
    binding: dict[str, Any] = {}
    for field, values in (("query", handshake.query), ("headers", handshake.headers)):
        if values:
            schema: dict[str, Any] = {
                "type": "object",
                "properties": {name: schema for name, (schema, _) in values.items()},
            }
            required = [name for name, (_, needed) in values.items() if needed]
            if required:
                schema["required"] = required
            binding[field] = schema
    if not binding:
        return None
    binding["bindingVersion"] = WS_BINDING_VERSION
    return {"ws": binding}


def _group_name_schema(name: str) -> dict[str, Any]:
    """The `group` of a frame: the name itself, or any name a `"prefix*"` pattern matches."""
    prefix = group_prefix(name)
    if prefix is None:
        return {"type": "string", "const": name}
    if not prefix:
        return {"type": "string"}
    # Escaped by hand: Python's re.escape makes escapes ("\-") that ECMA-262 refuses.
    escaped = "".join("\\" + c if c in _REGEX_SPECIAL else c for c in prefix)
    return {"type": "string", "pattern": "^" + escaped}


def _error_schema() -> dict[str, Any]:
    """The `error` object of a failed reply, both ways (docs/protocol.md)."""
    return {
        "type": "object",
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "data": {}},
        "required": ["code", "message"],
    }


def _data_annotation(hook: HookInfo) -> Any:
    data = hook.data
    return inspect.Parameter.empty if data is None else data.annotation


def _doc(obj: Any) -> str | None:
    """An object's own docstring (never an inherited one), cleaned."""
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if doc else None


def _set(target: dict[str, Any], key: str, value: Any) -> None:
    if value:
        target[key] = value


def _claim(mapping: dict[str, Any], candidates: list[str], value: Any) -> str:
    """Store `value` under the first free candidate key (or one holding an equal value)."""
    for key in candidates:
        if key not in mapping or mapping[key] == value:
            mapping[key] = value
            return key
    base, n = candidates[-1], 2
    while f"{base}_{n}" in mapping and mapping[f"{base}_{n}"] != value:
        n += 1
    mapping[f"{base}_{n}"] = value
    return f"{base}_{n}"
