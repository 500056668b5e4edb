"""Fuzzing the controller lifecycle with random ASGI message sequences.

Hypothesis draws a list of steps, each read against the connections open at
that point: up to three at once, each served by one of five controllers
(`encoding="json"`, typed `data`; `@on` routes only, routes with an
`on_receive` fallback, one typed `on_receive`, the hot path without limits,
and `max_concurrency=2`). A step may connect (with a plan for `on_connect`
and the connection's dependencies), send text or binary frames (valid typed
messages, malformed JSON, invalid UTF-8, messages that fail validation,
unknown events, event keys that are not strings, oversized payloads, more
than the rate limit allows), leave with a random close code at any point
(also while `on_connect` or a handler is blocked, before or after accept),
release a blocked hook, or have the server cancel the app. Hooks and
dependencies (generator and async-generator ones, in app, connection and
message scope) raise at setup or teardown, raise `WebSocketException` with
random codes, `HTTPException`, or close the connection themselves.

A small model predicts, after every step, what the client has seen.
`tether.testing` serves each connection on the test's own event loop and is
its client: the test reads what has arrived with `timeout=0` after every step,
and a `Probe` around the controller says when the app waits for the test.
Invariants checked:

1. The close the client sees is the documented one: 1009 for an oversized
   message, 1008 over the rate limit, 1007 for malformed JSON or a failed
   validation, 1003 for an event without a handler, 1011 for an exception in
   a hook or a dependency, the `WebSocketException`'s own code, the code a
   hook closed with; before accept, a refusal (403), or HTTP 500 / the
   `HTTPException`'s status where the server supports denial responses. When
   the client left first, nothing more is sent and on_disconnect gets the
   client's code (1006 when it left during the handshake). Replies arrive in
   order, and close reasons fit in 123 bytes.
2. `on_disconnect` runs exactly once per accepted connection, with the code
   of invariant 1 (1006 when the server cancelled the app while the client
   was still there), and never for a refused connection.
3. Every dependency that was set up is torn down exactly once, in reverse
   order of setup (connection and message scopes nest), after
   `on_disconnect`; app-scoped ones once, at lifespan shutdown.
4. No task outlives its connection: the app coroutine returns (or, when the
   server cancelled it, raises the cancellation) promptly, the task group
   that ran it exits, and the number of running tasks is what it was before.
5. Nothing but cancellation escapes `Controller(scope, receive, send)`, and
   every exception tether logs is one the fuzz raised on purpose.

The normal suite runs `TETHER_FUZZ_EXAMPLES` examples (default 60) per
backend; set it higher (e.g. 2000) for a long run.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.exceptions import HTTPException

from tether import Provide, WebSocket, WebSocketController, WebSocketException, lifespan, on
from tether.close_codes import ABNORMAL_CLOSURE, NO_STATUS
from tether.controllers.limits import RateLimit
from tether.testing import (
    HandshakeRejected,
    ReceiveTimeout,
    ServerClosed,
    WebSocketSession,
    connect,
)

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

pytestmark = pytest.mark.anyio

EXAMPLES = int(os.environ.get("TETHER_FUZZ_EXAMPLES", "60"))
MAX_SIZE = 200  # bytes: max_message_size of the fuzzed controllers
RATE = 6  # messages a connection may send (the bucket does not refill in a test)
MAX_STEPS = 14
SETTLE_SECONDS = 2.0  # how long any step may take before the test calls it a hang
REFUSED = ("refused",)  # closed before accept: a server answers 403
CANCELLED = ("cancelled",)  # the server cancelled the app while the client was there


class Boom(Exception):
    """What the fuzz raises on purpose."""


# -- what a connection does: its plan, its dependencies, its hooks ----------------------


@dataclass
class Act:
    """The message type of the fuzzed controllers."""

    type: Literal["echo", "act"]
    n: int = 0
    do: Literal["echo", "raise", "wsexc", "close", "dep_setup", "dep_teardown", "hold"] = "echo"
    code: int = 1000
    reason: str = ""


@dataclass(frozen=True)
class Script:
    """What one connection's hooks and dependencies will do."""

    connect: str
    code: int
    reason: str
    fail: str | None  # "conn_sync:setup", "conn_async:teardown", ...
    disconnect_raises: bool


