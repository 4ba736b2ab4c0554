"""BullMQ (the official Python port, ``bullmq`` on PyPI): bulk enqueue, drain and latency (see ``_peerkit``); run
by ``benchmarks/peers.py`` in BullMQ's own venv.

Configuration: one ``bullmq.Worker`` with ``concurrency=100`` (default 1), everything else as shipped (completed
jobs kept, locks renewed, blocking fetch). Bulk enqueue: ``Queue.addBulk`` (all jobs in one pipeline). The
queue's ``prefix`` is the run's tag, so every key is ``<tag>:q:...``. Done: the processor counts its runs in this
process (``RUNS``).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import time
from typing import Any

from _peerkit import RUNS, bulk_and_drain, drain_timeout, emit, latency_figures, paced, parse_args, record_start
from bullmq import Queue, Worker

CONFIG = "Worker(concurrency=100); Queue.addBulk (one pipeline)"
QUEUE = "q"


async def process(job: Any, token: str) -> None:
    if job.name == "stamp":
        record_start(job.data["sent_at"])
    else:
        RUNS.hit()


async def main() -> None:
    args = parse_args()
    opts = {"connection": args.redis, "prefix": args.tag}
    queue = Queue(QUEUE, opts)

    t0 = time.perf_counter()
    await queue.addBulk([{"name": "noop", "data": {}} for _ in range(args.jobs)])
    enqueue_s = time.perf_counter() - t0

    RUNS.arm(args.jobs)
    t0 = time.perf_counter()
    worker = Worker(QUEUE, process, {**opts, "concurrency": 100})  # autorun: starts its run() task itself
    await RUNS.wait_async(drain_timeout(args.jobs))
    drain_s, ran = time.perf_counter() - t0, RUNS.count

    RUNS.arm(round(args.rate * args.seconds))  # the same worker goes on
    started_at = time.time()
    sent, span = await paced(args.rate, args.seconds, lambda ts: queue.add("stamp", {"sent_at": ts}))
    await RUNS.wait_async(30.0)
    await worker.close()
    await queue.close()
    emit(
        {
            "version": importlib.metadata.version("bullmq"),
            "config": CONFIG,
            **bulk_and_drain(args.jobs, enqueue_s, drain_s, ran),
            **latency_figures(started_at, args.warmup, sent, span),
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
