"""Requests with ids, replies, error replies and `self.call`, in process."""

from __future__ import annotations

import dataclasses
import logging

import anyio
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether import (
    CallClosed,
    CallError,
    CallTimeout,
    ConfigurationError,
    RequestError,
    WebSocketController,
    on,
)
from tether.testing import ServerClosed, connect

pytestmark = pytest.mark.anyio


@dataclasses.dataclass
class Add:
    type: str
    a: int
    b: int


class Calculator(WebSocketController):
    @on("add")
    async def add(self, data: Add) -> int:
        return data.a + data.b

    @on("quiet")
    async def quiet(self, data: dict) -> None:
        return None

    @on("find")
    async def find(self, data: dict) -> dict:
        raise RequestError("not_found", f"no room {data['room']!r}", {"room": data["room"]})

    @on("boom")
    async def boom(self, data: dict) -> None:
        raise ValueError("boom")


class Forgiving(Calculator):
    reply_errors = True


async def test_a_request_gets_its_return_value_back_with_its_id() -> None:
    async with connect(Calculator, "/") as ws:
        await ws.send_json({"type": "add", "ref": 7, "a": 1, "b": 2})
        assert await ws.receive_json() == {"ref": 7, "ok": True, "data": 3}
        await ws.send_json({"type": "add", "ref": "x-1", "a": 2, "b": 2})
        assert await ws.receive_json() == {"ref": "x-1", "ok": True, "data": 4}


async def test_a_request_whose_handler_returns_none_still_gets_a_reply() -> None:
    async with connect(Calculator, "/") as ws:
        await ws.send_json({"type": "quiet", "ref": 1})
        assert await ws.receive_json() == {"ref": 1, "ok": True, "data": None}


async def test_a_message_without_an_id_is_answered_as_before() -> None:
    async with connect(Calculator, "/") as ws:
        await ws.send_json({"type": "add", "a": 1, "b": 2})
        assert await ws.receive_json() == 3
        await ws.send_json({"type": "quiet"})
        await ws.receive_nothing(within=0.05)


async def test_request_error_answers_the_request_and_keeps_the_connection() -> None:
    async with connect(Calculator, "/") as ws:
        await ws.send_json({"type": "find", "ref": 2, "room": "attic"})
        assert await ws.receive_json() == {
            "ref": 2,
            "ok": False,
            "error": {"code": "not_found", "message": "no room 'attic'", "data": {"room": "attic"}},
        }
        await ws.send_json({"type": "add", "ref": 3, "a": 1, "b": 1})
        assert await ws.receive_json() == {"ref": 3, "ok": True, "data": 2}


async def test_without_reply_errors_other_failures_close_as_before() -> None:
    async with connect(Calculator, "/") as ws:
        await ws.send_json({"type": "boom", "ref": 1})
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_json()
        assert closed.value.code == 1011
    async with connect(Calculator, "/") as ws:
        await ws.send_json({"type": "nope", "ref": 1})
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_json()
        assert closed.value.code == 1003
    async with connect(Calculator, "/") as ws:
        await ws.send_json({"type": "add", "ref": 1, "a": "one", "b": 2})
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_json()
        assert closed.value.code == 1007


async def test_with_reply_errors_failures_answer_the_request_and_stay_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with connect(Forgiving, "/") as ws:
        await ws.send_json({"type": "boom", "ref": 1})
        assert await ws.receive_json() == {
            "ref": 1,
            "ok": False,
            "error": {"code": "internal_error", "message": "internal error"},
        }
        await ws.send_json({"type": "nope", "ref": 2})
        reply = await ws.receive_json()
        assert (reply["ref"], reply["ok"], reply["error"]["code"]) == (2, False, "unknown_event")
        await ws.send_json({"type": "add", "ref": 3, "a": "one", "b": 2})
        reply = await ws.receive_json()
        assert (reply["ref"], reply["ok"], reply["error"]["code"]) == (3, False, "invalid_data")
        await ws.send_json({"type": "add", "ref": 4, "a": 1, "b": 2})
        assert await ws.receive_json() == {"ref": 4, "ok": True, "data": 3}
    assert "Forgiving: Forgiving.boom raised ValueError" in caplog.text


async def test_a_malformed_id_is_answered_with_bad_request_and_the_connection_stays() -> None:
    async with connect(Calculator, "/") as ws:
        for bad in ([1], 1.5, True, None, {"n": 1}):
            await ws.send_json({"type": "add", "ref": bad, "a": 1, "b": 2})
            reply = await ws.receive_json()
            assert (reply["ref"], reply["error"]["code"]) == (None, "bad_request")
        await ws.send_json({"type": "add", "ref": 9, "a": 1, "b": 2})
        assert await ws.receive_json() == {"ref": 9, "ok": True, "data": 3}


class Slow(WebSocketController):
    max_concurrency = 8

    @on("wait")
    async def wait(self, data: dict) -> str:
        await self.gates[data["gate"]].wait()
        return data["gate"]

    gates: dict[str, anyio.Event]


