"""Many concurrent sleeping jobs in one worker process: is the scheduler, not the job, the bound?

Run from the repository root::

    python benchmarks/sleepers.py [--jobs 100000] [--concurrency 1000] [--sleep 0.05] [--prefetch 0]
                                  [--loop asyncio|uvloop] [--redis URL]

Each job is ``await asyncio.sleep(SLEEP)`` (default 50 ms), so a worker at concurrency C can finish at most
``C / SLEEP`` jobs a second (1,000 / 0.05 s = 20,000 jobs/s): that ceiling assumes claiming, starting and
settling cost nothing. The benchmark enqueues ``--jobs`` jobs with ``enqueue_many`` on a fresh queue (timed
separately), then times one ``Worker(tasks, concurrency=C).run(burst=True)`` draining them, in this process.
It prints the drain rate, the ceiling and the share of it reached, this process' CPU time (near 100 % of one core
means the Python side is the bound, not the sleeps), Redis' CPU time meanwhile (other clients of the same Redis
count too), how many claim and settle script calls the worker made, how long each took and how many jobs each
carried (a slot waits for a claim in flight, so the claim time adds to every job's cycle), and a targets table:
>= 15,000 jobs/s at the defaults (C=1,000, 50 ms). Afterwards it checks that every job succeeded (the queue's
``succeeded`` counter equals N) and the ready streams are empty, and deletes every key it created. The exit code
is 1 if that check fails, else 0: the figures are never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from _common import delete_keys

import aqueue
from aqueue._redis.broker import Broker

TARGET = 15_000.0  # jobs/s at concurrency 1,000 and 50 ms jobs


class CallStats:
    """Times the worker's claim and settle script calls (a class-level wrapper on the broker: microseconds a
    call, against milliseconds for the call itself)."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[float, int]]] = {}

    def install(self) -> None:
        for name in ("claim", "start", "settle"):
            original = getattr(Broker, name)
            setattr(Broker, name, self._wrap(name, original))

    def _wrap(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        record = self.calls.setdefault(name, [])

        async def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            result = await original(*args, **kwargs)
            try:
                jobs = len(result[0]) if name in ("claim", "start") else len(args[-1])
            except (TypeError, IndexError):
                jobs = 0
            record.append((time.perf_counter() - t, jobs))
            return result

        return timed

    def describe(self) -> str:
        parts = []
        for name, record in self.calls.items():
            if record:
                seconds, jobs = sum(r[0] for r in record), sum(r[1] for r in record)
                parts.append(
                    f"{name} {len(record)} calls, {1000 * seconds / len(record):.1f} ms and"
                    f" {jobs / len(record):.0f} jobs a call"
                )
        return "; ".join(parts)


async def redis_cpu(r: aioredis.Redis) -> float:
    cpu = await r.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


async def main_async(args: argparse.Namespace) -> int:
    r = aioredis.Redis.from_url(args.redis, decode_responses=True)
    queue = f"bench-sleep-{uuid.uuid4().hex[:10]}"
    tasks = aqueue.Tasks(queue, args.redis)
    pause = args.sleep

    @tasks.task(name="sleeper")
    async def sleeper() -> None:
        await asyncio.sleep(pause)

    ceiling = args.concurrency / pause if pause > 0 else float("inf")
    try:
        server = await r.info("server")
        loop = asyncio.get_running_loop()
        print(
            f"aqueue sleepers: N={args.jobs} jobs of asyncio.sleep({pause:g}), concurrency {args.concurrency},"
            f" prefetch {args.prefetch}, one worker in this process"
        )
        print(
            f"machine: {os.cpu_count()} cores, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())},"
            f" Python {sys.version.split()[0]}, loop {type(loop).__module__}.{type(loop).__name__},"
            f" Redis {server['redis_version']} at {args.redis}",
            flush=True,
        )
        await tasks._broker()  # connect and load the scripts outside the timings
        t = time.perf_counter()
        handles = await tasks.enqueue_many(sleeper.spec() for _ in range(args.jobs))
        enq = time.perf_counter() - t
        print(f"  enqueue_many: {len(handles)} jobs in {enq:.3f} s = {len(handles) / enq:,.0f}/s", flush=True)
        del handles

        worker = aqueue.Worker(tasks, concurrency=args.concurrency, prefetch=args.prefetch)
        stats = CallStats()
        stats.install()
        rcpu0, cpu0 = await redis_cpu(r), time.process_time()
        t = time.perf_counter()
        await worker.run(burst=True)
        drain = time.perf_counter() - t
        cpu, rcpu = time.process_time() - cpu0, await redis_cpu(r) - rcpu0
        rate = args.jobs / drain
        print(
            f"  drain: {args.jobs} jobs in {drain:.3f} s = {rate:,.0f} jobs/s |"
            f" cpu: python {cpu:.2f} s ({100 * cpu / drain:.0f}% of one core, {1e6 * cpu / args.jobs:.1f} us/job),"
            f" redis {rcpu:.2f} s ({100 * rcpu / drain:.0f}% of wall)",
            flush=True,
        )
        print(f"  worker script calls: {stats.describe()}", flush=True)

        info = await tasks.info()
        succeeded = info.stats.get("succeeded", 0)
        lengths = [int(await r.xlen(s)) for s in tasks._keys.streams]
        ok = succeeded == args.jobs and worker.processed == args.jobs and not any(lengths) and info.active == 0
        print(
            f"  check: succeeded={succeeded}/{args.jobs}, worker.processed={worker.processed},"
            f" failed={info.stats.get('failed', 0)}, ready stream lengths={lengths}, active={info.active}"
            f" -> {'OK' if ok else 'FAILED'}"
        )
    finally:
        await tasks.close()
        deleted = await delete_keys(r, tasks._keys.prefix)
        print(f"  cleanup: deleted {deleted} keys of queue {queue}")
        await r.aclose()

    print()
    print(f"  {'drain rate':<44} {rate:>10,.0f} jobs/s")
    print(f"  {f'ceiling: {args.concurrency} slots / {pause:g} s':<44} {ceiling:>10,.0f} jobs/s")
    print(f"  {'share of the ceiling':<44} {100 * rate / ceiling:>10.1f} %")
    print()
    print("targets:")
    if (args.concurrency, pause) == (1000, 0.05):
        print(f"  {f'drain >= {TARGET:,.0f} jobs/s (C=1000, 50 ms jobs)':<44} {rate:>10,.0f}  "
              f"{'met' if rate >= TARGET else 'MISSED'}")  # fmt: skip
    else:
        print(f"  {f'drain >= {TARGET:,.0f} jobs/s':<44} {'n/a: the target is set for C=1000 and 50 ms jobs':>10}")
    print(f"  {'every job succeeded, ready streams empty':<44} {'':>10}  {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs to enqueue and drain (default 100000)")
    parser.add_argument("--concurrency", type=int, default=1000, help="worker concurrency (default 1000)")
    parser.add_argument("--sleep", type=float, default=0.05, help="seconds each job sleeps (default 0.05)")
    parser.add_argument(
        "--prefetch", type=int, default=0, help="Worker prefetch: jobs claimed beyond free slots (default 0)"
    )
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio", help="event loop (default asyncio)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL")
    args = parser.parse_args()
    if args.jobs < 1 or args.concurrency < 1 or args.sleep < 0 or args.prefetch < 0:
        parser.error("--jobs and --concurrency must be >= 1, --sleep and --prefetch >= 0")
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if args.loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            print("sleepers.py: uvloop is not installed (pip install uvloop, or the [uvloop] extra)", file=sys.stderr)
            raise SystemExit(2) from None
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        raise SystemExit(runner.run(main_async(args)))


if __name__ == "__main__":
    main()
