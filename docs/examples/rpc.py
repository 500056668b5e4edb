from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from tether import RequestError, WebSocketController, on
from tether.brokers import GroupHistory, MemoryBroker
from tether.client import client_route


class Shop(WebSocketController):
    encoding = "json"
    max_concurrency = 8  # handlers run side by side; `self.call` needs it
    reply_errors = True  # a failing request gets an error reply, the connection stays
    broker = MemoryBroker(history={"orders:*": GroupHistory(size=1000)})
    prices = {"tea": 3, "cake": 4}

    @on("price")
    async def price(self, data: dict) -> int:
        if data["item"] not in self.prices:
            raise RequestError("not_found", f"we sell no {data['item']}")
        return self.prices[data["item"]]

    @on("order")
    async def order(self, data: dict) -> dict:
        # Ask this client to confirm, and wait (at most 5 s) for its answer.
        confirmed = await self.call("confirm", {"item": data["item"]}, timeout=5)
        if confirmed:
            await self.publish("orders:all", {"type": "ordered", "item": data["item"]})
        return {"confirmed": confirmed}

    @on("join")
    async def join_group(self, data: dict) -> dict:
        result = await self.join(data["group"], since=data.get("since"))
        return {"recovered": result.recovered, "position": str(result.position or "")}


app = Starlette(routes=[client_route(), WebSocketRoute("/ws", Shop)])
