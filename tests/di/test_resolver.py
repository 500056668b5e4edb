"""Dependencies in controllers: kinds, nesting, scopes, caching, overrides, teardown."""

import functools
import logging
import types
from typing import Annotated, Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

import tether
from tether import Provide, Query, WebSocket, WebSocketController, override
from tether.testing import AppClient, ServerClosed, connect

pytestmark = pytest.mark.anyio


# -- kinds of dependencies ----------------------------------------------------------


def sync_function() -> str:
    return "sync"


async def async_function() -> str:
    return "async"


class Greeter:
    def __init__(self, name: str = Query("world")) -> None:
        self.name = name


async def test_functions_coroutines_and_classes() -> None:
    class Kinds(WebSocketController):
        async def on_connect(
            self,
            websocket: WebSocket,
            a: str = Provide(sync_function),
            b: str = Provide(async_function),
            c: Greeter = Provide(Greeter),
        ) -> None:
            await websocket.accept()
            await websocket.send_json([a, b, c.name])

    async with connect(Kinds, "/?name=ada") as ws:
        assert await ws.receive_json() == ["sync", "async", "ada"]


async def test_nested_dependencies_share_one_value_per_connection() -> None:
    calls = []

    def settings(env: str = Query("dev")) -> dict:
        calls.append("settings")
        return {"env": env}

    async def database(config: dict = Provide(settings)) -> str:
        calls.append("database")
        return f"db-{config['env']}"

    async def repository(db: str = Provide(database), config: dict = Provide(settings)) -> str:
        return f"repo({db}, {config['env']})"

    class Nested(WebSocketController):
        async def on_connect(self, repo: str = Provide(repository)) -> None:
            self.repo = repo

        async def on_receive(self, data: str, db: str = Provide(database)) -> str:
            return f"{self.repo} {db}"

    async with connect(Nested, "/?env=prod") as ws:
        await ws.send_text("?")
        assert await ws.receive_text() == "repo(db-prod, prod) db-prod"
    assert calls == ["settings", "database"]


async def test_use_cache_false_resolves_afresh() -> None:
    counter = iter(range(100))

    def ticket() -> int:
        return next(counter)

    class Tickets(WebSocketController):
        async def on_connect(
            self,
            websocket: WebSocket,
            a: int = Provide(ticket),
            b: int = Provide(ticket),
            c: int = Provide(ticket, use_cache=False),
        ) -> None:
            await websocket.accept()
            await websocket.send_json([a, b, c])

    async with connect(Tickets, "/") as ws:
        assert await ws.receive_json() == [0, 0, 1]


# -- scopes -------------------------------------------------------------------------


async def test_scopes_app_connection_and_message() -> None:
    log = []

    def counter(name: str):
        count = 0

        def make():
            nonlocal count
            count += 1
            log.append(f"{name} {count} up")
            yield count
            log.append(f"{name} {count} down")

        make.__qualname__ = name
        return make

    per_app, per_connection, per_message = counter("app"), counter("conn"), counter("msg")

    class Scoped(WebSocketController):
        async def on_receive(
            self,
            data: str,
            a: int = Provide(per_app, scope="app"),
            c: int = Provide(per_connection),
            m: int = Provide(per_message, scope="message"),
        ) -> str:
            log.append(f"handle {data}")
            return f"{a} {c} {m}"

    app = Starlette(routes=[WebSocketRoute("/", Scoped)], lifespan=tether.lifespan)
    async with AppClient(app) as client:
        async with client.connect("/") as ws:
            for text in ("x", "y"):
                await ws.send_text(text)
                await ws.receive_text()
        async with client.connect("/") as ws:
            await ws.send_text("z")
            assert await ws.receive_text() == "1 2 3"
    assert log == [
        "app 1 up",
        "conn 1 up",
        "msg 1 up",
        "handle x",
        "msg 1 down",
        "msg 2 up",
        "handle y",
        "msg 2 down",
        "conn 1 down",
        "conn 2 up",
        "msg 3 up",
        "handle z",
        "msg 3 down",
        "conn 2 down",
        "app 1 down",
    ]


