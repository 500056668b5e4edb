from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import WebSocketRoute

from tether import Header, RateLimit, WebSocketController


def has_api_key(x_api_key: str | None = Header(None)) -> bool:
    return x_api_key == "k1"


def not_banned(x_user: str = Header("anonymous")) -> bool:
    if x_user == "mallory":
        raise HTTPException(status_code=429, detail="slow down")
    return True


class Feed(WebSocketController):
    allowed_origins = ["https://app.example.org", "https://*.example.org"]
    subprotocols = ["feed.v2", "feed.v1"]
    permissions = [has_api_key, not_banned]
    max_message_size = 1024
    rate_limit = RateLimit(messages=5, per=1.0)
    idle_timeout = 30.0

    async def on_receive(self, data: str) -> str:
        return f"{self.websocket.subprotocol}: {data}"


app = Starlette(routes=[WebSocketRoute("/feed", Feed)])
