import asyncio
import sys

from websockets.asyncio.client import connect

URL = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8000/ws"


async def main() -> None:
    async with connect(URL) as websocket:
        await websocket.send("hello")
        print(await websocket.recv())


asyncio.run(main())
