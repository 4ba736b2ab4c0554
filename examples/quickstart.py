"""The README's example: define tasks, enqueue from a producer, run a worker, read results.

Run it with ``python examples/quickstart.py`` (in-process ``memory://``) or point it at Redis with
``AQUEUE_REDIS_URL=redis://localhost:6379/0 python examples/quickstart.py``.
"""

from __future__ import annotations

import asyncio
import os

import aqueue

tasks = aqueue.Tasks(queue="quickstart", redis_url=os.environ.get("AQUEUE_REDIS_URL", "memory://quickstart"))


@tasks.task
async def add(x: int, y: int) -> int:
    return x + y


@tasks.task(name="emails.send", priority="high", max_attempts=5, timeout=30.0)
async def send(to: str) -> str:
    await asyncio.sleep(0.01)  # talk to the mail server here
    return f"sent to {to}"


async def main() -> list[object]:
    async with tasks:
        worker = aqueue.Worker(tasks, concurrency=10)
        # Usually its own process: `aqueue worker examples.quickstart:tasks`.
        running = asyncio.create_task(worker.run())
        job = await add.enqueue(1, 2)  # one round trip
        later = await send.with_options(delay=0.2).enqueue("ada@example.com")
        many = await tasks.enqueue_many([add.spec(i, i) for i in range(1_000)])  # pipelined
        results = [await job.result(timeout=10), await later.result(timeout=10), await many[-1].result(timeout=10)]
        await worker.stop()
        await running
        return results


if __name__ == "__main__":
    print(asyncio.run(main()))
