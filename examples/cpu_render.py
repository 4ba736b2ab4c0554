"""CPU-bound Python in a process pool: ``@tasks.task(executor="process")``.

``python examples/cpu_render.py`` enqueues six renders on ``memory://`` and runs a worker with two child processes
(``cpu_workers=2``), printing each result and how late the worker's event loop ran at worst meanwhile: a few
milliseconds, where the same function as a plain thread task would stall the loop for as long as each render holds
the GIL. Under ``aqueue worker examples.cpu_render:tasks --cpu-workers 2`` the worker owns the same pool.
"""

from __future__ import annotations

import asyncio
import time

import aqueue

tasks = aqueue.Tasks("examples-cpu")


@tasks.task(executor="process", timeout=60)
def render(n: int) -> int:
    """Pure Python arithmetic that holds the GIL throughout: it runs in one of the worker's child processes."""
    return sum(i * i for i in range(n))


async def main(jobs: int = 6, n: int = 2_000_000) -> tuple[list[int], float]:
    """Enqueue ``jobs`` renders, run them on a worker with two children; their results and the worst loop lag."""
    handles = await tasks.enqueue_many([render.spec(n + i) for i in range(jobs)])
    worker = aqueue.Worker(tasks, concurrency=2, cpu_workers=2)
    running = asyncio.create_task(worker.run(burst=True, handle_signals=False))
    worst = 0.0
    while not running.done():  # how late a 10 ms timer fires while the children compute
        began = time.perf_counter()
        await asyncio.sleep(0.01)
        worst = max(worst, time.perf_counter() - began - 0.01)
    await running
    return [await job.result(timeout=60) for job in handles], worst


if __name__ == "__main__":  # the guard a process pool needs: each child imports this module again

    async def run() -> None:
        results, worst = await main()
        print(f"{len(results)} renders, first {results[0]}; worst event-loop lag meanwhile {worst * 1000:.0f} ms")
        await tasks.close()

    asyncio.run(run())
