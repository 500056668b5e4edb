"""Two real worker processes behind one Redis: a publish in this process reaches both."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from broker_helpers import WAIT

from tether.brokers import RedisBroker
from tether.testing.redis import RedisServer

pytestmark = pytest.mark.anyio

MESSAGES = 200

# A stand-in for another app worker: it joins the group, says "ready", and
# prints what its member received once it has everything (or after WAIT seconds).
WORKER = textwrap.dedent(
    """
    import json, sys
    import anyio
    from tether.brokers import OutboundQueue, RedisBroker

    url, group, expected, wait = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])

    async def main():
        received = []
        done = anyio.Event()

        async def send(message):
            received.append(message["text"])
            if len(received) == expected:
                done.set()

        queue = OutboundQueue(send, maxsize=expected)
        async with RedisBroker(url) as broker, anyio.create_task_group() as tg:
            tg.start_soon(queue.run)
            await broker.subscribe(group, queue)
            print("ready", flush=True)
            with anyio.move_on_after(wait):
                await done.wait()
            queue.close()
        print(json.dumps(received), flush=True)

    anyio.run(main)
    """
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_publish_fans_out_to_two_other_processes(redis_server: RedisServer) -> None:
    group = "cross-process"
    command = [sys.executable, "-c", WORKER, redis_server.url, group, str(MESSAGES), str(WAIT)]
    async with (
        await anyio.open_process(command, stderr=subprocess.STDOUT) as first,
        await anyio.open_process(command, stderr=subprocess.STDOUT) as second,
    ):
        workers = [first, second]
        outputs = [BufferedByteReceiveStream(w.stdout) for w in workers]  # type: ignore[arg-type]
        try:
            with anyio.fail_after(WAIT):
                for output in outputs:
                    assert await output.receive_until(b"\n", 65536) == b"ready"

            async with RedisBroker(redis_server.url) as broker:
                for i in range(MESSAGES):
                    await broker.publish(group, {"seq": i})

            with anyio.fail_after(WAIT * 2):
                for worker, output in zip(workers, outputs, strict=True):
                    line = await output.receive_until(b"\n", 10_000_000)
                    assert await worker.wait() == 0, line
                    received = [json.loads(text)["seq"] for text in json.loads(line)]
                    assert received == list(range(MESSAGES))
        finally:
            for worker in workers:
                if worker.returncode is None:
                    worker.kill()
