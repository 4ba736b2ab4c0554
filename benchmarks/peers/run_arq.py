"""arq: bulk enqueue, drain and latency (see ``_peerkit``); run by ``benchmarks/peers.py`` in arq's own venv.

Configuration: one ``arq.worker.Worker`` with ``max_jobs=100`` (default 10) and ``poll_delay=0.01`` s (default
0.5 s: arq polls its queue's sorted set, so this bounds enqueue → start), everything else as shipped (results kept
for 3600 s). arq has no bulk enqueue: ``enqueue_job`` (a WATCH/MULTI transaction per job) gathered with at most
100 in flight. Job ids are ``<tag>:<n>``, so the job and result keys (``arq:job:<id>``) hold the run's tag and the
caller can delete them. Done: the task counts its runs in this process (``RUNS``).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import itertools
import time
from typing import Any

from _peerkit import RUNS, bulk_and_drain, drain_timeout, emit, latency_figures, paced, parse_args, record_start
from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker

CONFIG = "Worker(max_jobs=100, poll_delay=0.01); enqueue_job gathered, 100 in flight"
IN_FLIGHT = 100


async def noop(ctx: dict[str, Any]) -> None:
    RUNS.hit()


async def stamp(ctx: dict[str, Any], sent_at: float) -> None:
    record_start(sent_at)


async def stop(worker: Worker, run: asyncio.Task[None]) -> None:
    """Let the jobs in hand finish, then stop polling and close the worker's pool (``Worker.close`` expects
    arq's own signal handling)."""
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    await worker.pool.aclose()


async def main() -> None:
    args = parse_args()
    queue = args.tag
    ids = itertools.count()
    pool = await create_pool(RedisSettings.from_dsn(args.redis), default_queue_name=queue)
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def enqueue(name: str, *fn_args: Any) -> None:
        async with gate:
            await pool.enqueue_job(name, *fn_args, _job_id=f"{args.tag}:{next(ids)}")

    t0 = time.perf_counter()
    await asyncio.gather(*(enqueue("noop") for _ in range(args.jobs)))
    enqueue_s = time.perf_counter() - t0

    def worker() -> Worker:
        return Worker(
            functions=[noop, stamp],
            redis_settings=RedisSettings.from_dsn(args.redis),
            queue_name=queue,
            max_jobs=100,
            poll_delay=0.01,
            handle_signals=False,
        )

    RUNS.arm(args.jobs)
    t0 = time.perf_counter()
    drainer = worker()
    run = asyncio.create_task(drainer.main())
    await RUNS.wait_async(drain_timeout(args.jobs))
    drain_s, ran = time.perf_counter() - t0, RUNS.count
    await stop(drainer, run)

    total = round(args.rate * args.seconds)
    RUNS.arm(total)
    live = worker()
    run = asyncio.create_task(live.main())
    started_at = time.time()
    sent, span = await paced(args.rate, args.seconds, lambda ts: enqueue("stamp", ts))
    await RUNS.wait_async(30.0)
    await stop(live, run)
    await pool.aclose()
    emit(
        {
            "version": importlib.metadata.version("arq"),
            "config": CONFIG,
            **bulk_and_drain(args.jobs, enqueue_s, drain_s, ran),
            **latency_figures(started_at, args.warmup, sent, span),
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
