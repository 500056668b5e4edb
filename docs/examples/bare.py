from tether import WebSocketController


class Echo(WebSocketController):
    async def on_receive(self, data: str) -> str:
        return data.upper()


# The class is the ASGI app: `uvicorn bare:Echo`
