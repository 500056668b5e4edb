"""AsyncAPI 3.0 documents from tether controllers.

`generate(app, title=..., version=...)` walks an app's routes and describes
every mounted `WebSocketController` as a channel with its receive and send
operations; `asyncapi_routes(...)` serves that document and a page that
renders it from the app itself.
"""

from tether.asyncapi.document import ASYNCAPI_VERSION, generate
from tether.asyncapi.page import AsyncAPIDocs, asyncapi_routes, render_page

__all__ = ["ASYNCAPI_VERSION", "AsyncAPIDocs", "asyncapi_routes", "generate", "render_page"]
