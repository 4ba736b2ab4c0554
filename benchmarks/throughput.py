"""Throughput of aqueue against a raw redis-py floor on the same Redis.

Run from the repository root::

    python benchmarks/throughput.py [--jobs N] [--concurrency C] [--redis URL] [--task noop|echo]
                                    [--middleware] [--headers] [--logs] [--commandstats]

It measures, in this order:

1. **Floor** (redis-py + hiredis, ``decode_responses=True``, no framework, no job state): ``XADD`` of N small
   messages in pipelines of 500, then one consumer group drained with ``XREADGROUP COUNT 500`` plus one
   pipelined ``XACK`` + ``XDEL`` per batch: about the most one asyncio client can push through Redis Streams.
2. **aqueue**: N jobs of a no-op task on a fresh queue, enqueued with ``Tasks.enqueue_many`` (timed twice:
   spec building + ``enqueue_many`` as a user would write it, and the ``enqueue_many`` call alone), then
   drained by one ``Worker(tasks, concurrency=C).run(burst=True)``. Afterwards it checks that every job
   succeeded and the ready streams are empty.

Around each phase it samples Redis' ``INFO cpu`` and ``INFO commandstats`` and this process' CPU time, so each
line shows whether the time went to Python or to Redis, and how much of Redis' time was Lua (``evalsha``).
``--middleware`` wraps every job in one pass-through ``@tasks.middleware`` (what one costs per job); ``--headers``
gives every job one header (``correlation_id``), which the middleware reads when both are given; ``--logs`` makes
the task log one INFO line, kept on its record (job logs: what one line costs per job).
``--commandstats`` adds Redis' time per command (including those run inside the scripts) for the main phases.
The table at the end compares aqueue with the floor and marks the targets: drain >= 20,000 jobs/s and >= 1/3
of the floor drain, bulk enqueue >= 30,000 jobs/s. Every key the benchmark created is deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from _common import delete_keys

import aqueue

BATCH = 500  # floor pipeline size and XREADGROUP COUNT
DRAIN_TARGET = 20_000.0  # jobs/s
DRAIN_FLOOR_SHARE = 1 / 3
ENQUEUE_TARGET = 30_000.0  # jobs/s

Body = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class ServerSample:
    """Redis' own counters at one moment: CPU seconds and per-command (calls, usec) totals."""

    cpu: float
    commands: dict[str, tuple[int, int]]

    @classmethod
    async def take(cls, r: aioredis.Redis) -> ServerSample:
        cpu = await r.info("cpu")
        stats = await r.info("commandstats")
        commands = {
            key.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
            for key, v in stats.items()
            if isinstance(v, dict)
        }
        return cls(float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), commands)

    def since(self, before: ServerSample) -> dict[str, tuple[int, int]]:
        """Per-command (calls, usec) between ``before`` and this sample, busiest first."""
        diff = {}
        for name, (calls, usec) in self.commands.items():
            c0, u0 = before.commands.get(name, (0, 0))
            if calls > c0:
                diff[name] = (calls - c0, usec - u0)
        return dict(sorted(diff.items(), key=lambda kv: -kv[1][1]))


@dataclass(frozen=True)
class Phase:
    """One timed phase: items, wall seconds, this process' CPU seconds, and what Redis did meanwhile."""

    name: str
    items: int
    seconds: float
    py_cpu: float
    redis_cpu: float
    commands: dict[str, tuple[int, int]]  # calls and usec per command, including those run inside Lua

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("inf")

    def describe(self) -> str:
        line = (
            f"  {self.name:<28} {self.items:>7} in {self.seconds:6.3f} s = {self.rate:>8,.0f}/s |"
            f" cpu: python {self.py_cpu:5.2f} s, redis {self.redis_cpu:5.2f} s"
            f" ({100 * self.redis_cpu / self.seconds:3.0f}% of wall)"
        )
        calls, usec = self.commands.get("evalsha", (0, 0))
        if calls:
            line += f" | evalsha: {calls} calls, {usec / 1e6:.2f} s = {usec / self.items:.1f} us/item"
        return line

    def breakdown(self, top: int = 12) -> str:
        """Redis time per command in this phase (script time and, separately, the commands scripts ran)."""
        lines = [f"  redis commandstats during {self.name!r} (commands inside Lua are counted too):"]
        for name, (calls, usec) in list(self.commands.items())[:top]:
            lines.append(
                f"    {name:<12} {calls:>8} calls {usec / 1e3:9.1f} ms {usec / calls:7.2f} us/call"
                f" {usec / self.items:6.2f} us/item"
            )
        return "\n".join(lines)


