"""tether's request/response, beside its plain echo, for `python -m benchmarks.requests`.

`/echo` is the plain text echo (the fast path); `/routed` answers the event
`{"type": "echo", "text": ...}` with its text, bare; `/requests` answers the
same event sent as a request (`"ref"`) with `{"ref": ..., "ok": true,
"data": text}`; `/concurrent` does so with handlers run concurrently
(`max_concurrency = 8`).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from tether import WebSocketController, on


class TextEcho(WebSocketController):
    encoding = "text"

    async def on_receive(self, data: str) -> str:
        """Return the text; tether sends it."""
        return data


class Routed(WebSocketController):
    @on("echo")
    async def echo(self, data: dict) -> str:
        """Answer an event with its text."""
        return data["text"]


class Concurrent(Routed):
    max_concurrency = 8


app = Starlette(
    routes=[
        WebSocketRoute("/echo", TextEcho),
        WebSocketRoute("/routed", Routed),
        WebSocketRoute("/requests", Routed),
        WebSocketRoute("/concurrent", Concurrent),
    ]
)
