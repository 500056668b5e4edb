"""`tether.di` on its own: compile a callable once, then resolve it with a `Context`."""

import pytest
from starlette.websockets import WebSocket

from tether.di import (
    Context,
    Header,
    ParameterError,
    Provide,
    Query,
    ScopeState,
    compile_dependency,
    override,
    solve,
)

pytestmark = pytest.mark.anyio


def make_websocket(query: bytes = b"", headers: list | None = None) -> WebSocket:
    scope = {"type": "websocket", "path": "/", "query_string": query, "headers": headers or []}

    async def never() -> dict:
        raise AssertionError("not used")

    return WebSocket(scope, never, never)


def settings(region: str = Query("eu"), x_tenant: str = Header("public")) -> dict:
    return {"region": region, "tenant": x_tenant}


async def open_client(config: dict = Provide(settings)):
    client = {"config": config, "open": True}
    yield client
    client["open"] = False


def handler(client: dict = Provide(open_client), page: int = Query(1)) -> None: ...


async def test_compile_once_then_solve_with_a_context() -> None:
    plan = compile_dependency(handler)
    assert compile_dependency(handler) is plan  # compiled once, reused
    assert [p.name for p in plan.params] == ["client", "page"]

    connection = ScopeState()
    ctx = Context(make_websocket(b"page=3&region=us", [(b"x-tenant", b"acme")]), connection)
    values = await solve(plan.params, ctx)
    assert values["page"] == 3
    client = values["client"]
    assert client == {"config": {"region": "us", "tenant": "acme"}, "open": True}

    again = await solve(plan.params, ctx)
    assert again["client"] is client  # cached in the connection scope

    await connection.aclose()
    assert client["open"] is False


async def test_a_missing_value_raises_parameter_error_naming_it() -> None:
    def needs_token(token: str = Query()) -> str:
        return token

    plan = compile_dependency(needs_token)
    with pytest.raises(ParameterError, match="query parameter 'token' is required"):
        await solve(plan.params, Context(make_websocket(), ScopeState()))


async def test_an_exception_passed_to_aclose_reaches_the_generator() -> None:
    seen = []

    def resource():
        try:
            yield "r"
        except KeyError as exc:
            seen.append(exc)

    def user(r: str = Provide(resource)) -> str:
        return r

    state = ScopeState()
    values = await solve(compile_dependency(user).params, Context(make_websocket(), state))
    assert values == {"r": "r"}
    error = KeyError("boom")
    await state.aclose(error)
    assert seen == [error]


async def test_override_standalone() -> None:
    def real() -> str:
        return "real"

    def consumer(value: str = Provide(real)) -> str:
        return value

    plan = compile_dependency(consumer)
    with override(real, lambda: "fake"):
        assert await solve(plan.params, Context(make_websocket(), ScopeState())) == {
            "value": "fake"
        }
    assert await solve(plan.params, Context(make_websocket(), ScopeState())) == {"value": "real"}
