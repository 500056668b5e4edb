from enum import Enum
from typing import Annotated
from uuid import UUID

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from tether import Cookie, Header, Query, WebSocketController


class Mode(Enum):
    read = "read"
    write = "write"


class Board(WebSocketController):
    async def on_connect(
        self,
        board_id: UUID,  # a path parameter, converted to UUID
        token: str = Query(),  # required: ?token=...
        mode: Mode = Query(Mode.read),  # ?mode=write
        tags: list[int] = Query([]),  # ?tags=1&tags=2
        x_client: str = Header("unknown"),  # the x-client header
        sid: Annotated[str | None, Cookie()] = None,
    ):
        self.seen = {
            "board": str(board_id),
            "mode": mode.value,
            "tags": tags,
            "client": x_client,
            "sid": sid,
        }

    async def on_receive(self, data: str) -> dict:
        return self.seen


app = Starlette(routes=[WebSocketRoute("/boards/{board_id}", Board)])
