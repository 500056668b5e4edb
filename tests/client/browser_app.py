"""The client tests' server with a page that loads tether.js through `client_route`."""

from __future__ import annotations

from rpc_app import Rpc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route, WebSocketRoute

from tether.client import client_route

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>tether.js</title></head><body>
<script type="module">
  import { TetherClient, RequestError, CallError } from "/tether.js";
  Object.assign(window, { TetherClient, RequestError, CallError });
  window.loaded = true;
</script>
</body></html>
"""


async def page(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE)


app = Starlette(routes=[Route("/", page), client_route(), WebSocketRoute("/ws", Rpc)])
