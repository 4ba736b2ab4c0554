"""SAQ: bulk enqueue, drain and latency (see ``_peerkit``); run by ``benchmarks/peers.py`` in SAQ's own venv.

Configuration: one ``saq.Worker`` with ``concurrency=100`` (default 10) on a Redis ``Queue`` with
``max_concurrent_ops=100`` (default 20: the queue's own cap on Redis operations in flight), everything else as
shipped (the worker blocks on the queue list, no polling). SAQ has no bulk enqueue that returns without waiting
for the results (``Queue.map`` awaits them): ``Queue.enqueue`` (one script call per job) gathered, with the queue's
own cap of 100 operations in flight. Every key is ``saq:<tag>:...`` or ``saq:job:<tag>:...``. Done: the task
counts its runs in this process (``RUNS``).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import time
from typing import Any

from _peerkit import RUNS, bulk_and_drain, drain_timeout, emit, latency_figures, paced, parse_args, record_start
from saq import Queue, Worker

CONFIG = "Worker(concurrency=100), Queue(max_concurrent_ops=100); enqueue gathered, 100 in flight"


async def noop(ctx: dict[str, Any]) -> None:
    RUNS.hit()


async def stamp(ctx: dict[str, Any], *, sent_at: float) -> None:
    record_start(sent_at)


async def run_worker(queue: Queue) -> tuple[Worker, asyncio.Task[None]]:
    worker = Worker(queue, functions=[noop, stamp], concurrency=100)
    return worker, asyncio.create_task(worker.start())


async def stop(worker: Worker, run: asyncio.Task[None]) -> None:
    await worker.stop()
    await asyncio.gather(run, return_exceptions=True)


async def main() -> None:
    args = parse_args()
    queue = Queue.from_url(args.redis, name=args.tag, max_concurrent_ops=100)
    await queue.connect()

    t0 = time.perf_counter()
    await asyncio.gather(*(queue.enqueue("noop") for _ in range(args.jobs)))
    enqueue_s = time.perf_counter() - t0

    RUNS.arm(args.jobs)
    t0 = time.perf_counter()
    worker, run = await run_worker(queue)
    await RUNS.wait_async(drain_timeout(args.jobs))
    drain_s, ran = time.perf_counter() - t0, RUNS.count
    await stop(worker, run)

    RUNS.arm(round(args.rate * args.seconds))
    worker, run = await run_worker(queue)
    started_at = time.time()
    sent, span = await paced(args.rate, args.seconds, lambda ts: queue.enqueue("stamp", sent_at=ts))
    await RUNS.wait_async(30.0)
    await stop(worker, run)
    await queue.disconnect()
    emit(
        {
            "version": importlib.metadata.version("saq"),
            "config": CONFIG,
            **bulk_and_drain(args.jobs, enqueue_s, drain_s, ran),
            **latency_figures(started_at, args.warmup, sent, span),
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
