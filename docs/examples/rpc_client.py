import asyncio
import sys

from tether.client import CallError, Client

URL = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8000/ws"


async def main() -> None:
    async with Client(URL) as client:

        @client.on_call("confirm")
        async def confirm(data: dict) -> bool:
            return data["item"] == "tea"  # the server asks; the return value is the answer

        await client.join("orders:all")  # re-joined, from the last position, after reconnects
        print("tea costs", await client.request("price", {"item": "tea"}))
        try:
            await client.request("price", {"item": "soup"})
        except CallError as exc:
            print("soup:", exc.code)
        print(await client.request("order", {"item": "tea"}))
        print(await client.receive(timeout=5))  # the group's message, from async for's queue


asyncio.run(main())