@dataclass
class Plan:
    """One connection's script and what it logged; found in `scope["state"]["fuzz"]`."""

    script: Script
    log: list[tuple[str, Any]] = field(default_factory=list)
    release: anyio.Event | None = None
    probe: Probe | None = None

    @property
    def fail(self) -> str | None:
        return self.script.fail

    def step(self, name: str, phase: str) -> None:
        """A dependency sets up or tears down: log it, and raise if planned."""
        if phase == "setup" and self.fail == f"{name}:setup":
            raise Boom(f"{name} setup")
        self.log.append((phase, name))
        if phase == "teardown" and self.fail == f"{name}:teardown":
            raise Boom(f"{name} teardown")

    async def hold(self) -> None:
        """Block the hook until the driver releases it (or cancels the app)."""
        self.release = anyio.Event()
        assert self.probe is not None
        self.probe.park("hold")
        await self.release.wait()

    async def on_connect(self, websocket: WebSocket) -> None:
        kind, code, reason = self.script.connect, self.script.code, self.script.reason
        if kind == "raise":
            raise Boom("on_connect")
        if kind == "wsexc":
            raise WebSocketException(code, reason)
        if kind == "http":
            raise HTTPException(401, "who are you")
        if kind == "close":
            await websocket.close(code, reason)
        if kind == "hold":
            await self.hold()
        if not kind.startswith("accept"):
            return
        await websocket.accept()
        if kind == "accept_raise":
            raise Boom("on_connect after accept")
        if kind == "accept_wsexc":
            raise WebSocketException(code, reason)
        if kind == "accept_close":
            await websocket.close(code, reason)
        if kind == "accept_hold":
            await self.hold()


APP_COUNTS = {"setup": 0, "teardown": 0}


async def app_resource() -> AsyncIterator[str]:
    APP_COUNTS["setup"] += 1
    try:
        yield "app"
    finally:
        APP_COUNTS["teardown"] += 1


def conn_sync(scope: Any) -> Iterator[str]:
    plan: Plan = scope["state"]["fuzz"]
    plan.step("conn_sync", "setup")
    try:
        yield "sync"
    finally:
        plan.step("conn_sync", "teardown")


async def conn_async(
    scope: Any,
    sync: str = Provide(conn_sync),
    app: str = Provide(app_resource, scope="app"),
) -> AsyncIterator[str]:
    plan: Plan = scope["state"]["fuzz"]
    plan.step("conn_async", "setup")
    try:
        yield "async"
    finally:
        plan.step("conn_async", "teardown")


async def per_message(scope: Any, data: Any, conn: str = Provide(conn_async)) -> AsyncIterator[str]:
    plan: Plan = scope["state"]["fuzz"]
    do = data.get("do") if isinstance(data, dict) else data.do
    if do == "dep_setup":
        raise Boom("message dependency setup")
    plan.log.append(("setup", "message"))
    try:
        yield "message"
    finally:
        plan.log.append(("teardown", "message"))
        if do == "dep_teardown":
            raise Boom("message dependency teardown")


async def perform(websocket: WebSocket, plan: Plan, data: Act) -> Any:
    """What a handler does with a valid message."""
    if data.do == "raise":
        raise Boom("handler")
    if data.do == "wsexc":
        raise WebSocketException(data.code, data.reason)
    if data.do == "close":
        await websocket.close(data.code, data.reason)
    if data.do == "hold":
        await plan.hold()
    return {"n": data.n}


class Fuzzed(WebSocketController):
    encoding = "json"
    max_message_size = MAX_SIZE
    rate_limit = RateLimit(messages=RATE, per=3600)

    async def on_connect(
        self, websocket: WebSocket, scope: Any, conn: str = Provide(conn_async)
    ) -> None:
        await scope["state"]["fuzz"].on_connect(websocket)

    async def on_disconnect(
        self, close_code: int, scope: Any, sync: str = Provide(conn_sync)
    ) -> None:
        plan: Plan = scope["state"]["fuzz"]
        plan.log.append(("disconnect", close_code))
        if plan.script.disconnect_raises:
            raise Boom("on_disconnect")


