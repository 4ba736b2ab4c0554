"""Memory of a worker process: 1,000 idle slots, then whether RSS grows with the number of jobs run.

Run from the repository root::

    python benchmarks/memory.py [--jobs 200000] [--warmup 20000] [--chunk 20000] [--concurrency 1000]
                                [--idle-seconds 3] [--succeeded-ttl 1] [--expire-wait 3] [--redis URL]
                                [--tracemalloc]

Everything runs in this one process (no subprocess), on a fresh queue of the real Redis:

1. RSS (``VmRSS`` of ``/proc/self/status``: the current resident size, not the peak) after importing aqueue, and
   after connecting to Redis (scripts loaded).
2. A ``Worker(tasks, concurrency=1000)`` started with ``run()`` on the empty queue; after ``--idle-seconds`` its
   1,000 slot coroutines are idle, waiting for work: RSS again. Target: **RSS <= 80 MB**.
3. A drain of ``--jobs`` no-op jobs by that running worker: jobs are enqueued in chunks of ``--chunk`` with
   ``enqueue_many`` and each chunk is drained (``stats.succeeded`` reaches the running total) before the next is
   sent. After every chunk: ``gc.collect()``, then RSS. The first ``--warmup`` jobs warm the process up (allocator
   arenas, caches, redis-py buffers); growth per job is ``(RSS after all jobs - RSS after warm-up) / (jobs -
   warmup)``. Target: **< 1 byte/job** (threshold ``GROWTH_TARGET``), i.e. 180,000 jobs may add less than
   176 KiB: no per-job growth beyond allocator noise (one retained 100-byte object per job would be 100
   bytes/job). Printed beside it, to tell retention from allocator high water: the least-squares slope through
   the post-warm-up samples and through the second half's samples, and the live blocks of Python's allocator
   (``sys.getallocatedblocks()``) at each sample. Objects kept per job grow the live blocks with the jobs; a
   fragmented heap (pymalloc arenas and glibc heap holding a few live objects each, left by the 20,000-job
   ``enqueue_many`` peaks) raises RSS for a while at flat live blocks, then RSS stops growing. Producer and
   worker share this process, so the producer's peaks count: with ``--chunk 5000`` they are 4x smaller.

``--tracemalloc`` also traces Python allocations from the start of the drain and prints the ten source lines whose
live allocations grew most between the warm-up sample and the last one (tracing adds its own memory, so RSS
figures of such a run are higher than without it).

Redis side: the queue uses ``QueueSettings(succeeded_ttl=1.0)`` (default 24 h) so the job records of the run
expire while the benchmark watches. ``INFO memory used_memory`` (the whole server: other clients' keys count too)
and this queue's own keys (count, ``MEMORY USAGE`` sum, job records left, events stream length) are printed
before the drain, right after it and ``--expire-wait`` seconds later. Expected after the wait: no job record left,
the events stream capped near ``events_maxlen`` (100,000 by default), ready streams empty; the ``done:succeeded``
index keeps what finished within the last ``succeeded_ttl`` before the last settle (settles trim it).

Every key of the queue is deleted at the end. Times and sizes are printed, never asserted; the exit code is 1 only
if a job did not succeed or the drain stalled.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
import tracemalloc
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis
from _common import delete_keys

import aqueue

MB = 1024 * 1024
IDLE_RSS_TARGET = 80 * MB  # bytes, 1,000 idle slots
GROWTH_TARGET = 1.0  # bytes of RSS per job after the warm-up
STALL_SECONDS = 60.0  # no progress for this long: give up


def rss() -> int:
    """This process' current resident set size in bytes (``VmRSS``)."""
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def settled_rss() -> int:
    gc.collect()
    return rss()


def mib(n: float) -> str:
    return f"{n / MB:7.1f} MiB"


async def noop_fn() -> None:
    """The benchmarked task: does nothing."""


@dataclass(frozen=True)
class RedisSide:
    """The server's memory and this queue's keys at one moment."""

    used_memory: int
    keys: int
    key_bytes: int
    job_records: int
    events: int
    events_bytes: int
    done_bytes: int
    ready: int

    def describe(self, label: str) -> str:
        return (
            f"  {label:<24} used_memory {mib(self.used_memory)} | queue keys {self.keys:>7,}"
            f" ({mib(self.key_bytes).strip()}) | job records {self.job_records:>7,}"
            f" | events {self.events:>7,} ({mib(self.events_bytes).strip()})"
            f" | done:succeeded {mib(self.done_bytes).strip()} | ready {self.ready}"
        )


