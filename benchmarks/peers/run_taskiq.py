"""taskiq + taskiq-redis: bulk enqueue, drain and latency (see ``_peerkit``); run by ``benchmarks/peers.py`` in
taskiq's own venv.

Configuration: taskiq-redis' ``RedisStreamBroker`` (Redis Streams, consumer group, acks), no result backend, and
one ``taskiq.receiver.Receiver`` with ``max_async_tasks=100`` run in this process the way ``taskiq worker
--workers 1 --max-async-tasks 100`` runs it in each worker process (``broker.is_worker_process``, a thread pool
for sync tasks, acknowledgement when the result is saved), everything else as shipped (``xread_count=100``). The
consumer group is declared (``broker.startup()``, at ``$``) before the jobs are enqueued. taskiq has no bulk
enqueue: ``kiq()`` (one XADD per job) gathered, at most 100 in flight. The stream is named after the tag; the
broker's only other key, ``autoclaim:taskiq:<tag>``, holds it too. Done: the task counts its runs in this process
(``RUNS``).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from _peerkit import RUNS, bulk_and_drain, drain_timeout, emit, latency_figures, paced, parse_args, record_start
from taskiq.receiver import Receiver
from taskiq_redis import RedisStreamBroker

CONFIG = "RedisStreamBroker, Receiver(max_async_tasks=100) (= taskiq worker --workers 1); kiq gathered, 100 in flight"
IN_FLIGHT = 100


async def serve(broker: RedisStreamBroker, stop: asyncio.Event) -> None:
    """One worker process' receiver, until ``stop`` is set."""
    with ThreadPoolExecutor() as pool:
        receiver = Receiver(broker, executor=pool, max_async_tasks=100, run_startup=False)
        await receiver.listen(stop)


async def stop_serving(stop: asyncio.Event, run: asyncio.Task[None]) -> bool:
    """Ask the receiver to stop (it notices once its XREADGROUP, blocking 2 s, returns); False if it has not
    stopped within 5 s. taskiq 0.13's Receiver can stay in its shielded clean-up after that (seen on this
    machine), so the runner then leaves it behind rather than hang."""
    stop.set()
    done, _ = await asyncio.wait({run}, timeout=5.0)
    return bool(done)


async def main() -> None:
    args = parse_args()
    broker = RedisStreamBroker(args.redis, queue_name=args.tag)

    @broker.task(task_name="noop")
    async def noop() -> None:
        RUNS.hit()

    @broker.task(task_name="stamp")
    async def stamp(sent_at: float) -> None:
        record_start(sent_at)

    broker.is_worker_process = True
    await broker.startup()
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def bounded(send: Callable[[], Awaitable[Any]]) -> None:
        async with gate:
            await send()

    t0 = time.perf_counter()
    await asyncio.gather(*(bounded(noop.kiq) for _ in range(args.jobs)))
    enqueue_s = time.perf_counter() - t0

    RUNS.arm(args.jobs)
    t0 = time.perf_counter()
    stop = asyncio.Event()
    run = asyncio.create_task(serve(broker, stop))
    await RUNS.wait_async(drain_timeout(args.jobs))
    drain_s, ran = time.perf_counter() - t0, RUNS.count

    RUNS.arm(round(args.rate * args.seconds))  # the same receiver goes on
    started_at = time.time()
    sent, span = await paced(args.rate, args.seconds, lambda ts: stamp.kiq(ts))
    await RUNS.wait_async(30.0)
    emit(
        {
            "version": f"{importlib.metadata.version('taskiq')} / redis {importlib.metadata.version('taskiq-redis')}",
            "config": CONFIG,
            **bulk_and_drain(args.jobs, enqueue_s, drain_s, ran),
            **latency_figures(started_at, args.warmup, sent, span),
        }
    )
    if not await stop_serving(stop, run):
        os._exit(0)  # the result is out; do not wait on a receiver that will not stop
    await broker.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
