"""aqueue, from this repository: bulk enqueue, drain and latency (see ``_peerkit``); run by
``benchmarks/peers.py`` with the lead's interpreter and ``PYTHONPATH`` at the repository root.

Configuration: one ``aqueue.Worker(tasks, concurrency=100)``, everything else as shipped (records kept, events
written). Bulk enqueue: ``Tasks.enqueue_many`` of N ``Task.spec()`` (timed with the spec building, as a user
writes it; one script call per 500 jobs, pipelined). Drain: one ``Worker.run(burst=True)``, timed until it returns
(every job settled), and checked against ``worker.processed``. Latency: a second worker, not burst, with the paced
producer. Every key is ``aqueue:{<tag>}:...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from _peerkit import RUNS, bulk_and_drain, emit, latency_figures, paced, parse_args, record_start

import aqueue

CONFIG = "Worker(concurrency=100), burst drain; Tasks.enqueue_many"


async def main() -> None:
    args = parse_args()
    tasks = aqueue.Tasks(args.tag, args.redis)

    @tasks.task(name="noop")
    async def noop() -> None:
        """The drained task: does nothing."""

    @tasks.task(name="stamp")
    async def stamp(sent_at: float) -> None:
        """The latency task: notes enqueue -> start."""
        record_start(sent_at)

    try:
        t0 = time.perf_counter()
        await tasks.enqueue_many([noop.spec() for _ in range(args.jobs)])
        enqueue_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        drainer = aqueue.Worker(tasks, concurrency=100)
        await drainer.run(burst=True, handle_signals=False)
        drain_s = time.perf_counter() - t0

        RUNS.arm(round(args.rate * args.seconds))
        worker = aqueue.Worker(tasks, concurrency=100)
        run = asyncio.create_task(worker.run(handle_signals=False))
        started_at = time.time()
        sent, span = await paced(args.rate, args.seconds, lambda ts: stamp.enqueue(ts))
        await RUNS.wait_async(30.0)
        await worker.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    finally:
        await tasks.close()
    emit(
        {
            "version": f"{aqueue.__version__} (this repo)",
            "config": CONFIG,
            **bulk_and_drain(args.jobs, enqueue_s, drain_s, drainer.processed),
            **latency_figures(started_at, args.warmup, sent, span),
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