async def test_message_scoped_dependencies_may_read_data() -> None:
    def word_count(data: str) -> int:
        return len(data.split())

    class Counter(WebSocketController):
        async def on_receive(self, n: Annotated[int, Provide(word_count, scope="message")]) -> int:
            return n

    async with connect(Counter, "/") as ws:
        await ws.send_text("one two three")
        assert await ws.receive_text() == "3"


async def test_connection_dependencies_of_every_hook_resolve_before_on_connect() -> None:
    log = []

    def audit() -> str:
        log.append("audit")
        return "audit"

    class Early(WebSocketController):
        async def on_connect(self) -> None:
            log.append("on_connect")

        async def on_disconnect(self, trail: str = Provide(audit)) -> None:
            log.append(f"on_disconnect {trail}")

    async with connect(Early, "/") as ws:
        await ws.close()
    assert log == ["audit", "on_connect", "on_disconnect audit"]


# -- overrides ----------------------------------------------------------------------


def real_db() -> str:
    return "postgres"


async def test_override_swaps_a_dependency_inside_the_block() -> None:
    class UsesDb(WebSocketController):
        async def on_receive(self, data: str, db: str = Provide(real_db)) -> str:
            return db

    with override(real_db, lambda: "fake"):
        async with connect(UsesDb, "/") as ws:
            await ws.send_text("?")
            assert await ws.receive_text() == "fake"
    async with connect(UsesDb, "/") as ws:
        await ws.send_text("?")
        assert await ws.receive_text() == "postgres"


async def test_an_override_may_bring_a_connection_scoped_dependency() -> None:
    log: list[str] = []

    def session():
        log.append("session opened")
        yield "session"
        log.append("session closed")

    def fake_db(s: str = Provide(session)) -> str:
        return f"fake via {s}"

    class PerMessage(WebSocketController):
        async def on_receive(self, data: str, db: str = Provide(real_db, scope="message")) -> str:
            return db

    with override(real_db, fake_db):
        async with connect(PerMessage, "/") as ws:
            await ws.send_text("?")
            assert await ws.receive_text() == "fake via session"
            await ws.send_text("?")
            assert await ws.receive_text() == "fake via session"
    assert log == ["session opened", "session closed"]


# -- teardown on every exit path ----------------------------------------------------


