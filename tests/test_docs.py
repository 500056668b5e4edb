"""The documentation's programs run and do what the pages say; the site builds.

Complete programs are written inline in the pages, each in a fenced block
named by the comment on the line before it (`<!-- example: NAME -->`, see
`docs_examples.py`). Each has a test here (see `TESTED`): in process through
`load(NAME)`, or as files saved side by side (`examples_dir`) and run the way
the page says. A test checks that every named example is tested and that no
page still includes a file. Other fenced blocks with a `title="..."` (or
after `<!-- test -->`) are complete programs too, and are executed.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from docs_examples import DOCS, EXAMPLES, ROOT, load, page_examples, pages, write_examples
from esmerald_env import skip_without_esmerald

from tether import ConfigurationError, Provide, WebSocketController, override
from tether.testing import AppClient, HandshakeRejected, ServerClosed, connect

FENCE = re.compile(
    r"(?P<marker><!--\s*(?P<kind>test|example:[^>]*?)\s*-->\s*\n)?"
    r"^(?P<indent>[ \t]*)```(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=indent)```",
    re.MULTILINE | re.DOTALL,
)
INCLUDE = re.compile(r"^\s*-{2}8<-{2}\s", re.MULTILINE)  # pymdownx.snippets' include line
# The worktree's tether (and the repository's packages) in programs run as subprocesses,
# wherever the editable install points.
SUBPROCESS_ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
}


@pytest.fixture(scope="module")
def examples_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every example saved as `NAME.py` in one directory, as a reader would save them."""
    return write_examples(tmp_path_factory.mktemp("docs-examples"))


async def closed_with(ws) -> tuple[int, str]:
    """Receive until the server closes; return its code and reason."""
    with pytest.raises(ServerClosed) as closed:
        while True:
            await ws.receive(timeout=2)
    return closed.value.code, closed.value.reason


async def refused(app, path: str, **options) -> HandshakeRejected:
    with pytest.raises(HandshakeRejected) as rejected:
        async with connect(app, path, **options):
            pass
    return rejected.value


# -- the inventory ----------------------------------------------------------------

TESTED: set[str] = set()


def covers(*names: str):
    """Mark a test as the one that runs these example files."""
    TESTED.update(names)
    return lambda test: test


def test_every_example_is_tested_and_no_page_includes_a_file():
    assert set(EXAMPLES) - TESTED == set(), "examples without a test in tests/test_docs.py"
    assert TESTED - set(EXAMPLES) == set(), "tests of examples no page shows"
    for page in pages():
        # The snippets extension is gone: an include would show as its marker.
        assert not INCLUDE.search(page.read_text()), f"{page.name} includes a file"