async def redis_side(r: aioredis.Redis, tasks: aqueue.Tasks) -> RedisSide:
    keys = tasks._keys
    used = int((await r.info("memory"))["used_memory"])
    names = [k async for k in r.scan_iter(match=f"{keys.prefix}*", count=1000)]
    sizes: dict[str, int] = {}
    for start in range(0, len(names), 1000):
        batch = names[start : start + 1000]
        async with r.pipeline(transaction=False) as pipe:
            for name in batch:
                pipe.memory_usage(name)
            sizes.update((name, int(v)) for name, v in zip(batch, await pipe.execute(), strict=True) if v is not None)
    job_prefix = keys.job("")
    records = sum(1 for name in sizes if name.startswith(job_prefix))
    ready = sum([int(await r.xlen(s)) for s in keys.streams])
    events = int(await r.xlen(keys.events))
    return RedisSide(
        used,
        len(sizes),
        sum(sizes.values()),
        records,
        events,
        sizes.get(keys.events, 0),
        sizes.get(keys.done("succeeded"), 0),  # its type changes with the core's cleanup index: size only
        ready,
    )


async def wait_succeeded(r: aioredis.Redis, tasks: aqueue.Tasks, target: int) -> int:
    """Poll ``stats.succeeded`` every 50 ms until it reaches ``target``; raise if it stops moving."""
    last, last_change = -1, time.monotonic()
    while True:
        succeeded = int(await r.hget(tasks._keys.stats, "succeeded") or 0)
        if succeeded >= target:
            return succeeded
        now = time.monotonic()
        if succeeded != last:
            last, last_change = succeeded, now
        elif now - last_change > STALL_SECONDS:
            raise RuntimeError(f"drain stalled at {succeeded}/{target} succeeded")
        await asyncio.sleep(0.05)


def slope(points: list[tuple[int, int]]) -> float:
    """Least-squares bytes per job through (jobs, rss) points."""
    n = len(points)
    if n < 2:
        return float("nan")
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else float("nan")


def mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