async def timed(r: aioredis.Redis, name: str, items: int, body: Body) -> tuple[Phase, Any]:
    """Run ``body``; measure wall time, this process' CPU time and Redis' CPU and command time around it."""
    before = await ServerSample.take(r)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    result = await body()
    seconds = time.perf_counter() - t0
    py_cpu = time.process_time() - cpu0
    after = await ServerSample.take(r)
    phase = Phase(name, items, seconds, py_cpu, after.cpu - before.cpu, after.since(before))
    print(phase.describe(), flush=True)
    return phase, result


# -- floor: raw redis-py -------------------------------------------------------------------------------------


async def floor_enqueue(r: aioredis.Redis, stream: str, n: int) -> None:
    for start in range(0, n, BATCH):
        async with r.pipeline(transaction=False) as pipe:
            for _ in range(min(BATCH, n - start)):
                pipe.xadd(stream, {"j": uuid.uuid4().hex})
            await pipe.execute()


async def floor_drain(r: aioredis.Redis, stream: str, group: str) -> int:
    drained = 0
    while True:
        # RESP2 reply: [[stream, [(id, fields), ...]]] (redis-py types it as a RESP2/RESP3 union)
        reply: Any = await r.xreadgroup(group, "c1", {stream: ">"}, count=BATCH)
        if not reply:
            return drained
        ids = [msg_id for _, entries in reply for msg_id, _fields in entries]
        if not ids:
            return drained
        async with r.pipeline(transaction=False) as pipe:
            pipe.xack(stream, group, *ids)
            pipe.xdel(stream, *ids)
            await pipe.execute()
        drained += len(ids)


async def run_floor(r: aioredis.Redis, n: int) -> tuple[Phase, Phase]:
    stream = f"aqueue-bench-floor:{uuid.uuid4().hex[:8]}"
    group = "g"
    try:
        enq, _ = await timed(r, "floor XADD (pipelined)", n, lambda: floor_enqueue(r, stream, n))
        await r.xgroup_create(stream, group, id="0")
        read = functools.partial(floor_drain, r, stream, group)
        drain, drained = await timed(r, "floor XREADGROUP+XACK+XDEL", n, read)
        if drained != n:
            raise SystemExit(f"floor drained {drained} messages, expected {n}")
    finally:
        await r.delete(stream)
    return enq, drain


# -- aqueue --------------------------------------------------------------------------------------------------


async def noop_fn() -> None:
    """The benchmarked task: does nothing, so the drain measures aqueue alone."""


_job_log = logging.getLogger("bench.job")


async def logging_fn() -> None:
    """The ``--logs`` variant: one INFO line, kept on the job's record (no handler prints it)."""
    _job_log.info("did nothing")


async def echo_fn(x: int) -> int:
    """The variant with an argument and a result (``--task echo``)."""
    return x


@dataclass(frozen=True)
class AqueueResult:
    build: Phase
    enqueue_many: Phase
    drain: Phase
    ok: bool


async def passthrough(job: aqueue.JobContext) -> AsyncIterator[None]:
    """The ``--middleware`` variant's one middleware: reads the job's headers, does nothing else."""
    job.headers.get("correlation_id")
    yield


async def run_aqueue(
    r: aioredis.Redis,
    url: str,
    n: int,
    concurrency: int,
    task_kind: str,
    prefetch: int,
    middleware: bool = False,
    headers: bool = False,
    logs: bool = False,
) -> AqueueResult:
    queue = f"bench-{uuid.uuid4().hex[:10]}"
    tasks = aqueue.Tasks(queue, url)
    if middleware:
        tasks.middleware(passthrough)

    if logs:
        _job_log.setLevel(logging.INFO)  # the record is made; with no handler configured, nothing prints it
    noop = tasks.task(logging_fn if logs else noop_fn)
    echo = tasks.task(echo_fn)
    if headers:
        noop = noop.with_options(headers={"correlation_id": "c-42"})
        echo = echo.with_options(headers={"correlation_id": "c-42"})

    def build() -> list[aqueue.JobSpec[Any]]:
        if task_kind == "echo":
            return [echo.spec(i) for i in range(n)]
        return [noop.spec() for _ in range(n)]

    async def build_async() -> list[aqueue.JobSpec[Any]]:
        return build()

    try:
        await tasks._broker()  # connect and load the scripts outside the timings
        build_phase, specs = await timed(r, f"aqueue {task_kind}.spec() x N", n, build_async)
        enqueue = functools.partial(tasks.enqueue_many, specs)
        enq_phase, handles = await timed(r, "aqueue enqueue_many", n, enqueue)
        del specs, enqueue, handles  # do not keep 2N objects alive (and scanned by the GC) during the drain
        worker = aqueue.Worker(tasks, concurrency=concurrency, prefetch=prefetch)
        drain_phase, _ = await timed(
            r, f"aqueue Worker drain (C={concurrency}, P={prefetch})", n, functools.partial(worker.run, burst=True)
        )

        info = await tasks.info()
        succeeded = info.stats.get("succeeded", 0)
        lengths = [int(await r.xlen(s)) for s in tasks._keys.streams]
        ok = succeeded == n and not any(lengths) and worker.processed == n
        print(
            f"  check: succeeded={succeeded}/{n}, worker.processed={worker.processed},"
            f" failed={info.stats.get('failed', 0)}, ready stream lengths={lengths},"
            f" active={info.active} -> {'OK' if ok else 'FAILED'}",
            flush=True,
        )
    finally:
        await tasks.close()
        deleted = await delete_keys(r, tasks._keys.prefix)
        print(f"  cleanup: deleted {deleted} keys of queue {queue}", flush=True)
    return AqueueResult(build_phase, enq_phase, drain_phase, ok)


