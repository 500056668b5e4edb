"""What every benchmark app serves: routes, payloads, the typed message and the graph's parts.

Each app module under `benchmarks.apps` builds one ASGI app with the same five
routes, written the way its framework's docs show:

- `/echo`: text echo, the reply is the received text.
- `/json`: untyped JSON echo, the reply is the received object.
- `/typed`: the message is decoded into a typed `{"user", "text", "n"}` record and the
  reply is `{"user": ..., "n": ...}`.
- `/graph/{room}?token=...` with a `user-agent` header: the connection resolves the path
  param, the query param, the header and three dependencies (`settings`, `account`
  which needs `settings`, and the generator `db` whose teardown closes it), accepts,
  and tears everything down when the client disconnects. The dependencies are all
  `async def` so that no framework hands them to a thread pool: what is measured is
  the dependency machinery, not thread wake-ups.
- `/bare/{room}`: accepts with nothing to resolve; the baseline for `/graph`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator

import msgspec

TEXT_PATH = "/echo"
JSON_PATH = "/json"
TYPED_PATH = "/typed"
GRAPH_PATH = "/graph/lobby"
BARE_PATH = "/bare/lobby"

ROOM = "lobby"
TOKEN = "abc123"
USER_AGENT = "tether-bench/1.0"

TEXT_MESSAGE = "hello, websocket"
JSON_MESSAGE = json.dumps({"user": "ada", "text": "hello", "n": 7}, separators=(",", ":"))
TYPED_REPLY = {"user": "ada", "n": 7}


@dataclasses.dataclass(frozen=True)
class Workload:
    """One benchmark workload: where it is served and what a correct reply looks like."""

    name: str
    title: str
    path: str
    query: str = ""
    message: str | None = None
    expected_reply: object = None
    reply_is_json: bool = False

    @property
    def is_message_workload(self) -> bool:
        """True when the workload sends messages on one connection (else it opens connections)."""
        return self.message is not None


MESSAGE_WORKLOADS = (
    Workload("text", "text echo", TEXT_PATH, message=TEXT_MESSAGE, expected_reply=TEXT_MESSAGE),
    Workload(
        "json",
        "JSON echo",
        JSON_PATH,
        message=JSON_MESSAGE,
        expected_reply=json.loads(JSON_MESSAGE),
        reply_is_json=True,
    ),
    Workload(
        "typed",
        "typed JSON",
        TYPED_PATH,
        message=JSON_MESSAGE,
        expected_reply=TYPED_REPLY,
        reply_is_json=True,
    ),
)
CONNECTION_WORKLOADS = (
    Workload("graph", "connect + DI graph", GRAPH_PATH, query=f"token={TOKEN}"),
    Workload("bare", "connect, no deps", BARE_PATH),
)
WORKLOADS = {w.name: w for w in MESSAGE_WORKLOADS + CONNECTION_WORKLOADS}

# Request/response, tether's alone (`benchmarks.requests`, and counted by
# `benchmarks.instructions`): an `@on` event answered bare, and the same event
# sent as a request, answered in the reply envelope.
EVENT_MESSAGE = json.dumps({"type": "echo", "text": TEXT_MESSAGE}, separators=(",", ":"))
REQUEST_MESSAGE = json.dumps(
    {"type": "echo", "ref": 1, "text": TEXT_MESSAGE}, separators=(",", ":")
)
REQUEST_WORKLOADS = {
    w.name: w
    for w in (
        Workload("event", "routed event", "/routed", message=EVENT_MESSAGE,
                 expected_reply=TEXT_MESSAGE),
        Workload("request", "request", "/requests", message=REQUEST_MESSAGE,
                 expected_reply={"ref": 1, "ok": True, "data": TEXT_MESSAGE},
                 reply_is_json=True),
    )
}  # fmt: skip


@dataclasses.dataclass
class ChatMessage:
    """The typed message as a dataclass, for frameworks that build one by hand."""

    user: str
    text: str
    n: int


class ChatStruct(msgspec.Struct):
    """The typed message as a msgspec Struct, for frameworks that decode with msgspec."""

    user: str
    text: str
    n: int


# --- the dependency graph's parts, wrapped by each app in its own DI style ---


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the first dependency returns: app configuration."""

    db_name: str = "bench"
    max_rooms: int = 100


@dataclasses.dataclass
class Account:
    """What the second dependency returns; it needs `Settings`."""

    settings: Settings
    user_id: int = 1


class TeardownLedger:
    """Numbers every `DbConnection` opened and records which were closed.

    The harness reads it to check that an app tore the generator dependency of a
    connection down before that connection's ASGI call returned.
    """

    __slots__ = ("closed", "opened")

    def __init__(self) -> None:
        self.opened = 0
        self.closed: set[int] = set()


LEDGER = TeardownLedger()


class DbConnection:
    """What the generator dependency yields; closing it is recorded in `LEDGER`."""

    __slots__ = ("open", "serial")

    def __init__(self) -> None:
        LEDGER.opened += 1
        self.serial = LEDGER.opened
        self.open = True

    def close(self) -> None:
        """Close the connection and record that its teardown ran."""
        self.open = False
        LEDGER.closed.add(self.serial)


SETTINGS = Settings()


async def load_settings() -> Settings:
    """Return the app settings (the graph's first dependency)."""
    return SETTINGS


async def open_account(settings: Settings) -> Account:
    """Open the user's account (the graph's async dependency, which needs the settings)."""
    return Account(settings)


async def db_connection() -> AsyncIterator[DbConnection]:
    """Yield a database connection and close it on teardown (the generator dependency)."""
    connection = DbConnection()
    try:
        yield connection
    finally:
        connection.close()


def check_graph(room: str, token: str, agent: str, account: Account, db: DbConnection) -> None:
    """Check what a graph connection resolved; raise ValueError when something is off."""
    if room != ROOM or token != TOKEN or agent != USER_AGENT:
        raise ValueError(f"unexpected graph values: {room!r}, {token!r}, {agent!r}")
    if account.settings is not SETTINGS or not db.open:
        raise ValueError("the graph's dependencies were not resolved")