async def main_async(args: argparse.Namespace) -> int:
    rss_import = settled_rss()
    r = aioredis.Redis.from_url(args.redis, decode_responses=True)
    queue = f"bench-mem-{uuid.uuid4().hex[:10]}"
    settings = aqueue.QueueSettings(succeeded_ttl=args.succeeded_ttl)
    tasks = aqueue.Tasks(queue, args.redis, settings=settings)
    noop = tasks.task(noop_fn)
    worker: aqueue.Worker | None = None
    run: asyncio.Task[None] | None = None
    ok = False
    try:
        server = await r.info("server")
        print(
            f"aqueue memory: jobs={args.jobs} warmup={args.warmup} chunk={args.chunk} C={args.concurrency}"
            f" succeeded_ttl={args.succeeded_ttl}s redis={args.redis} (Redis {server['redis_version']})"
            f" queue={queue}",
            flush=True,
        )
        await tasks._broker()
        rss_connected = settled_rss()
        print(f"  RSS after import           {mib(rss_import)}", flush=True)
        print(f"  RSS after connecting       {mib(rss_connected)}", flush=True)

        worker = aqueue.Worker(tasks, concurrency=args.concurrency)
        run = asyncio.create_task(worker.run(), name="bench-worker")
        await asyncio.sleep(args.idle_seconds)
        if run.done():
            run.result()  # surface a start-up failure
        rss_idle = settled_rss()
        print(
            f"  RSS, {args.concurrency} idle slots       {mib(rss_idle)}"
            f" (+{mib(rss_idle - rss_connected).strip()} for the worker; {worker.running_jobs} running,"
            f" {len(asyncio.all_tasks())} asyncio tasks)",
            flush=True,
        )

        before = await redis_side(r, tasks)
        print(before.describe("redis before drain"), flush=True)

        if args.tracemalloc:
            tracemalloc.start(args.tracemalloc_frames)
        samples: list[tuple[int, int]] = []  # (jobs done, rss) after each chunk
        blocks: list[int] = []  # sys.getallocatedblocks() at each sample
        snap_warm: tracemalloc.Snapshot | None = None
        rss_warm = blocks_warm = 0
        done = 0
        t0 = time.perf_counter()
        while done < args.jobs:
            n = min(args.chunk, args.jobs - done, args.warmup - done if done < args.warmup else args.jobs)
            specs = [noop.spec() for _ in range(n)]
            await tasks.enqueue_many(specs)
            del specs
            done += n
            await wait_succeeded(r, tasks, done)
            sample = settled_rss()
            samples.append((done, sample))
            blocks.append(sys.getallocatedblocks())
            elapsed = time.perf_counter() - t0
            print(
                f"    {done:>9,} jobs  RSS {mib(sample)}  live Python blocks {blocks[-1]:>9,}"
                f"  ({done / elapsed:,.0f} jobs/s so far)",
                flush=True,
            )
            if done == args.warmup:
                rss_warm, blocks_warm = sample, blocks[-1]
                if args.tracemalloc:
                    snap_warm = tracemalloc.take_snapshot()
        drain_seconds = time.perf_counter() - t0
        rss_final = samples[-1][1]
        snap_final = tracemalloc.take_snapshot() if args.tracemalloc else None

        after = await redis_side(r, tasks)
        print(after.describe("redis after drain"), flush=True)
        await asyncio.sleep(args.expire_wait)
        later = await redis_side(r, tasks)
        print(later.describe(f"redis {args.expire_wait:g} s later"), flush=True)

        stats = (await tasks.info()).stats
        succeeded = int(stats.get("succeeded", 0))
        unhappy = {k: v for k, v in stats.items() if k in ("failed", "retried", "dead") and v}
        ok = succeeded == args.jobs and not unhappy
        print(
            f"  check: succeeded={succeeded}/{args.jobs} worker.processed={worker.processed}"
            f" other counters={unhappy or 'none'} -> {'OK' if ok else 'FAILED'}",
            flush=True,
        )

        if snap_warm is not None and snap_final is not None:
            filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
            diff = snap_final.filter_traces(filters).compare_to(snap_warm.filter_traces(filters), "lineno")
            print()
            print(f"tracemalloc: top 10 growth between {args.warmup:,} and {args.jobs:,} jobs:")
            for stat in diff[:10]:
                print(f"  {stat}")
            tracemalloc.stop()

        measured = args.jobs - args.warmup
        growth = (rss_final - rss_warm) / measured if measured > 0 else float("nan")
        fitted = slope([s for s in samples if s[0] >= args.warmup])
        half = slope([s for s in samples if s[0] >= args.jobs // 2])
        print()
        print(f"{'RSS idle (C=' + str(args.concurrency) + ')':<32} {mib(rss_idle)}")
        print(f"{'RSS after warm-up (' + format(args.warmup, ',') + ')':<32} {mib(rss_warm)}")
        print(f"{'RSS after ' + format(args.jobs, ',') + ' jobs':<32} {mib(rss_final)}")
        print(f"{'growth per job (two points)':<32} {growth:9.2f} B/job ({(rss_final - rss_warm) / 1024:+,.0f} KiB)")
        print(f"{'growth per job (fitted slope)':<32} {fitted:9.2f} B/job")
        print(f"{'growth per job, second half':<32} {half:9.2f} B/job (slope from {args.jobs // 2:,} jobs on)")
        print(
            f"{'live Python blocks':<32} {blocks_warm:>9,} after warm-up, {blocks[-1]:,} at the end"
            f" ({(blocks[-1] - blocks_warm) / measured:+.4f} per job)"
        )
        print(f"{'drain rate':<32} {args.jobs / drain_seconds:9,.0f} jobs/s (chunked, with sampling)")
        print(
            f"{'redis used_memory':<32} before {mib(before.used_memory).strip()}, after"
            f" {mib(after.used_memory).strip()}, {args.expire_wait:g} s later {mib(later.used_memory).strip()}"
        )
        print()
        print("targets:")
        rows = [
            (f"RSS with {args.concurrency} idle slots <= 80 MB", f"{rss_idle / 1e6:.1f} MB", rss_idle <= 80e6),
            (f"RSS growth < {GROWTH_TARGET:g} B/job after warm-up", f"{growth:.2f} B/job", growth < GROWTH_TARGET),
            ("no job record left after ttl + wait", f"{later.job_records} left", later.job_records == 0),
            ("ready streams empty", f"{later.ready} entries", later.ready == 0),
            ("all jobs succeeded", f"{succeeded:,}", ok),
        ]
        if args.concurrency != 1000:
            rows[0] = (rows[0][0] + " (target is for 1000)", rows[0][1], rows[0][2])
        for label, value, met in rows:
            print(f"  {label:<48} {value:>14}  {mark(met)}")
        return 0 if ok else 1
    finally:
        if worker is not None and run is not None:
            await worker.stop()
            await asyncio.gather(run, return_exceptions=True)
        await tasks.close()
        deleted = await delete_keys(r, tasks._keys.prefix)
        print(f"  cleanup: deleted {deleted} keys of queue {queue}", flush=True)
        await r.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=200_000, help="jobs in the drain (default 200000)")
    parser.add_argument("--warmup", type=int, default=20_000, help="jobs before the first growth sample (20000)")
    parser.add_argument("--chunk", type=int, default=20_000, help="jobs per enqueue_many and RSS sample (20000)")
    parser.add_argument("--concurrency", type=int, default=1000, help="worker concurrency (default 1000)")
    parser.add_argument("--idle-seconds", type=float, default=3.0, help="idle time before the idle RSS (3)")
    parser.add_argument("--succeeded-ttl", type=float, default=1.0, help="seconds job records are kept (1)")
    parser.add_argument("--expire-wait", type=float, default=3.0, help="seconds before the last Redis sample (3)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL")
    parser.add_argument("--tracemalloc", action="store_true", help="print the top 10 allocation sites' growth")
    parser.add_argument("--tracemalloc-frames", type=int, default=1, help="frames kept per traced allocation (1)")
    args = parser.parse_args()
    if args.concurrency < 1 or args.chunk < 1 or args.warmup < 1 or args.jobs <= args.warmup:
        parser.error("--concurrency, --chunk and --warmup must be >= 1 and --jobs > --warmup")
    if args.idle_seconds < 0 or args.expire_wait < 0 or args.succeeded_ttl <= 0:
        parser.error("--idle-seconds and --expire-wait must be >= 0, --succeeded-ttl > 0")
    raise SystemExit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
