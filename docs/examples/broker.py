import anyio

from tether.brokers import MemoryBroker, OutboundQueue

sent: list[dict] = []


async def send(message: dict) -> None:  # stands in for a connection's ASGI send
    sent.append(message)


async def main() -> None:
    broker = MemoryBroker()
    queue = OutboundQueue(send, maxsize=100, policy="drop_oldest")
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(queue.run)
        await broker.subscribe("room:1", queue)
        await broker.publish("room:1", {"text": "héllo"})
        await broker.publish("room:1", b"\x00\x01")
        await broker.publish("room:2", "nobody here")
        with anyio.fail_after(2):
            while len(sent) < 2:
                await anyio.sleep(0.01)
        queue.close()
    await broker.unsubscribe_all(queue)
    for message in sent:
        print(message)


if __name__ == "__main__":
    anyio.run(main)
