"""Input an attacker chooses, against uvicorn with a real client: each gets its
documented close code or refusal, nothing is logged at ERROR, and a bystander
connection opened before still echoes afterwards.

The apps are in `hostile_app.py`. uvicorn serves them in a thread of this
process, so `caplog` sees the records of tether and uvicorn alike; the
standard library's JSON parser is attacked in a subprocess without msgspec.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import uvicorn
from asgi_server import AsgiServer, free_port
from hostile_app import app
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

pytestmark = [
    pytest.mark.anyio,
    # uvicorn deprecates its legacy `websockets` protocol; these tests still cover it.
    pytest.mark.filterwarnings("ignore:The `websockets` implementation is deprecated"),
]

HERE = Path(__file__).parent
WS_IMPLEMENTATIONS = ["websockets", "websockets-sansio", "wsproto"]
# 100,000 levels of brackets: about 200 KB, far deeper than any parser's stack.
DEEP = "[" * 100_000 + "]" * 100_000
TOO_DEEP = (1007, "malformed JSON: nested too deeply")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # the websockets client is asyncio-only


class ServerThread:
    """uvicorn serving `app` on a free 127.0.0.1 port, from a thread of this process."""

    def __init__(self, ws: str) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, ws=ws, log_config=None, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn {ws}")

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("uvicorn did not start within 15 s")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture(scope="module", params=WS_IMPLEMENTATIONS)
def server(request: pytest.FixtureRequest) -> Iterator[ServerThread]:
    with ServerThread(request.param) as running:
        yield running


@pytest.fixture(autouse=True)
def nothing_logged_at_error(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.INFO)
    yield
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


async def closed_with(ws: ClientConnection) -> tuple[int, str]:
    """Receive until the server closes; return its code and reason."""
    with pytest.raises(ConnectionClosed) as closed:
        for _ in range(8):  # nothing is expected before the close
            await ws.recv()
    assert closed.value.rcvd is not None, "the server sent no close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


@asynccontextmanager
async def bystander(url: str) -> AsyncIterator[None]:
    """A connection to the echo controller, open around the attack, still echoing after it."""
    async with connect(url) as ws:
        await ws.send("before")
        assert await ws.recv() == "before"
        yield
        await ws.send("after")
        assert await ws.recv() == "after"
        await ws.send(b"\x00after")
        assert await ws.recv() == b"\x00after"


async def attack(server: ServerThread, path: str, message: str | bytes) -> tuple[int, str]:
    """Send one message to `path` beside a bystander; return the close it gets."""
    with anyio.fail_after(10):
        async with bystander(server.url("/echo")), connect(server.url(path)) as ws:
            await ws.send(message)
            return await closed_with(ws)


async def answer(server: ServerThread, path: str, message: str | bytes) -> Any:
    """Send one message to `path` beside a bystander; return the JSON reply."""
    with anyio.fail_after(10):
        async with bystander(server.url("/echo")), connect(server.url(path)) as ws:
            await ws.send(message)
            reply = json.loads(await ws.recv())
            await ws.send('{"type": "echo", "then": "still served"}')
            assert json.loads(await ws.recv()) == {"type": "echo", "then": "still served"}
            return reply


# -- JSON nested 100,000 levels deep ------------------------------------------------


@pytest.mark.parametrize(
    ("path", "message"),
    [
        pytest.param("/json", DEEP, id="msgspec"),
        pytest.param("/json", DEEP.encode(), id="msgspec-binary-frame"),
        pytest.param("/struct", f'{{"payload": {DEEP}}}', id="msgspec-struct"),
        pytest.param("/model", f'{{"payload": {DEEP}}}', id="pydantic-model"),
        pytest.param("/routed", f'{{"type": "echo", "x": {DEEP}}}', id="routed"),
        pytest.param("/routed-only", DEEP, id="routed-only"),
    ],
)
async def test_deeply_nested_json_closes_1007(
    server: ServerThread, path: str, message: str | bytes
) -> None:
    assert await attack(server, path, message) == TOO_DEEP


async def test_json_as_deep_as_the_parser_takes_still_echoes(server: ServerThread) -> None:
    with anyio.fail_after(10):
        async with connect(server.url("/json")) as ws:
            await ws.send("[" * 200 + "]" * 200)
            assert await ws.recv() == "[" * 200 + "]" * 200


@pytest.fixture
def stdlib_server() -> Iterator[AsgiServer]:
    """The same apps in a subprocess where msgspec cannot be imported."""
    env = {"TETHER_WITHOUT_MSGSPEC": "1"}
    with AsgiServer("hostile_app:app", app_dir=HERE, env=env, capture=True) as running:
        yield running


async def test_deeply_nested_json_closes_1007_with_the_stdlib_parser(
    stdlib_server: AsgiServer,
) -> None:
    with anyio.fail_after(20):
        async with connect(stdlib_server.url("/decoder")) as ws:
            assert await ws.recv() == "stdlib"
        async with bystander(stdlib_server.url("/echo")):
            for path in ("/json", "/routed", "/routed-only"):
                async with connect(stdlib_server.url(path)) as ws:
                    await ws.send(DEEP)
                    assert await closed_with(ws) == TOO_DEEP, path
    output = stdlib_server.stop()  # what the server logged, once it has exited
    assert "ERROR" not in output and "Traceback" not in output, output


# -- an event key that is not a string ------------------------------------------------

NOT_ROUTABLE = ['{"type": []}', '{"type": {}}', '{"type": 1}', '{"type": null}', "{}", "[1, 2]"]


@pytest.mark.parametrize("message", NOT_ROUTABLE)
async def test_a_message_without_a_string_event_key_goes_to_on_receive(
    server: ServerThread, message: str
) -> None:
    assert await answer(server, "/routed", message) == {"fallback": json.loads(message)}


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ('{"type": []}', "the event key 'type' is not a string"),
        ('{"type": {}}', "the event key 'type' is not a string"),
        ('{"type": 1}', "the event key 'type' is not a string"),
        ('{"type": null}', "the event key 'type' is not a string"),
        ("{}", "the event key 'type' is missing"),
        ("[1, 2]", "expected a JSON object with a 'type' key"),
        ('"echo"', "expected a JSON object with a 'type' key"),
        ('{"type": "jump"}', "unknown event 'jump'"),
    ],
)
async def test_without_on_receive_it_closes_1003_saying_why(
    server: ServerThread, message: str, reason: str
) -> None:
    assert await attack(server, "/routed-only", message) == (1003, reason)


async def test_the_reason_names_a_custom_event_key(server: ServerThread) -> None:
    closed = await attack(server, "/routed-by-action", '{"action": ["echo"]}')
    assert closed == (1003, "the event key 'action' is not a string")


# -- permissions, hooks and dependencies that return an awaitable ---------------------

GUARDED = ["/guarded/decorator", "/guarded/partial", "/guarded/object"]


@pytest.mark.parametrize("path", GUARDED)
@pytest.mark.parametrize("headers", [{"x-api-key": "wrong"}, {}])
async def test_a_permission_returning_an_awaitable_of_false_refuses(
    server: ServerThread, path: str, headers: dict[str, str]
) -> None:
    with anyio.fail_after(10):
        async with bystander(server.url("/echo")):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(server.url(path), additional_headers=headers):
                    pass
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("path", GUARDED)
async def test_a_permission_returning_an_awaitable_of_true_admits(
    server: ServerThread, path: str
) -> None:
    with anyio.fail_after(10):
        async with connect(server.url(path), additional_headers={"x-api-key": "k1"}) as ws:
            await ws.send("in")
            assert await ws.recv() == "in"


async def test_plain_def_hooks_and_dependencies_returning_coroutines_are_awaited(
    server: ServerThread,
) -> None:
    with anyio.fail_after(10):
        async with bystander(server.url("/echo")):
            # on_connect's check ran: without the token, the handshake is refused.
            with pytest.raises(InvalidStatus) as refused:
                async with connect(server.url("/wrapped")):
                    pass
            assert refused.value.response.status_code == 403
            headers = {"x-user": "ada"}
            async with connect(server.url("/wrapped?token=t"), additional_headers=headers) as ws:
                await ws.send("hi")
                assert await ws.recv() == "ada: hi"


# -- origins ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "https://.example.org",
        "https://evil.com/.example.org",
        "https://evil.com?.example.org",
        "https://evil.com#.example.org",
        "https://evil.com\\.example.org",
        "https://user@a.example.org",
        "https://a.example.org:8443",
        "http://a.example.org",
        "null",
    ],
)
async def test_origins_that_only_end_like_an_allowed_one_are_refused(
    server: ServerThread, origin: str
) -> None:
    with anyio.fail_after(10):
        async with bystander(server.url("/echo")):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(server.url("/browsers"), origin=origin):  # type: ignore[arg-type]
                    pass
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("origin", ["https://a.example.org", "https://A.B.Example.ORG"])
async def test_a_subdomain_origin_is_admitted(server: ServerThread, origin: str) -> None:
    with anyio.fail_after(10):
        async with connect(server.url("/browsers"), origin=origin) as ws:  # type: ignore[arg-type]
            await ws.send("in")
            assert await ws.recv() == "in"
