"""streaq: bulk enqueue, drain and latency (see ``_peerkit``); run by ``benchmarks/peers.py`` in streaq's own venv.

Configuration: one ``streaq.Worker`` with ``concurrency=100`` (default 16; prefetch as shipped, = concurrency),
``handle_signals=False`` since it runs inside this script, everything else as shipped (Redis Streams consumer
group, results kept 5 minutes). Producing goes through a second ``Worker`` object used only as a client (streaq's
way to enqueue from outside a running worker). Bulk enqueue: ``Worker.enqueue_many`` (one pipeline). Every key is
``streaq:<tag>...``; streaq also loads its Lua library ``streaq`` (FUNCTION LOAD REPLACE), which ``peers.py``
removes afterwards if it was not there before. Done: the task counts its runs in this process (``RUNS``).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import time

from _peerkit import RUNS, bulk_and_drain, drain_timeout, emit, latency_figures, paced, parse_args, record_start
from streaq import Worker

CONFIG = "Worker(concurrency=100); Worker.enqueue_many (one pipeline)"


def make_worker(url: str, queue: str, concurrency: int = 16) -> Worker:
    worker = Worker(redis_url=url, queue_name=queue, concurrency=concurrency, handle_signals=False)

    @worker.task(name="noop")
    async def noop() -> None:
        RUNS.hit()

    @worker.task(name="stamp")
    async def stamp(sent_at: float) -> None:
        record_start(sent_at)

    return worker


async def stop(run: asyncio.Task[None]) -> None:
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)


async def main() -> None:
    args = parse_args()
    client = make_worker(args.redis, args.tag)
    noop, stamp = client.registry["noop"], client.registry["stamp"]
    async with client:
        t0 = time.perf_counter()
        await client.enqueue_many([noop.enqueue() for _ in range(args.jobs)])
        enqueue_s = time.perf_counter() - t0

        RUNS.arm(args.jobs)
        t0 = time.perf_counter()
        run = asyncio.create_task(make_worker(args.redis, args.tag, concurrency=100).run_async())
        await RUNS.wait_async(drain_timeout(args.jobs))
        drain_s, ran = time.perf_counter() - t0, RUNS.count
        await stop(run)

        RUNS.arm(round(args.rate * args.seconds))
        run = asyncio.create_task(make_worker(args.redis, args.tag, concurrency=100).run_async())
        started_at = time.time()
        sent, span = await paced(args.rate, args.seconds, lambda ts: stamp.enqueue(ts))
        await RUNS.wait_async(30.0)
        await stop(run)
    emit(
        {
            "version": importlib.metadata.version("streaq"),
            "config": CONFIG,
            **bulk_and_drain(args.jobs, enqueue_s, drain_s, ran),
            **latency_figures(started_at, args.warmup, sent, span),
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