class Routed(Fuzzed):
    """`@on` routes only: an unknown event closes with 1003."""

    @on("echo")
    @on("act")
    async def handle(
        self, data: Act, scope: Any, m: str = Provide(per_message, scope="message")
    ) -> Any:
        return await perform(self.websocket, scope["state"]["fuzz"], data)


class Fallback(Routed):
    """`@on` routes, and `on_receive` for other JSON objects."""

    async def on_receive(
        self, data: dict, scope: Any, m: str = Provide(per_message, scope="message")
    ) -> Any:
        return {"fallback": data.get("type")}


class Single(Fuzzed):
    """No routes: every message is validated into `Act` by `on_receive`."""

    async def on_receive(
        self, data: Act, scope: Any, m: str = Provide(per_message, scope="message")
    ) -> Any:
        return await perform(self.websocket, scope["state"]["fuzz"], data)


class Plain(Fuzzed):
    """No limits, no per-message dependencies: the hot path of the receive loop."""

    max_message_size = None
    rate_limit = None

    async def on_receive(self, data: Act) -> Any:
        return await perform(self.websocket, self.scope["state"]["fuzz"], data)


class Concurrent(Routed):
    """Up to two handlers at once, each in a task of the connection's task group."""

    max_concurrency = 2


CONTROLLERS = {"routed": Routed, "fallback": Fallback, "single": Single, "plain": Plain}
CONTROLLERS["concurrent"] = Concurrent
LIMITED = ("routed", "fallback", "single", "concurrent")
ROUTED_ONLY = ("routed", "concurrent")  # no on_receive: an unknown event closes with 1003


# -- the server side: tether.testing serves each connection; a probe watches the app ------