async def test_a_duplicate_id_in_flight_is_refused_and_the_first_still_answers() -> None:
    Slow.gates = {"a": anyio.Event(), "b": anyio.Event()}
    async with connect(Slow, "/") as ws:
        await ws.send_json({"type": "wait", "ref": 1, "gate": "a"})
        await ws.send_json({"type": "wait", "ref": 1, "gate": "b"})
        reply = await ws.receive_json()
        assert (reply["ref"], reply["error"]["code"]) == (1, "duplicate_id")
        Slow.gates["a"].set()
        assert await ws.receive_json() == {"ref": 1, "ok": True, "data": "a"}
        # Once answered, an id may be used again.
        Slow.gates["b"].set()
        await ws.send_json({"type": "wait", "ref": 1, "gate": "b"})
        assert await ws.receive_json() == {"ref": 1, "ok": True, "data": "b"}


class Asker(WebSocketController):
    max_concurrency = 4
    reply_errors = True

    @on("ask")
    async def ask(self, data: dict) -> dict:
        try:
            answer = await self.call("confirm", {"q": data["q"]}, timeout=data.get("timeout", 5))
        except CallTimeout as exc:
            return {"timeout": str(exc), "event": exc.event}
        except CallError as exc:
            return {"error": exc.code, "message": exc.message}
        return {"answer": answer}


async def test_call_sends_a_request_and_returns_the_clients_reply() -> None:
    async with connect(Asker, "/") as ws:
        await ws.send_json({"type": "ask", "ref": 1, "q": "sure?"})
        request = await ws.receive_json()
        assert request == {"type": "confirm", "call": 1, "data": {"q": "sure?"}}
        await ws.send_json({"call": request["call"], "ok": True, "data": "yes"})
        assert await ws.receive_json() == {"ref": 1, "ok": True, "data": {"answer": "yes"}}


async def test_call_raises_call_error_when_the_client_answers_an_error() -> None:
    async with connect(Asker, "/") as ws:
        await ws.send_json({"type": "ask", "ref": 1, "q": "sure?"})
        request = await ws.receive_json()
        await ws.send_json(
            {"call": request["call"], "ok": False, "error": {"code": "no", "message": "never"}}
        )
        reply = await ws.receive_json()
        assert reply["data"] == {"error": "no", "message": "never"}


async def test_a_call_that_times_out_names_its_event_and_a_late_reply_is_dropped() -> None:
    async with connect(Asker, "/") as ws:
        await ws.send_json({"type": "ask", "ref": 1, "q": "sure?", "timeout": 0.05})
        request = await ws.receive_json()
        reply = await ws.receive_json()
        assert reply["data"] == {"timeout": "call 'confirm' got no reply within 0.05s",
                                 "event": "confirm"}  # fmt: skip
        # The late reply, and one to an id never used, are dropped; the connection goes on.
        await ws.send_json({"call": request["call"], "ok": True, "data": "late"})
        await ws.send_json({"call": 999, "ok": True, "data": "stray"})
        await ws.receive_nothing(within=0.05)
        await ws.send_json({"type": "ask", "ref": 2, "q": "again?"})
        request = await ws.receive_json()
        assert request["call"] == 2  # the server's calls count on, apart from request ids
        await ws.send_json({"call": 2, "ok": True, "data": "ok"})
        assert await ws.receive_json() == {"ref": 2, "ok": True, "data": {"answer": "ok"}}


async def test_calls_from_every_slot_still_get_their_replies() -> None:
    async with connect(Asker, "/") as ws:
        for n in range(Asker.max_concurrency):
            await ws.send_json({"type": "ask", "ref": n, "q": n})
        requests = [await ws.receive_json() for _ in range(Asker.max_concurrency)]
        for request in reversed(requests):
            await ws.send_json({"call": request["call"], "ok": True, "data": request["data"]["q"]})
        replies = [await ws.receive_json() for _ in range(Asker.max_concurrency)]
        assert sorted((r["ref"], r["data"]["answer"]) for r in replies) == [
            (n, n) for n in range(4)
        ]


class Unready(WebSocketController):
    @on("ask")
    async def ask(self, data: dict) -> str:
        try:
            await self.call("confirm")
        except RuntimeError as exc:
            return str(exc)
        return "called"


async def test_call_without_concurrent_handlers_says_what_it_needs() -> None:
    async with connect(Unready, "/") as ws:
        await ws.send_json({"type": "ask"})
        assert "needs @on routes and max_concurrency >= 2" in await ws.receive_text()


class Waiting(WebSocketController):
    max_concurrency = 2
    outcome: list[str]

    @on("ask")
    async def ask(self, data: dict) -> None:
        try:
            await self.call("confirm", timeout=30)
        except ConnectionError as exc:
            self.outcome.append(str(exc))
            raise

    async def on_disconnect(self, close_code: int) -> None:
        self.outcome.append(f"disconnect {close_code}")


class Closer(Waiting):
    @on("bye")
    async def bye(self, data: dict) -> None:
        await self.websocket.close(4000, "bye")