def test_a_name_names_the_python_block_right_below_it_and_only_outside_fences(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text(
        'Text.\n\n<!-- example: first -->\n```python title="first.py"\nx = 1\n```\n\n'
        "````markdown\n<!-- example: shown -->\n```python\ny = 2\n```\n````\n\n"
        "!!! note\n\n    <!-- example: nested -->\n    ```python\n    z = 3\n\n    w = 4\n    ```\n"
    )
    assert [(e.name, e.line, e.source) for e in page_examples(page)] == [
        ("first", 5, "x = 1\n"),
        ("nested", 19, "z = 3\n\nw = 4\n"),
    ]
    page.write_text("<!-- example: lost -->\n\n```python\nx = 1\n```\n")
    with pytest.raises(ValueError, match=r"page\.md:1: a name not right above a python fence"):
        page_examples(page)


CONFLICT_MARKER = re.compile(r"^(<{7} |={7}$|>{7} )", re.MULTILINE)


def test_no_page_holds_merge_conflict_markers():
    # They render as text and a heading rule; asyncapi.md once shipped with a set.
    for page in pages():
        assert not CONFLICT_MARKER.search(page.read_text()), f"{page.name}: a merge conflict"


def inline_programs() -> list[tuple[str, str]]:
    found = []
    for page in pages():
        for match in FENCE.finditer(page.read_text()):
            info = match["info"].strip()
            if not info.startswith(("python", "py")):
                continue
            if (match["kind"] or "").startswith("example:"):
                continue  # a named example: its own test runs it
            if not (match["kind"] or "title=" in info):
                continue
            found.append((f"{page.relative_to(DOCS)}:{info}", match["body"]))
    return found


@pytest.mark.parametrize(("where", "source"), inline_programs() or [("none", "")])
def test_inline_programs_run(where: str, source: str):
    exec(compile(source, where, "exec"), {"__name__": "docs_inline"})


# -- index.md / testing.md: the first controller ------------------------------------


@covers("room")
@pytest.mark.anyio
async def test_room():
    room = load("room")
    async with connect(room.app, "/ws/lobby?name=ada") as ws:
        await ws.send_json({"text": "hi"})
        assert await ws.receive_json() == {"from": "ada@lobby", "text": "hi"}
        await ws.send_text("not a Say")
        code, _ = await closed_with(ws)
    assert code == 1007
    async with connect(room.app, "/ws/kitchen") as ws:
        await ws.send_json({"text": "hi"})
        assert await ws.receive_json() == {"from": "guest@kitchen", "text": "hi"}


@covers("test_room")
def test_testing_page_example_passes_under_pytest(examples_dir: Path):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_room.py"],
        cwd=examples_dir,
        env=SUBPROCESS_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed" in result.stdout  # three tests, each on asyncio and on trio


# -- quickstart.md: uvicorn + the client ----------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(target: str, port: int, cwd: Path) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port)],
        cwd=cwd,
        env=SUBPROCESS_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(server.stdout.read().decode())  # type: ignore[union-attr]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise AssertionError(f"uvicorn {target} did not start")


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@covers("app", "client")
def test_quickstart_under_uvicorn(examples_dir: Path):
    port = free_port()
    server = serve("app:app", port, examples_dir)
    try:
        result = subprocess.run(
            [sys.executable, "client.py", f"ws://127.0.0.1:{port}/ws"],
            cwd=examples_dir,
            env=SUBPROCESS_ENV,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        stop(server)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "echo: hello"


@covers("rpc", "rpc_client")
def test_requests_calls_and_the_python_client_under_uvicorn(examples_dir: Path):
    port = free_port()
    env = SUBPROCESS_ENV
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "rpc:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=examples_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        result = subprocess.run(
            [sys.executable, "rpc_client.py", f"ws://127.0.0.1:{port}/ws"],
            cwd=examples_dir, env=env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    finally:
        stop(server)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "tea costs 3",
        "soup: not_found",
        "{'confirmed': True}",
        "{'type': 'ordered', 'item': 'tea'}",
    ]


@covers("app")
@pytest.mark.anyio
async def test_quickstart_binary_frame_closes_1003():
    app = load("app").app
    async with connect(app, "/ws") as ws:
        await ws.send_text("hello")
        assert await ws.receive_text() == "echo: hello"
        await ws.send_bytes(b"hello")
        code, _ = await closed_with(ws)
    assert code == 1003


@covers("bare")
def test_bare_controller_under_uvicorn(examples_dir: Path):
    from websockets.sync.client import connect as ws_connect

    port = free_port()
    server = serve("bare:Echo", port, examples_dir)
    try:
        with ws_connect(f"ws://127.0.0.1:{port}/any/path") as ws:
            ws.send("shout")
            assert ws.recv(timeout=5) == "SHOUT"
        import urllib.request
        from urllib.error import HTTPError

        with pytest.raises(HTTPError) as http:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
        assert http.value.code == 426
    finally:
        stop(server)


# -- controllers.md ---------------------------------------------------------------------


@covers("lifecycle")
@pytest.mark.anyio
async def test_lifecycle(caplog):
    lifecycle = load("lifecycle")
    caplog.set_level(logging.INFO, logger="counter")
    async with connect(lifecycle.app, "/count/ada") as ws:
        assert await ws.receive_json() == {"hello": "ada"}
        await ws.send_json({"a": 1})
        assert await ws.receive_json() == {"n": 1, "echo": {"a": 1}}
        await ws.send_json({"b": 2})
        assert await ws.receive_json() == {"n": 2, "echo": {"b": 2}}
    assert "ada left (1000) after 2 messages" in caplog.text
    async with connect(lifecycle.app, "/count/bob") as ws:  # its own instance
        assert await ws.receive_json() == {"hello": "bob"}
        await ws.send_json({})
        assert (await ws.receive_json())["n"] == 1
    rejected = await refused(lifecycle.app, "/count/nobody")
    assert rejected.status == 403
    assert "nobody left" not in caplog.text


@covers("mount_fastapi", "mount_lilya")
@pytest.mark.anyio
async def test_mounting_in_frameworks():
    fastapi_app = load("mount_fastapi").app
    for path in ("/ws/lobby", "/ws2/lobby"):
        async with connect(fastapi_app, path) as ws:
            await ws.send_text("hi")
            assert await ws.receive_text() == "lobby: hi"
    async with connect(load("mount_lilya").app, "/ws/lobby") as ws:
        await ws.send_text("hi")
        assert await ws.receive_text() == "lobby: hi"


@covers("mount_esmerald")
@pytest.mark.anyio
async def test_mounting_in_esmerald():
    skip_without_esmerald()  # Esmerald cannot share this environment with Ravyn: see .ci/matrix
    async with AppClient(load("mount_esmerald").app) as client:  # Esmerald's lifespan runs
        for path in ("/ws/lobby", "/chat/ws/lobby"):
            async with client.connect(path) as ws:
                await ws.send_text("hi")
                assert await ws.receive_text() == "lobby: hi"


def test_configuration_error_names_class_hook_and_parameter():
    with pytest.raises(ConfigurationError) as error:

        class Chat(WebSocketController):
            async def on_connect(self, data: str): ...

    assert str(error.value) == (
        "Chat.on_connect, parameter 'data': 'data' is not available here; it is passed to "
        "on_receive, @on handlers and message-scoped dependencies only."
    )


# -- parameters.md ------------------------------------------------------------------------

BOARD = "6c7e3a52-0c1e-4f1e-9a59-7f0e3e0c9d11"


@covers("parameters")
@pytest.mark.anyio
async def test_parameters():
    app = load("parameters").app
    path = f"/boards/{BOARD}?token=t&mode=write&tags=1&tags=2"
    async with connect(app, path, headers={"X-Client": "cli"}, cookies={"sid": "abc"}) as ws:
        await ws.send_text("?")
        assert await ws.receive_json() == {
            "board": BOARD,
            "mode": "write",
            "tags": [1, 2],
            "client": "cli",
            "sid": "abc",
        }
    async with connect(app, f"/boards/{BOARD}?token=t") as ws:
        await ws.send_text("?")
        assert await ws.receive_json() == {
            "board": BOARD,
            "mode": "read",
            "tags": [],
            "client": "unknown",
            "sid": None,
        }
    for path, reason in [
        (f"/boards/{BOARD}", "query parameter 'token' is required"),
        ("/boards/42?token=t", "path parameter 'board_id': badly formed hexadecimal UUID string"),
        (
            f"/boards/{BOARD}?token=t&mode=admin",
            "query parameter 'mode': 'admin' is not one of ['read', 'write']",
        ),
    ]:
        rejected = await refused(app, path)
        assert (rejected.status, rejected.close_code, rejected.reason) == (403, 1008, reason)


# -- dependencies.md --------------------------------------------------------------------


@covers("dependencies")
@pytest.mark.anyio
async def test_dependencies():
    deps = load("dependencies")
    async with AppClient(deps.app, raise_app_exceptions=False) as client:
        async with client.connect("/orders?token=user-ada") as ws:
            await ws.send_json({"item": "tea"})
            assert await ws.receive_json() == {"ordered": "tea", "by": "ada"}
            await ws.send_json({})
            code, _ = await closed_with(ws)
        assert code == 1011
        assert deps.events == [
            "pool opened",
            "begin for ada",
            "commit",
            "begin for ada",
            "rollback (ValueError)",
            "disconnected 1011",
        ]
        assert (await refused(deps.app, "/orders")).reason == "query parameter 'token' is required"
    assert deps.events[-1] == "pool closed"

    def fake_customer() -> str:
        return "tester"

    with override(deps.get_customer, fake_customer):
        async with connect(deps.app, "/orders") as ws:
            await ws.send_json({"item": "cake"})
            assert await ws.receive_json() == {"ordered": "cake", "by": "tester"}


def test_scope_mismatch_is_a_configuration_error():
    def get_pool(websocket):
        return object()

    with pytest.raises(ConfigurationError) as error:

        class Chat(WebSocketController):
            async def on_connect(self, pool=Provide(get_pool, scope="app")): ...

    assert "app-scoped dependency" in str(error.value)
    assert "cannot use 'websocket', which lives only per connection" in str(error.value)


def test_use_cache():
    calls = []

    def counter():
        calls.append(1)
        return object()

    class Twice(WebSocketController):
        async def on_connect(self, a=Provide(counter), b=Provide(counter)):
            self.same = a is b

        async def on_receive(self, c=Provide(counter, use_cache=False)):
            return "same" if self.same else "different"

    async def run():
        async with connect(Twice, "/") as ws:
            await ws.send_text("?")
            assert await ws.receive_text() == "same"

    import anyio

    anyio.run(run)
    assert len(calls) == 2  # once shared for a and b, once for c


# -- messages.md ------------------------------------------------------------------------


@covers("typed")
@pytest.mark.anyio
async def test_typed_messages():
    app = load("typed").app
    cases = [
        ("/moves", {"x": 1, "y": 2}, {"to": [1, 2]}),
        ("/joins", {"room": "a"}, "joined a"),
        ("/posts", {"text": "hi"}, {"text": "HI"}),
        ("/points", [{"x": 1, "y": 2}, {"x": 0.5, "y": 0}], 3.5),
    ]
    for path, message, reply in cases:
        async with connect(app, path) as ws:
            await ws.send_json(message)
            got = await ws.receive_text()
            assert (got if isinstance(reply, str) else __import__("json").loads(got)) == reply
    failures = [
        ("/moves", {"x": "a", "y": 2}, "invalid message: Expected `int`, got `str` - at `$.x`"),
        (
            "/posts",
            {"text": "x" * 21},
            "invalid message: text: String should have at most 20 characters",
        ),
        ("/joins", {"room": 1}, None),
        ("/points", [{"x": 1}], None),
    ]
    for path, message, reason in failures:
        async with connect(app, path) as ws:
            await ws.send_json(message)
            code, got = await closed_with(ws)
        assert code == 1007
        assert got == reason if reason else got.startswith("invalid message: ")
    async with connect(app, "/moves") as ws:
        await ws.send_text("{oops")
        code, got = await closed_with(ws)
    assert code == 1007 and got.startswith("malformed JSON: ")


@covers("routing")
@pytest.mark.anyio
async def test_routing():
    app = load("routing").app
    async with connect(app, "/game") as ws:
        for message, reply in [
            ({"type": "move", "x": 1, "y": 2}, {"type": "moved", "to": [1, 2]}),
            ({"type": "ping"}, {"type": "pong"}),
            ({"type": "hello"}, {"type": "welcome"}),
            ({"type": "jump"}, {"type": "error", "detail": "no handler", "got": {"type": "jump"}}),
            (
                {"type": "move"},
                {"type": "error", "detail": "invalid message: Object missing required field `x`"},
            ),
        ]:
            await ws.send_json(message)
            assert await ws.receive_json() == reply
    async with connect(app, "/game") as ws:  # no string event key: on_receive
        await ws.send_text("[1, 2]")
        assert await ws.receive_json() == {"type": "error", "detail": "no handler", "got": [1, 2]}
    for message, reason in [
        ('{"type": "jump"}', "unknown event 'jump'"),
        ('{"text": "hi"}', "the event key 'type' is missing"),
        ('{"type": []}', "the event key 'type' is not a string"),
        ('{"type": {}}', "the event key 'type' is not a string"),
        ('{"type": 1}', "the event key 'type' is not a string"),
        ('{"type": null}', "the event key 'type' is not a string"),
        ("[1, 2]", "expected a JSON object with a 'type' key"),
        ('"hello"', "expected a JSON object with a 'type' key"),
        ("42", "expected a JSON object with a 'type' key"),
        ("[" * 100_000 + "]" * 100_000, "malformed JSON: nested too deeply"),
    ]:
        async with connect(app, "/strict") as ws:
            await ws.send_text(message)
            code = 1007 if message.startswith("[[") else 1003
            assert await closed_with(ws) == (code, reason)


# -- errors.md --------------------------------------------------------------------------


@covers("errors")
@pytest.mark.anyio
async def test_errors():
    errors = load("errors")
    rejected = await refused(errors.app, "/vault")
    assert (rejected.status, rejected.close_code, rejected.reason) == (403, 1008, "bad token")
    async with connect(errors.app, "/vault?token=secret") as ws:
        await ws.send_text("hi")
        assert await ws.receive_text() == "hi"
        await ws.send_text("quit")
        assert await closed_with(ws) == (4000, "bye")
    async with connect(errors.app, "/vault?token=secret") as ws:
        await ws.send_text("divide")
        assert await closed_with(ws) == (4500, "ZeroDivisionError")
    async with connect(errors.app, "/vault?token=secret") as ws:
        await ws.send_bytes(b"x")
        assert await closed_with(ws) == (1003, "expected a text frame")
    assert errors.closed_with == [4000, 4500, 1003]


# -- guards.md ----------------------------------------------------------------------------

API_KEY = {"x-api-key": "k1"}


@covers("guards")
@pytest.mark.anyio
async def test_guards():
    app = load("guards").app

    async def subprotocol_of(**options) -> str | None:
        async with connect(app, "/feed", **options) as ws:
            await ws.send_text("hi")
            assert (await ws.receive_text()).endswith(": hi")
            return ws.subprotocol

    assert await subprotocol_of(headers=API_KEY) is None
    origin = {**API_KEY, "origin": "https://a.example.org"}
    assert await subprotocol_of(headers=origin, subprotocols=["feed.v1", "feed.v2"]) == "feed.v2"
    for options in [
        {"headers": {**API_KEY, "origin": "https://evil.org"}},
        {"headers": {**API_KEY, "origin": "https://example.org"}},
        {"headers": API_KEY, "subprotocols": ["other"]},
    ]:
        assert (await refused(app, "/feed", **options)).status == 403
    rejected = await refused(app, "/feed")
    assert (rejected.status, rejected.reason) == (403, "permission denied: has_api_key")
    rejected = await refused(app, "/feed", headers={**API_KEY, "x-user": "mallory"})
    assert (rejected.status, rejected.text) == (429, "slow down")

    async with connect(app, "/feed", headers=API_KEY) as ws:
        await ws.send_text("x" * 2000)
        assert await closed_with(ws) == (1009, "message too big")
    async with connect(app, "/feed", headers=API_KEY) as ws:
        for _ in range(5):
            await ws.send_text("m")
            await ws.receive_text()
        await ws.send_text("m")
        assert await closed_with(ws) == (1008, "rate limit exceeded")


@pytest.mark.anyio
async def test_idle_timeout_closes_1001():
    class Quiet(WebSocketController):
        idle_timeout = 0.2

    async with connect(Quiet, "/") as ws:
        assert await closed_with(ws) == (1001, "idle timeout")


# -- groups.md ------------------------------------------------------------------------------


@covers("broker")
def test_broker_example(examples_dir: Path):
    result = subprocess.run(
        [sys.executable, "broker.py"],
        cwd=examples_dir, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "{'type': 'websocket.send', 'text': '{\"text\":\"héllo\"}'}",
        "{'type': 'websocket.send', 'bytes': b'\\x00\\x01'}",
    ]


@covers("presence")
@pytest.mark.anyio
async def test_presence_in_controllers():
    presence = load("presence")
    app, broker = presence.app, presence.Room.broker
    async with connect(app, "/ws/lobby?name=ada") as ada:
        ada_joins = {"ada": [{"device": "web"}]}
        first = [await ada.receive_json() for _ in range(2)]  # the snapshot and ada's own join
        assert {"type": "present", "who": ada_joins} in first
        assert {"event": "presence_diff", "group": "room:lobby", "joins": ada_joins,
                "leaves": {}} in first  # fmt: skip
        async with connect(app, "/ws/lobby?name=bob") as bob:
            bob_joins = {"bob": [{"device": "web"}]}
            assert await ada.receive_json() == {
                "event": "presence_diff", "group": "room:lobby", "joins": bob_joins, "leaves": {}
            }  # fmt: skip
            frames = [await bob.receive_json() for _ in range(2)]
            assert {"type": "present", "who": {**ada_joins, **bob_joins}} in frames
            await bob.send_text("how many?")
            assert await bob.receive_json() == {"type": "count", "users": 2}
        assert await ada.receive_json() == {
            "event": "presence_diff", "group": "room:lobby", "joins": {}, "leaves": bob_joins
        }  # fmt: skip
    assert await broker.presence("room:lobby") == {}


@covers("groups")
@pytest.mark.anyio
async def test_groups_in_controllers():
    import httpx

    groups = load("groups")
    app, broker = groups.app, groups.Room.broker
    async with connect(app, "/ws/lobby?name=ada") as ada:
        async with connect(app, "/ws/lobby?name=bob") as bob:
            assert await ada.receive_json() == {"type": "joined", "name": "bob"}
            await bob.receive_nothing(within=0.05)  # exclude_self: bob is not told
            await ada.send_json({"type": "say", "text": "hi"})
            said = {"type": "said", "name": "ada", "text": "hi"}
            assert await ada.receive_json() == said
            assert await bob.receive_json() == said

            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                sent = await http.post("/rooms/lobby/announce", content="closing soon")
            assert sent.text == "sent"
            announcement = {"type": "announcement", "text": "closing soon"}
            assert await ada.receive_json() == announcement
            assert await bob.receive_json() == announcement

            await bob.send_json({"type": "mute"})
            assert await bob.receive_json() == {"type": "muted"}
            await ada.send_json({"type": "say", "text": "still there?"})
            assert (await ada.receive_json())["text"] == "still there?"
            await bob.receive_nothing(within=0.1)
        assert await ada.receive_json() == {"type": "left", "name": "bob"}
        assert len(broker.members("room:lobby")) == 1
    assert broker.groups() == []  # membership ends with the connection
    with pytest.raises(HandshakeRejected):
        async with connect(app, "/ws/lobby"):  # no ?name=
            pass


@pytest.mark.anyio
async def test_groups_outbound_policy_close_sends_1013():
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute

    groups = load("groups")

    class Tiny(groups.Room):
        outbound_maxsize = 2

    app = Starlette(routes=[WebSocketRoute("/ws/{room}", Tiny)])
    async with connect(app, "/ws/x?name=slow") as ws:
        for n in range(10):  # in one go, before the connection's sender runs
            await Tiny.broker.publish("room:x", n)
        assert await closed_with(ws) == (1013, "outbound queue full")
    assert Tiny.broker.groups() == []


# -- delivery.md ------------------------------------------------------------------------------


@covers("durable")
@pytest.mark.anyio
async def test_durable_rooms_recover_what_a_client_missed():
    app = load("durable").app
    async with connect(app, "/ws/lobby") as ada:
        welcome = await ada.receive_json()
        assert (welcome["recovered"], welcome["reason"]) == (False, "new")
        await ada.send_json({"text": "hi"})
        hi = await ada.receive_json()
        assert hi == {
            "group": "room:lobby",
            "offset": 1,
            "epoch": hi["epoch"],
            "data": {"text": "hi"},
        }
    async with connect(app, "/ws/lobby") as bob:
        await bob.receive_json()
        for text in ("are", "you there?"):  # while ada is away
            await bob.send_json({"text": text})
            await bob.receive_json()
    async with connect(app, f"/ws/lobby?since={hi['epoch']}:{hi['offset']}") as ada:
        frames = [await ada.receive_json() for _ in range(3)]
        [welcome] = [f for f in frames if f.get("type") == "welcome"]
        assert (welcome["recovered"], welcome["position"]) == (True, f"{hi['epoch']}:3")
        assert [f["data"]["text"] for f in frames if "data" in f] == ["are", "you there?"]
    async with connect(app, "/ws/lobby?since=not-a-position") as eve:
        welcome = await eve.receive_json()
        assert (welcome["recovered"], welcome["reason"]) == (False, "malformed")


# -- asyncapi.md ------------------------------------------------------------------------------


@covers("asyncapi_app")
def test_asyncapi():
    from starlette.testclient import TestClient

    example = load("asyncapi_app")
    document = example.document
    assert document["asyncapi"] == "3.0.0"
    channel = document["channels"]["Chat"]
    assert channel["address"] == "/ws/{room}"
    assert channel["description"] == "A chat room."
    assert "room" in channel["parameters"]
    assert channel["bindings"]["ws"]["query"]["properties"]["name"] == {
        "type": "string",
        "default": "guest",
    }
    say = document["operations"]["Chat.say"]
    assert say["action"] == "receive"
    assert say["description"] == "Say something to the room."
    assert say["reply"]["messages"] == [{"$ref": "#/channels/Chat/messages/Said"}]
    sent = document["operations"]["Chat.send"]
    assert sent["action"] == "send"
    sent_names = {m["$ref"].rsplit("/", 1)[-1] for m in sent["messages"]}
    assert sent_names == {"Said", "Joined", "reply", "errorReply"}  # replies to requests too
    assert set(document["components"]["schemas"]) == {"Say", "Said", "Joined"}
    with TestClient(example.app) as client:
        assert client.get("/asyncapi.json").json() == document
        page = client.get("/asyncapi")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")


@covers("asyncapi_groups")
@pytest.mark.anyio
async def test_asyncapi_groups():
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute

    example = load("asyncapi_groups")
    document = example.document
    messages = document["components"]["messages"]
    envelope = messages["group.board"]["payload"]
    assert envelope["properties"]["group"] == {"type": "string", "pattern": "^board:"}
    assert envelope["properties"]["data"] == {"$ref": "#/components/schemas/Posted"}
    assert envelope["required"] == ["group", "offset", "epoch", "data"]
    diff = messages["presence_diff.board"]["payload"]
    assert diff["required"] == ["event", "group", "joins", "leaves"]
    assert messages["Headline"]["payload"] == {"$ref": "#/components/schemas/Headline"}
    # What a member receives is what the document says: the diff, then the envelope.
    app = Starlette(routes=[WebSocketRoute("/boards/{board}", example.Board)])
    async with connect(app, "/boards/chess") as ws:
        joined = await ws.receive_json()
        assert set(joined) == set(diff["required"]) and joined["event"] == "presence_diff"
        await example.Board.broker.publish("board:chess", {"nick": "ada", "text": "e4"})
        posted = await ws.receive_json()
        assert list(posted) == envelope["required"] and posted["group"] == "board:chess"
        await example.Board.broker.publish("news", {"title": "Fischer wins"})
        assert await ws.receive_json() == {"title": "Fischer wins"}  # bare: no history


# -- the site -----------------------------------------------------------------------------


def test_mkdocs_build_strict(tmp_path: Path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    assert (tmp_path / "site" / "index.html").is_file()
    # The controller's class attributes render as a table, one row each, not one paragraph.
    reference = (tmp_path / "site" / "reference" / "tether" / "index.html").read_text()
    attributes = reference[reference.index("Attributes:") :]
    attributes = attributes[: attributes.index("</table>")]
    for name in ("encoding", "allowed_origins", "max_concurrency", "outbound_policy"):
        assert re.search(rf"<tr[^>]*>\s*<td><code>(<span[^>]*>)?{name}<", attributes), name


# -- metrics.md: metrics on, and a scrape ------------------------------------------------


@covers("metrics")
@pytest.mark.anyio
async def test_metrics_example():
    import httpx

    example = load("metrics")
    async with connect(example.app, "/ws/lobby") as ada:
        await ada.send_json({"text": "hi"})
        assert await ada.receive_json() == {"text": "hi"}
        transport = httpx.ASGITransport(app=example.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            scraped = (await client.get("/metrics")).text
    assert 'tether_connections_open{controller="Chat"} 1.0' in scraped
    assert 'tether_messages_received_total{controller="Chat"} 1.0' in scraped
    assert 'tether_messages_sent_total{controller="Chat"} 1.0' in scraped
    assert 'tether_group_members{broker="MemoryBroker"} 1.0' in scraped
    registry = example.registry
    assert registry.get_sample_value("tether_closes_total", {"controller": "Chat", "code": "1000"})
