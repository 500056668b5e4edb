from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

import tether
from tether import Provide, Query, WebSocketController

events: list[str] = []


class Pool:
    """Stands in for a database pool: one per process."""


async def get_pool():
    events.append("pool opened")
    yield Pool()
    events.append("pool closed")


async def get_customer(token: str = Query(), pool: Pool = Provide(get_pool, scope="app")) -> str:
    return token.removeprefix("user-")


async def transaction(customer: str = Provide(get_customer)):
    events.append(f"begin for {customer}")
    try:
        yield {"customer": customer}
    except Exception as exc:
        events.append(f"rollback ({type(exc).__name__})")
        raise
    else:
        events.append("commit")


class Orders(WebSocketController):
    encoding = "json"

    async def on_connect(self, customer: str = Provide(get_customer)):
        self.customer = customer

    async def on_receive(self, data: dict, tx: dict = Provide(transaction, scope="message")):
        if data.get("item") is None:
            raise ValueError("an order needs an item")
        return {"ordered": data["item"], "by": tx["customer"]}

    async def on_disconnect(self, close_code: int):
        events.append(f"disconnected {close_code}")


app = Starlette(routes=[WebSocketRoute("/orders", Orders)], lifespan=tether.lifespan)