class Teardowns:
    """Two generator dependencies that record setup, errors and teardown."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def first(self):
        log = self.log

        def first():
            log.append("first up")
            try:
                yield "first"
            except Exception as exc:
                log.append(f"first saw {type(exc).__name__}")
                raise
            finally:
                log.append("first down")

        return first

    def second(self, first: Any):
        log = self.log

        async def second(value: str = Provide(first)):
            log.append("second up")
            try:
                yield value + "+second"
            except Exception as exc:
                log.append(f"second saw {type(exc).__name__}")
                raise
            finally:
                log.append("second down")

        return second


class Boom(Exception):
    pass


def teardown_controller(deps: Teardowns, behaviour: str) -> type[WebSocketController]:
    first = deps.first()
    second = deps.second(first)

    class Managed(WebSocketController):
        async def on_receive(self, data: str, value: str = Provide(second)) -> str:
            if data == "raise":
                raise Boom("handler failed")
            if data == "close":
                await self.websocket.close(4000)
                return ""
            if data == "hang":
                deps.log.append("hanging")
                await anyio.sleep_forever()
            return value

        async def on_disconnect(self, close_code: int) -> None:
            deps.log.append(f"on_disconnect {close_code}")

    return Managed


async def test_teardown_after_the_server_closes() -> None:
    deps = Teardowns()
    async with connect(teardown_controller(deps, "close"), "/") as ws:
        await ws.send_text("close")
        with pytest.raises(ServerClosed):
            await ws.receive_text()
    assert deps.log == [
        "first up",
        "second up",
        "on_disconnect 4000",
        "second down",
        "first down",
    ]


async def test_teardown_after_the_client_disconnects() -> None:
    deps = Teardowns()
    async with connect(teardown_controller(deps, "echo"), "/") as ws:
        await ws.send_text("hi")
        assert await ws.receive_text() == "first+second"
        await ws.close(1001)
    assert deps.log == [
        "first up",
        "second up",
        "on_disconnect 1001",
        "second down",
        "first down",
    ]


async def test_a_hook_exception_is_thrown_into_generator_dependencies(
    caplog: pytest.LogCaptureFixture,
) -> None:
    deps = Teardowns()
    caplog.set_level(logging.ERROR, logger="tether")
    async with connect(teardown_controller(deps, "raise"), "/") as ws:
        await ws.send_text("raise")
        with pytest.raises(ServerClosed) as closed:
            await ws.receive_text()
    assert closed.value.code == 1011
    assert deps.log == [
        "first up",
        "second up",
        "on_disconnect 1011",
        "second saw Boom",
        "second down",
        "first saw Boom",
        "first down",
    ]


async def test_message_scoped_teardown_sees_the_handlers_exception() -> None:
    log = []

    def per_message():
        try:
            yield "m"
        except Boom:
            log.append("message dependency saw Boom")
        finally:
            log.append("message dependency down")

    class Fails(WebSocketController):
        async def on_receive(self, data: str, m: str = Provide(per_message, scope="message")):
            raise Boom(data)

        async def on_disconnect(self, close_code: int) -> None:
            log.append(f"on_disconnect {close_code}")

    async with connect(Fails, "/") as ws:
        await ws.send_text("x")
        with pytest.raises(ServerClosed):
            await ws.receive_text()
    assert log == ["message dependency saw Boom", "message dependency down", "on_disconnect 1011"]


async def test_teardown_runs_when_the_connection_is_cancelled() -> None:
    deps = Teardowns()
    app = teardown_controller(deps, "hang")
    to_app, app_inbox = anyio.create_memory_object_stream[dict](10)
    to_test, test_inbox = anyio.create_memory_object_stream[dict](10)
    scope = {"type": "websocket", "path": "/", "query_string": b"", "headers": []}

    async def serve() -> None:
        await app(scope, app_inbox.receive, to_test.send)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            await to_app.send({"type": "websocket.connect"})
            assert (await test_inbox.receive())["type"] == "websocket.accept"
            await to_app.send({"type": "websocket.receive", "text": "hang"})
            for _ in range(200):
                if "hanging" in deps.log:
                    break
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    assert deps.log[:3] == ["first up", "second up", "hanging"]
    assert deps.log[-2:] == ["second down", "first down"]


async def test_teardown_on_server_shutdown() -> None:
    """A server going away reports 1012 to each connection, then shuts the lifespan down."""
    log = []

    async def pool():
        log.append("pool up")
        yield "pool"
        log.append("pool down")

    def session(db: str = Provide(pool, scope="app")):
        log.append("session up")
        yield db
        log.append("session down")

    class Served(WebSocketController):
        async def on_receive(self, data: str, s: str = Provide(session)) -> str:
            return s

        async def on_disconnect(self, close_code: int) -> None:
            log.append(f"on_disconnect {close_code}")

    async with AppClient(Served, lifespan="on") as client, client.connect("/") as ws:
        await ws.send_text("?")
        assert await ws.receive_text() == "pool"
        await ws.close(1012)
    assert log == ["pool up", "session up", "on_disconnect 1012", "session down", "pool down"]


async def test_a_failing_teardown_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = []

    def outer():
        yield "outer"
        log.append("outer down")

    def inner(o: str = Provide(outer)):
        yield o
        raise Boom("teardown failed")

    class Uses(WebSocketController):
        async def on_connect(self, value: str = Provide(inner)) -> None:
            pass

    caplog.set_level(logging.ERROR, logger="tether")
    async with connect(Uses, "/") as ws:
        await ws.close()
    assert log == ["outer down"]
    assert any("inner" in r.getMessage() for r in caplog.records)


class RateCard:
    """A callable instance as a dependency: its `__call__` is what gets resolved."""

    def __init__(self, base: int) -> None:
        self.base = base

    async def __call__(self, factor: int = Query(1)) -> int:
        return self.base * factor


async def test_callable_instances_and_partials_are_dependencies() -> None:
    from functools import partial

    def scaled(value: int, offset: int = Query(0)) -> int:
        return value + offset

    rate = RateCard(10)

    class Priced(WebSocketController):
        async def on_connect(
            self,
            websocket: WebSocket,
            price: int = Provide(rate),
            shifted: int = Provide(partial(scaled, 100)),
        ) -> None:
            await websocket.accept()
            await websocket.send_json([price, shifted])

    async with connect(Priced, "/?factor=3&offset=5") as ws:
        assert await ws.receive_json() == [30, 105]


async def test_connections_never_share_connection_scoped_values() -> None:
    def basket() -> list:
        return []

    class Shop(WebSocketController):
        async def on_receive(self, data: str, items: list = Provide(basket)) -> str:
            items.append(data)
            return ",".join(items)

    async with connect(Shop, "/") as ada, connect(Shop, "/") as bob:
        await ada.send_text("apple")
        assert await ada.receive_text() == "apple"
        await bob.send_text("bread")
        assert await bob.receive_text() == "bread"
        await ada.send_text("cheese")
        assert await ada.receive_text() == "apple,cheese"


# -- plain defs that return an awaitable ---------------------------------------------


def sync_wrapper(func: Any) -> Any:
    """A decorator as people write them: a plain def, whatever it wraps."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


