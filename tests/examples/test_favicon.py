"""Every example answers a browser's `/favicon.ico` (204: no icon), instead of a 404."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable

import httpx
import pytest
from starlette.applications import Starlette

from examples.chat.app import create_app as create_chat
from examples.dashboard.app import create_app as create_dashboard
from examples.echo.app import app as echo
from examples.typed.app import app as typed

EXAMPLES = {
    "echo": lambda: echo,
    "chat": lambda: create_chat(8000),
    "dashboard": create_dashboard,
    "typed": lambda: typed,
}


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(EXAMPLES))
async def test_each_example_answers_the_favicon_with_no_content(name: str) -> None:
    app: Starlette = EXAMPLES[name]()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        icon = await http.get("/favicon.ico")
        head = await http.head("/favicon.ico")
    assert (icon.status_code, icon.content) == (204, b"")
    assert head.status_code == 204


def test_the_served_example_answers_the_favicon(serve_example: Callable[..., int]) -> None:
    port = serve_example("echo")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/favicon.ico", timeout=10) as answer:
        assert answer.status == 204