class Probe:
    """Wraps a controller to watch it from the server's side, changing nothing it does.

    `tether.testing` is the server and the client; the probe only tells the test
    when a step is over: `parked` says where the app waits for the test
    (`"receive"`: in `receive()`; `"hold"`: in a held hook), and `outcome` how
    the call ended (`"returned"`, `"cancelled"`, or the exception that escaped).
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.parked: set[str] = set()
        self.outcome: BaseException | str | None = None
        self.finished = anyio.Event()
        self._changed = anyio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def watched_receive() -> dict:
            self.park("receive")
            try:
                return await receive()
            finally:
                self.parked.discard("receive")
                self._notify()

        try:
            await self.app(scope, watched_receive, send)
            self.outcome = "returned"
        except anyio.get_cancelled_exc_class():
            self.outcome = "cancelled"
            raise
        except BaseException as exc:  # escaped to the server: invariant 5
            self.outcome = exc
            raise
        finally:
            self.finished.set()
            self._notify()

    def park(self, where: str) -> None:
        self.parked.add(where)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def settle(self, *, done: bool, parked: set[str]) -> None:
        """Wait until the app has returned (`done`) or waits for the test at `parked`.

        Waiting must hold over a few checkpoints: a handler task just started
        (`max_concurrency`) runs while the receive loop already waits again.
        """
        with anyio.fail_after(SETTLE_SECONDS):
            if done:
                await self.finished.wait()
                return
            stable = 0
            while stable < 3:
                changed = self._changed
                if self.finished.is_set():
                    return
                if self.parked == parked:
                    stable += 1
                    await anyio.lowlevel.checkpoint()
                else:
                    stable = 0
                    await changed.wait()


# -- the model: what the client should see ---------------------------------------------


@dataclass
class Msg:
    kind: str  # echo, act, invalid, unknown, nonstring, scalar, malformed, bad_utf8, oversized
    binary: bool
    n: int = 0
    do: str = "echo"
    code: int = 1000
    reason: str = ""

    def message(self) -> dict:
        if self.kind == "echo":
            raw = json.dumps({"type": "echo", "n": self.n})
        elif self.kind == "act":
            body = {"type": "act", "n": self.n, "do": self.do, "code": self.code}
            raw = json.dumps({**body, "reason": self.reason})
        elif self.kind == "invalid":
            raw = json.dumps({"type": "act", "n": "not a number"})
        elif self.kind == "unknown":
            raw = json.dumps({"type": "nope", "n": self.n})
        elif self.kind == "nonstring":  # an event key that is not a string (not hashable)
            raw = json.dumps({"type": [self.n], "n": self.n})
        elif self.kind == "scalar":
            raw = json.dumps([self.n, "x"])
        elif self.kind == "malformed":
            raw = '{"type": "echo", "n": '
        elif self.kind == "bad_utf8":
            return {"type": "websocket.receive", "bytes": b'{"type": "\xff\xfe"}'}
        else:  # oversized
            raw = json.dumps({"type": "echo", "n": self.n, "pad": "x" * (MAX_SIZE + self.n)})
        if self.binary:
            return {"type": "websocket.receive", "bytes": raw.encode()}
        return {"type": "websocket.receive", "text": raw}


class Model:
    """What one connection should do, step by step, per the documented contract."""

    def __init__(self, variant: str, plan: Script, denial: bool) -> None:
        self.variant = variant
        self.denial = denial
        self.accepted = False
        self.done = False
        self.blocked: str | None = None  # "connect" or "handler": the receive loop waits
        self.held_reply: Any = None
        self.holding: Any = None  # concurrent: the reply of the handler held in its task
        self.left: int | None = None
        self.view: tuple[Any, ...] | None = None
        self.disconnect: int | None = None
        self.admitted = 0
        self.replies: list[Any] = []
        self.pending: list[Msg] = []
        self._start(plan)

    def _finish(self, view: tuple[Any, ...], code: int | None = None) -> None:
        self.done, self.view, self.blocked, self.holding = True, view, None, None
        self.disconnect = code if self.accepted else None

    def _error_before_accept(self, status: int) -> None:
        self._finish(("denied", status) if self.denial else REFUSED)

    def _closed(self, code: int) -> None:
        if self.left is not None:  # the close cannot reach the client: it has gone
            self._finish(("left", self.left), self.left)
        else:
            self._finish(("closed", code), code)

    def _start(self, plan: Script) -> None:
        kind = plan.connect
        if plan.fail in ("conn_sync:setup", "conn_async:setup") or kind == "raise":
            return self._error_before_accept(500)
        if kind in ("close", "wsexc"):
            return self._finish(REFUSED)
        if kind == "http":
            return self._error_before_accept(401)
        if kind == "hold":
            self.blocked = "connect"
            return
        self.accepted = True
        if kind == "accept_raise":
            self._closed(1011)
        elif kind in ("accept_wsexc", "accept_close"):
            self._closed(plan.code)
        elif kind == "accept_hold":
            self.blocked = "connect"

    def leave(self, code: int) -> None:
        self.left = code if self.accepted else 1006
        if self.blocked is None:
            self._finish(("left", self.left), self.left)

    def cancel(self) -> None:
        if self.left is not None:
            self._finish(("left", self.left), self.left)
        else:
            self._finish(CANCELLED, 1006)

    def parked(self) -> set[str]:
        """Where the app waits for the test once a step is over."""
        if self.blocked is not None:
            return {"hold"}
        return {"receive", "hold"} if self.holding is not None else {"receive"}

    def release(self) -> None:
        if self.holding is not None:  # concurrent: the loop was reading all along
            self.replies.append(self.holding)
            self.holding = None
            return
        if self.blocked == "connect":
            self.blocked = None
            self.accepted = True  # returning from on_connect accepts
        else:
            self.blocked = None
            if self.left is not None:  # sending the reply fails: the client has gone
                return self._finish(("left", self.left), self.left)
            self.replies.append(self.held_reply)
        self._drain()

    def send(self, msg: Msg) -> None:
        if self.blocked is not None:
            self.pending.append(msg)  # read once the hook returns
        else:
            self._handle(msg)
            self._drain()

    def _drain(self) -> None:
        while not self.done and self.blocked is None:
            if self.pending:
                self._handle(self.pending.pop(0))
            elif self.left is not None:
                self._finish(("left", self.left), self.left)
            else:
                break

    def _handle(self, msg: Msg) -> None:
        outcome, value = self._outcome(msg)
        if outcome == "close":
            self._closed(value)
        elif outcome == "hold" and self.variant == "concurrent":
            self.holding = value
        elif outcome == "hold":
            self.blocked, self.held_reply = "handler", value
        elif self.left is not None:
            self._finish(("left", self.left), self.left)
        else:
            self.replies.append(value)

    def _outcome(self, msg: Msg) -> tuple[str, Any]:
        kind, variant = msg.kind, self.variant
        if variant in LIMITED:
            message = msg.message()
            text = message.get("text")
            if len(text.encode() if text is not None else message["bytes"]) > MAX_SIZE:
                return "close", 1009
            if self.admitted >= RATE:
                return "close", 1008
            self.admitted += 1
        if kind in ("malformed", "bad_utf8", "invalid"):
            return "close", 1007
        if kind == "unknown":
            if variant == "fallback":
                return "reply", {"fallback": "nope"}
            return "close", 1003 if variant in ROUTED_ONLY else 1007
        if kind == "nonstring":
            if variant == "fallback":
                return "reply", {"fallback": [msg.n]}
            return "close", 1003 if variant in ROUTED_ONLY else 1007
        if kind == "scalar":
            return "close", 1003 if variant in ROUTED_ONLY else 1007
        if kind in ("echo", "oversized") or msg.do in ("echo", "dep_teardown"):
            return "reply", {"n": msg.n}
        if msg.do == "dep_setup" and variant == "plain":  # no message-scoped dependency
            return "reply", {"n": msg.n}
        if msg.do in ("raise", "dep_setup"):
            return "close", 1011
        if msg.do in ("wsexc", "close"):
            return "close", msg.code
        return "hold", {"n": msg.n}


# -- strategies ----------------------------------------------------------------------------

CLOSE_CODES = st.sampled_from([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013])
CODES = CLOSE_CODES | st.integers(3000, 4999)
LEAVE_CODES = st.sampled_from([1000, 1001, NO_STATUS, 1006]) | st.integers(3000, 4999)
REASONS = st.sampled_from(["", "bye", "é" * 70]) | st.text(max_size=130)
CONNECT_KINDS = [
    "auto", "auto", "accept", "accept", "hold", "accept_hold", "close", "raise",
    "wsexc", "http", "accept_raise", "accept_wsexc", "accept_close",
]  # fmt: skip
FAILS = [None] * 6 + ["conn_sync:setup", "conn_sync:teardown", "conn_async:setup"]
FAILS += ["conn_async:teardown"]
SCRIPTS = st.builds(
    Script,
    connect=st.sampled_from(CONNECT_KINDS),
    code=CODES,
    reason=REASONS,
    fail=st.sampled_from(FAILS),
    disconnect_raises=st.booleans(),
)
MESSAGE_KINDS = ["echo"] * 3 + ["act"] * 4 + ["invalid", "unknown", "nonstring", "scalar"]
MESSAGE_KINDS += ["malformed"]
MESSAGE_KINDS += ["bad_utf8", "oversized"]
DOS = ["echo", "raise", "wsexc", "close", "dep_setup", "dep_teardown", "hold", "hold"]
MESSAGES = st.builds(
    Msg,
    kind=st.sampled_from(MESSAGE_KINDS),
    binary=st.booleans(),
    n=st.integers(0, 1000),
    do=st.sampled_from(DOS),
    code=CODES,
    reason=REASONS,
)


# -- the test ------------------------------------------------------------------------------


class Connection:
    """A session of `tether.testing`, a probe on its app, its model, and the checks."""

    def __init__(self, index: int, variant: str, script: Script, denial: bool) -> None:
        self.name = f"connection {index} ({variant}, {script})"
        self.plan = Plan(script)
        self.probe = Probe(CONTROLLERS[variant])
        self.plan.probe = self.probe
        self.model = Model(variant, script, denial)
        self.denial = denial
        self.ws: WebSocketSession | None = None
        # what the client has seen, read after every step
        self.answer: str | HandshakeRejected | None = None  # "accepted", "dropped", a refusal
        self.replies: list[Any] = []
        self.left: int | None = None
        self.cancelled = False

    async def open(self, stack: AsyncExitStack) -> None:
        """Connect, without waiting for the answer: `on_connect` may be held."""
        self.ws = await stack.enter_async_context(
            connect(
                self.probe,
                "/fuzz",
                state={"fuzz": self.plan},
                extensions=None if self.denial else {},  # None: the denial extension
                timeout=SETTLE_SECONDS,
                wait_for_handshake=False,
            )
        )
        await self.settle()

    async def step(self, action: str, value: Any = None) -> None:
        ws, model, probe = self.ws, self.model, self.probe
        assert ws is not None
        if action == "send":
            if model.holding is not None and value.do == "hold":
                value = replace(value, do="echo")  # one held handler at a time
            model.send(value)
            probe.parked.discard("receive")
            await ws.send(value.message())
        elif action == "leave":
            model.leave(value)
            self.left = value if self.answer == "accepted" else ABNORMAL_CLOSURE
            probe.parked.discard("receive")
            await ws.close(value, wait=False)  # the app may be held: the test waits below
        elif action == "release":
            model.release()
            assert self.plan.release is not None and "hold" in probe.parked
            probe.parked.discard("hold")
            self.plan.release.set()
        elif action == "cancel":
            model.cancel()
            self.cancelled = True
            probe.parked.clear()
            await ws.cancel_app()
        await self.settle()

    async def settle(self) -> None:
        try:
            await self.probe.settle(done=self.model.done, parked=self.model.parked())
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: the app {'did not return' if self.model.done else 'hung'} "
                f"within {SETTLE_SECONDS}s"
            ) from None
        await self.read()
        self.check()

    async def read(self) -> None:
        """Take what has reached the client so far, without waiting (`timeout=0`)."""
        ws = self.ws
        assert ws is not None
        if self.answer is None:
            try:
                await ws.handshake(timeout=0)
                self.answer = "accepted"
            except ReceiveTimeout:
                return  # no answer yet: on_connect is held
            except HandshakeRejected as refused:
                self.answer = refused
            except ServerClosed:
                self.answer = "dropped"  # the server cancelled the app before it answered
        if self.answer != "accepted" or self.left is not None:
            return
        for _ in range(MAX_STEPS * 4):  # at most one reply per message, and the close
            try:
                message = await ws.receive(timeout=0)
            except (ReceiveTimeout, ServerClosed):  # nothing more yet, or already closed
                return
            if message["type"] == "websocket.close":
                return
            payload = message.get("text")
            self.replies.append(json.loads(payload if payload is not None else message["bytes"]))

    def view(self) -> tuple[Any, ...] | None:
        """How the connection ended, as the client saw it (None while open)."""
        assert self.ws is not None
        if isinstance(self.answer, HandshakeRejected):
            if self.answer.close_code is None:
                return ("denied", self.answer.status)
            return REFUSED
        if self.ws.close_code is not None:
            return ("closed", self.ws.close_code)
        if self.left is not None:
            return ("left", self.left)
        if self.cancelled:
            return CANCELLED
        return None

    def check(self) -> None:
        model, where = self.model, self.name
        assert self.ws is not None
        assert (self.answer == "accepted") == model.accepted, f"{where}: answer {self.answer}"
        assert self.replies == model.replies, f"{where}: replies {self.replies}"
        finished = self.probe.finished.is_set()
        assert finished == model.done, f"{where}: finished={finished}"
        disconnects = [code for event, code in self.plan.log if event == "disconnect"]
        view = self.view()
        if model.done:
            assert view == model.view, f"{where}: saw {view}, not {model.view}"
            expected = [] if model.disconnect is None else [model.disconnect]
            assert disconnects == expected, f"{where}: on_disconnect{disconnects} != {expected}"
            reason = self.ws.close_reason or ""
            assert len(reason.encode()) <= 123, f"{where}: reason too long"
            outcome = self.probe.outcome
            assert not isinstance(outcome, BaseException), f"{where}: app raised {outcome!r}"
            assert outcome == "returned" or self.cancelled, f"{where}: app {outcome}"
        else:
            assert view in (None, ("left", self.left)), f"{where}: saw {view}"
            assert not disconnects, f"{where}: on_disconnect ran while the connection was open"

    def check_teardown(self) -> None:
        """Invariant 3: every setup torn down once, newest first, after on_disconnect."""
        open_: list[str] = []
        for event, name in self.plan.log:
            if event == "setup":
                open_.append(name)
            elif event == "teardown":
                assert open_, f"{self.name}: {name} torn down but never set up: {self.plan.log}"
                newest = open_.pop()
                assert newest == name, f"{self.name}: {name} torn down before {newest}"
            else:  # on_disconnect: only connection-scoped values are still set up
                assert "message" not in open_, f"{self.name}: on_disconnect inside a message"
        assert not open_, f"{self.name}: never torn down: {open_} ({self.plan.log})"


class LogRecorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.unexpected: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and not isinstance(exc, Boom):
            self.unexpected.append(f"{record.getMessage()}: {exc!r}")


@dataclass(frozen=True)
class Step:
    """One step of an example, read against the connections open at that point.

    `target` 0 opens a connection (`variant`, `script`, `denial`: whether the
    server supports denial responses); otherwise it picks an open connection,
    and `action` one of the actions that connection allows now.
    """

    target: int
    action: int
    message: Msg
    leave_code: int
    variant: str
    script: Script
    denial: bool


STEPS = st.builds(
    Step,
    target=st.integers(0, 3),
    action=st.integers(0, 6),
    message=MESSAGES,
    leave_code=LEAVE_CODES,
    variant=st.sampled_from(sorted(CONTROLLERS)),
    script=SCRIPTS,
    denial=st.booleans(),
)


async def drive(steps: list[Step], connections: list[Connection], stack: AsyncExitStack) -> None:
    """Run the steps; then close what is still open."""
    for step in steps:
        live = [c for c in connections if not c.model.done]
        can_connect = len(live) < 3 and len(connections) < 5
        if (step.target == 0 or not live) and can_connect:
            connection = Connection(len(connections), step.variant, step.script, step.denial)
            connections.append(connection)
            await connection.open(stack)
            continue
        if not live:
            continue
        connection = live[(step.target - 1) % len(live)]
        model = connection.model
        if model.left is not None:
            actions = ["release", "cancel"]
        elif model.blocked is not None and not model.accepted:
            actions = ["release", "leave", "cancel"]  # no frames before the handshake
        elif model.variant == "concurrent" and model.pending:
            # Two queued messages would race in their handler tasks once on_connect returns.
            actions = ["release", "release", "leave", "cancel"]
        elif model.blocked is not None or model.holding is not None:
            actions = ["send", "send", "release", "release", "leave", "cancel"]
        else:
            actions = ["send", "send", "send", "send", "leave", "cancel"]
        action = actions[step.action % len(actions)]
        value = {"send": step.message, "leave": step.leave_code}.get(action)
        await connection.step(action, value)
    for connection in connections:  # the client goes away from whatever is left open
        if not connection.model.done and connection.model.left is None:
            await connection.step("leave", 1001)
        for _ in range(MAX_STEPS):
            if connection.model.done:
                break
            await connection.step("release")


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(STEPS, min_size=1, max_size=MAX_STEPS))
async def test_random_sessions_keep_the_lifecycle_invariants(steps: list[Step]) -> None:
    recorder = LogRecorder()
    logger = logging.getLogger("tether")
    logger.addHandler(recorder)
    propagate, logger.propagate = logger.propagate, False  # thousands of expected tracebacks
    tasks_before = len(anyio.get_running_tasks())
    app_before = dict(APP_COUNTS)
    connections: list[Connection] = []
    try:
        with anyio.fail_after(30):
            # Leaving each connection waits for its app (SETTLE_SECONDS at most), and
            # raises what escaped the app, a breach of the ASGI protocol, or the hang.
            async with lifespan(), AsyncExitStack() as stack:
                await drive(steps, connections, stack)
    except BaseExceptionGroup as group:  # show a failed check as it is, not in task groups
        inner: BaseException = group
        while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
            inner = inner.exceptions[0]
        raise inner from None
    finally:
        logger.removeHandler(recorder)
        logger.propagate = propagate
    for connection in connections:
        connection.check()
        connection.check_teardown()
    assert len(anyio.get_running_tasks()) == tasks_before, "a task outlived its connection"
    assert APP_COUNTS["setup"] - app_before["setup"] <= 1
    assert APP_COUNTS["setup"] == APP_COUNTS["teardown"], "app scope not torn down at shutdown"
    assert not recorder.unexpected, f"tether logged unexpected errors: {recorder.unexpected}"
