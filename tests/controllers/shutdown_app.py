"""A controller served by uvicorn in test_shutdown; it logs its endings to a file."""

import os
from collections.abc import Iterator

from tether import Provide, WebSocketController

LOG = os.environ.get("TETHER_TEST_LOG", os.devnull)


def write(line: str) -> None:
    with open(LOG, "a") as log:
        log.write(line + "\n")


def resource() -> Iterator[str]:
    write("setup")
    yield "resource"
    write("teardown")


class Session(WebSocketController):
    encoding = "text"

    async def on_connect(self, res: str = Provide(resource)) -> None:
        write("connect")

    async def on_receive(self, data: str) -> str:
        return data

    async def on_disconnect(self, close_code: int) -> None:
        write(f"disconnect {close_code}")


app = Session