@sync_wrapper
async def user_name() -> str:
    return "ada"


async def replacement() -> str:
    return "grace"


class Ticket:
    """A class dependency whose instances are awaitable: the instance is the value."""

    def __await__(self) -> Any:
        raise AssertionError("a class dependency's instance must not be awaited")
        yield


class Welcomer(WebSocketController):
    encoding = "text"

    async def on_receive(
        self,
        data: str,
        name: str = Provide(user_name),
        per_message: str = Provide(user_name, scope="message", use_cache=False),
        ticket: Ticket = Provide(Ticket),
    ) -> str:
        assert isinstance(ticket, Ticket)
        return f"{data}, {name} and {per_message}"


async def test_a_plain_def_returning_a_coroutine_gives_its_result() -> None:
    async with connect(Welcomer, "/") as ws:
        await ws.send_text("hello")
        assert await ws.receive_text() == "hello, ada and ada"


async def test_so_does_an_overridden_one() -> None:
    with override(user_name, sync_wrapper(replacement)):
        async with connect(Welcomer, "/") as ws:
            await ws.send_text("hello")
            assert await ws.receive_text() == "hello, grace and grace"


@types.coroutine
def legacy_coroutine() -> Any:
    yield from ()  # a generator-based coroutine, as `types.coroutine` makes them
    return "legacy"


def numbers() -> Any:
    yield 1  # a plain generator: a value like any other, never awaited


class Mixed(WebSocketController):
    encoding = "text"

    async def on_receive(
        self,
        data: str,
        legacy: str = Provide(lambda: legacy_coroutine(), scope="message"),
        plain: Any = Provide(lambda: numbers(), scope="message"),
    ) -> str:
        return f"{data} {legacy} {list(plain)}"


async def test_only_generators_that_are_coroutines_are_awaited() -> None:
    async with connect(Mixed, "/") as ws:
        for _ in range(3):  # the same types each time: no cached answer mixes them up
            await ws.send_text("got")
            assert await ws.receive_text() == "got legacy [1]"