def tether_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the `tether` logger said at ERROR or above."""
    records = caplog.records
    return [r.getMessage() for r in records if r.name == "tether" and r.levelno >= logging.ERROR]


async def test_a_call_pending_when_the_app_closes_fails_with_connection_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    Closer.outcome = []
    async with connect(Closer, "/") as ws:
        await ws.send_json({"type": "ask"})
        await ws.receive_json()
        await ws.send_json({"type": "bye"})
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_json()
        assert (closed.value.code, closed.value.reason) == (4000, "bye")
    # Re-raised, the call's error ends the handler like a disconnect: no ERROR traceback.
    assert Closer.outcome == ["call 'confirm': the connection closed", "disconnect 4000"]
    assert tether_errors(caplog) == []


async def test_a_call_pending_when_the_client_closes_ends_like_a_disconnect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    Waiting.outcome = []
    async with connect(Waiting, "/") as ws:
        await ws.send_json({"type": "ask"})
        await ws.receive_json()
        await ws.close(4001, "gone")
    assert Waiting.outcome == ["call 'confirm': the connection closed", "disconnect 4001"]
    assert tether_errors(caplog) == []


class WaitingWithErrorReplies(Waiting):
    reply_errors = True


async def test_a_pending_request_whose_call_fails_on_close_logs_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # With reply_errors, a handler that raises is logged and answered `internal_error`;
    # a call that failed because the connection closed is neither: there is nobody to answer.
    WaitingWithErrorReplies.outcome = []
    async with connect(WaitingWithErrorReplies, "/") as ws:
        await ws.send_json({"type": "ask", "ref": 1})
        await ws.receive_json()
        await ws.close(1001)
    assert WaitingWithErrorReplies.outcome == [
        "call 'confirm': the connection closed",
        "disconnect 1001",
    ]
    assert tether_errors(caplog) == []


class LateCaller(WebSocketController):
    max_concurrency = 2
    outcome: list[str]

    @on("bye")
    async def bye(self, data: dict) -> None:
        await self.websocket.close(4000)
        try:
            await self.call("confirm")
        except CallClosed as exc:
            self.outcome.append(f"{type(exc).__name__}: {exc}")
            raise ConnectionRefusedError("the database went away too") from None

    async def on_disconnect(self, close_code: int) -> None:
        self.outcome.append(f"disconnect {close_code}")


async def test_call_after_close_raises_call_closed_and_other_connection_errors_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    LateCaller.outcome = []
    async with connect(LateCaller, "/") as ws:
        await ws.send_json({"type": "bye"})
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_json()
        assert closed.value.code == 4000
    assert LateCaller.outcome == [
        "CallClosed: call 'confirm': the connection is closed",
        "disconnect 4000",
    ]
    # Only a call's own CallClosed is taken for a disconnect: any other error is the app's.
    assert tether_errors(caplog) == ["LateCaller: unhandled ConnectionRefusedError"]


def slow_close(app: ASGIApp) -> ASGIApp:
    """A server whose send of the close frame takes a while (a closing handshake).

    Its receive reports the disconnect as soon as the close is under way, as
    uvicorn's does once the client's close frame is in: the receive loop ends,
    the pending call fails, and the handler that closes is still sending.
    """

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        closing = anyio.Event()

        async def receive_or_closing() -> Message:
            async with anyio.create_task_group() as tasks:
                message: Message = {"type": "websocket.disconnect", "code": 1000}

                async def read() -> None:
                    nonlocal message
                    message = await receive()
                    tasks.cancel_scope.cancel()

                async def closed() -> None:
                    await closing.wait()
                    tasks.cancel_scope.cancel()

                tasks.start_soon(read)
                tasks.start_soon(closed)
            return message

        async def send_slowly(message: Message) -> None:
            if message["type"] == "websocket.close":
                closing.set()
                await anyio.sleep(0.05)  # the handshake's round trip: others run meanwhile
            await send(message)

        await app(scope, receive_or_closing, send_slowly)

    return serve


async def test_a_close_under_way_reaches_the_client_though_a_pending_call_fails() -> None:
    # The handler awaiting `call` fails (ConnectionError) while `bye` is still sending
    # its close; the task group's cancellation must not stop the close frame (the
    # server would then close with its own 1000 once the app returned).
    Closer.outcome = []
    async with connect(slow_close(Closer), "/", timeout=2) as ws:
        await ws.send_json({"type": "ask"})
        await ws.receive_json()
        await ws.send_json({"type": "bye"})
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_json()
        assert (closed.value.code, closed.value.reason) == (4000, "bye")
    assert Closer.outcome == ["call 'confirm': the connection closed", "disconnect 4000"]


class Todo(WebSocketController):
    @on("done")
    async def done(self, data: dict) -> dict:
        return {"type": "updated", "id": data["id"]}


async def test_an_id_of_the_applications_own_is_not_a_request() -> None:
    async with connect(Todo, "/") as ws:
        await ws.send_json({"type": "done", "id": 1})
        assert await ws.receive_json() == {"type": "updated", "id": 1}


def test_request_key_is_checked_when_the_class_is_defined() -> None:
    with pytest.raises(ConfigurationError, match=r"Clash\.request_key"):

        class Clash(WebSocketController):
            request_key = "type"

    class NoRequests(Calculator):
        request_key = None

    assert NoRequests.request_key is None
