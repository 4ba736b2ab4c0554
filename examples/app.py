"""A worker module: the tasks of an application, in a module a worker process can import.

Run a worker for it (from the repository root, with Redis on localhost):

    aqueue worker examples.app:tasks --concurrency 50          # or --redis URL, or $AQUEUE_REDIS_URL
    aqueue worker examples.app:tasks --burst                   # drain what is queued, then exit

and enqueue from anywhere that imports this module (a web handler, a script, the CLI):

    aqueue enqueue examples.app:tasks app.add --args '[1, 2]'

``python examples/app.py`` runs a producer and a worker together in one process on ``memory://`` (no Redis
needed), or on ``$AQUEUE_REDIS_URL`` when it is set.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

import aqueue

# The connection opens on first use, so creating the registry at import time costs nothing. With no URL it uses
# $AQUEUE_REDIS_URL, else redis://localhost:6379/0; the worker's --redis / --queue flags override both.
tasks = aqueue.Tasks("examples-app")

# Give tasks explicit names. The default is "<module>.<function>", and a module's name depends on how it was
# loaded: run as a script it is "__main__", so a producer started with `python examples/app.py` would enqueue
# "__main__.add" while `aqueue worker examples.app:tasks` only knows "examples.app.add".


@tasks.task(name="app.add")
async def add(x: int, y: int) -> int:
    """The smallest task: a coroutine, run on the worker's event loop."""
    return x + y


@tasks.task(name="app.checksum")
def checksum(text: str, rounds: int = 1_000) -> str:
    """A plain (sync) function: the worker runs it in a thread, so CPU work or blocking I/O does not stall the
    loop. (A sync task cannot be interrupted by a cancellation or a timeout: keep it bounded.)"""
    digest = text.encode()
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


@tasks.task(name="app.resize", timeout=60.0, max_attempts=3)
async def resize(image: str, sizes: list[int]) -> dict[str, list[int]]:
    """A long task reporting progress: each call records a percentage (and a message) on the job and writes a
    ``progress`` event, which the dashboard and WebSocket clients show live."""
    done: list[int] = []
    for i, size in enumerate(sizes, start=1):
        await asyncio.sleep(0.01)  # the real work: resize `image` to `size`
        done.append(size)
        await aqueue.progress(100 * i / len(sizes), message=f"{image}: {size}px done")
    return {image: done}


async def main() -> dict[str, object]:
    """Enqueue one job of each task, run a worker until the queue is empty, print and return the results."""
    if "AQUEUE_REDIS_URL" not in os.environ:
        tasks.configure(redis_url="memory://examples-app")  # no Redis needed for the demo
    async with tasks:
        jobs: dict[str, aqueue.Job[Any]] = {
            "add": await add.enqueue(2, 3),
            "checksum": await checksum.enqueue("hello"),
            "resize": await resize.enqueue("cat.png", [64, 128, 256, 512]),
        }
        # Usually a separate process (`aqueue worker examples.app:tasks`); burst mode returns once nothing is
        # queued, scheduled or running.
        await aqueue.Worker(tasks, concurrency=10).run(burst=True)
        results = {name: await job.result(timeout=10) for name, job in jobs.items()}
        record = await jobs["resize"].record()
        print(f"resize progress: {record.progress:g}% ({record.progress_message})")
        for name, value in results.items():
            print(f"{name}: {value}")
        return results


if __name__ == "__main__":
    asyncio.run(main())