# -- report --------------------------------------------------------------------------------------------------


def mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report(floor_enq: Phase, floor_drain: Phase, aq: AqueueResult) -> None:
    user_enq = aq.enqueue_many.items / (aq.build.seconds + aq.enqueue_many.seconds)
    rows = [
        ("enqueue (spec() + enqueue_many)", floor_enq.rate, user_enq),
        ("enqueue (enqueue_many alone)", floor_enq.rate, aq.enqueue_many.rate),
        ("drain (Worker.run(burst=True))", floor_drain.rate, aq.drain.rate),
    ]
    print()
    print(f"{'':<32} {'floor msgs/s':>13} {'aqueue jobs/s':>14} {'aqueue/floor':>13}")
    for label, floor_rate, aq_rate in rows:
        print(f"{label:<32} {floor_rate:>13,.0f} {aq_rate:>14,.0f} {aq_rate / floor_rate:>13.2f}")
    share = DRAIN_FLOOR_SHARE * floor_drain.rate
    targets = [
        (f"drain >= {DRAIN_TARGET:,.0f} jobs/s", aq.drain.rate, aq.drain.rate >= DRAIN_TARGET),
        (f"drain >= 1/3 of floor drain ({share:,.0f} jobs/s)", aq.drain.rate, aq.drain.rate >= share),
        (f"bulk enqueue >= {ENQUEUE_TARGET:,.0f} jobs/s", user_enq, user_enq >= ENQUEUE_TARGET),
    ]
    print()
    print("targets:")
    for label, value, ok in targets:
        print(f"  {label:<45} {value:>10,.0f}  {mark(ok)}")
    print(f"  {'all jobs succeeded, ready streams empty':<45} {'':>10}  {mark(aq.ok)}")


async def main_async(args: argparse.Namespace) -> int:
    r = aioredis.Redis.from_url(args.redis, decode_responses=True)
    try:
        await r.ping()
        server = await r.info("server")
        print(
            f"aqueue throughput: N={args.jobs} C={args.concurrency} prefetch={args.prefetch} task={args.task}"
            f" middleware={'1' if args.middleware else '0'} headers={'1' if args.headers else '0'}"
            f" logs={'1' if args.logs else '0'}"
            f" redis={args.redis}"
            f" (Redis {server['redis_version']})",
            flush=True,
        )
        floor_enq, floor_drn = await run_floor(r, args.jobs)
        aq = await run_aqueue(
            r,
            args.redis,
            args.jobs,
            args.concurrency,
            args.task,
            args.prefetch,
            args.middleware,
            args.headers,
            args.logs,
        )
        report(floor_enq, floor_drn, aq)
        if args.commandstats:
            for phase in (floor_drn, aq.enqueue_many, aq.drain):
                print()
                print(phase.breakdown())
        return 0 if aq.ok else 1
    finally:
        await r.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="messages/jobs per phase (default 100000)")
    parser.add_argument("--concurrency", type=int, default=100, help="worker concurrency (default 100)")
    parser.add_argument(
        "--prefetch", type=int, default=0, help="Worker prefetch: jobs claimed beyond free slots (default 0)"
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL")
    parser.add_argument(
        "--task", choices=("noop", "echo"), default="noop", help="noop() or echo(x: int) -> x (default noop)"
    )
    parser.add_argument("--middleware", action="store_true", help="wrap every job in one pass-through middleware")
    parser.add_argument("--headers", action="store_true", help="give every job one header")
    parser.add_argument("--logs", action="store_true", help="the task logs one INFO line (kept on the job)")
    parser.add_argument(
        "--commandstats", action="store_true", help="also print Redis time per command for the main phases"
    )
    args = parser.parse_args()
    if args.jobs < 1 or args.concurrency < 1 or args.prefetch < 0:
        parser.error("--jobs and --concurrency must be >= 1, --prefetch >= 0")
    raise SystemExit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
