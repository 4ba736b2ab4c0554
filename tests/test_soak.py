"""Soak: 100,000 jobs with mixed outcomes through two workers on a Redis of the test's own, with a short retention.

Afterwards nothing is left in flight (ready streams empty, nothing pending or scheduled), the dead-letter stream
stayed within its cap, every finished record expires, and Redis's memory comes back within 10 % of where it was
before the first job once the retention has passed. ``AQUEUE_SOAK_JOBS`` changes the count (the docs' longer run:
``AQUEUE_SOAK_JOBS=1000000 python -m pytest tests/test_soak.py -s``); ``-s`` shows the figures.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

import aqueue
from tests.helpers import RedisProcess

JOBS = int(os.environ.get("AQUEUE_SOAK_JOBS", "100000"))
RETENTION = 3.0  # seconds: succeeded_ttl and dead_ttl
DEAD_MAXLEN = 2_000


async def _used_memory(r: aioredis.Redis) -> int:
    return int((await r.info("memory"))["used_memory"])


async def _settled_memory(r: aioredis.Redis, seconds: float = 1.0) -> int:
    """used_memory once Redis has had ``seconds`` to run its cron (incremental rehashing, resizing, expiry)."""
    await asyncio.sleep(seconds)
    return await _used_memory(r)


async def test_100k_mixed_jobs_leave_nothing_behind_and_memory_returns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="aqueue")  # not 10,000 lines of expected failures
    server = RedisProcess(tmp_path, appendonly=False)
    server.start()
    settings = aqueue.QueueSettings(
        succeeded_ttl=RETENTION, dead_ttl=RETENTION, events_maxlen=200, dead_maxlen=DEAD_MAXLEN
    )
    tasks = aqueue.Tasks("soak", server.url, settings=settings)
    r = aioredis.Redis(port=server.port, decode_responses=True)
    flaky_seen: set[int] = set()

    @tasks.task(name="ok")
    async def ok(n: int) -> int:
        return n

    @tasks.task(name="flaky", backoff_base=0.01, backoff_max=0.05)
    async def flaky(n: int) -> int:
        if n not in flaky_seen:  # fails its first attempt, succeeds on the retry
            flaky_seen.add(n)
            raise RuntimeError(f"transient #{n}")
        return n

    @tasks.task(name="doomed", max_attempts=2, backoff_base=0.01, backoff_max=0.05)
    async def doomed(n: int) -> None:
        raise ValueError(f"bad input #{n}")

    @tasks.task(name="slow", timeout=0.05, max_attempts=1)
    async def slow(n: int) -> None:
        await asyncio.sleep(1.0)  # always times out: dead-lettered after one attempt

    @tasks.task(name="sync")
    def sync(n: int) -> int:
        return n * 2

    workers: list[aqueue.Worker] = []
    runs: list[asyncio.Task[None]] = []

    def start_workers() -> None:
        for _ in range(2):
            w = aqueue.Worker(tasks, concurrency=200)
            workers.append(w)
            runs.append(asyncio.create_task(w.run(handle_signals=False)))

    async def stop_workers_and_disconnect() -> None:
        for w in workers:
            await w.stop()
        for run in runs:
            await run
        workers.clear()
        runs.clear()
        await tasks.close()

    async def run_mix(count: int, first: int) -> dict[str, float]:
        """Enqueue ``count`` jobs of the mix (numbers from ``first``), wait until every one finished, check that
        nothing is left in flight, stop the workers and disconnect; figures for the report."""
        start_workers()
        before = (await tasks.info()).stats
        specs: list[aqueue.JobSpec[object]] = []
        dead = 0
        for n in range(first, first + count):
            kind = n % 20
            spec: aqueue.JobSpec[object]
            if kind < 12:
                spec = ok.spec(n)
            elif kind < 14:
                spec = flaky.spec(n)  # fails once, then succeeds
            elif kind == 14:
                spec = doomed.spec(n)  # fails twice: dead
            elif kind == 15:
                spec = slow.spec(n) if n % 100 == 15 else ok.spec(n)  # 1 %: times out after 50 ms: dead
            elif kind == 16:
                spec = ok.with_options(delay=0.05 + (n % 7) / 10).spec(n)
            elif kind == 17:
                spec = ok.with_options(priority=("high", "low")[n % 2]).spec(n)
            elif kind == 18:
                spec = ok.with_options(dedup_key=f"d{n // 40}").spec(n)  # 1 of every 2 is a duplicate
            else:
                spec = sync.spec(n)
            specs.append(spec)
            dead += spec.task in ("doomed", "slow")
        began = time.monotonic()
        jobs = await tasks.enqueue_many(specs)
        enqueued_in = time.monotonic() - began
        unique = len({job.id for job in jobs})
        assert count - unique == count // 40, (count, unique)  # the dedup duplicates, and nothing else
        peak = await _used_memory(r)
        peak_dead = 0
        deadline = time.monotonic() + 300
        while True:
            stats = (await tasks.info()).stats
            peak_dead = max(peak_dead, int(await r.xlen(tasks._keys.dead)))
            done = sum(stats.get(k, 0) - before.get(k, 0) for k in ("succeeded", "dead"))
            if done >= unique:
                break
            assert time.monotonic() < deadline, (stats, before, unique)
            await asyncio.sleep(0.2)
        drained_in = time.monotonic() - began
        assert stats.get("dead", 0) - before.get("dead", 0) == dead, (stats, before, dead)
        assert stats["succeeded"] - before.get("succeeded", 0) == unique - dead, (stats, before, unique, dead)

        info = await tasks.info()
        assert info.queued == {"high": 0, "normal": 0, "low": 0} and info.active == 0 and info.scheduled == 0
        assert [await r.xlen(s) for s in tasks._keys.streams] == [0, 0, 0], "settled entries left in a ready stream"
        assert peak_dead <= DEAD_MAXLEN + 200, peak_dead  # MAXLEN ~ trims whole nodes (100 entries)
        await stop_workers_and_disconnect()

        # Retention passes: every record, index and dead-letter entry of these jobs expires by itself.
        deadline = time.monotonic() + RETENTION + 60
        while [k async for k in r.scan_iter(match="aqueue:{soak}:job:*", count=10_000)]:
            assert time.monotonic() < deadline, "finished records did not expire"
            await asyncio.sleep(0.5)
        left = [k async for k in r.scan_iter(match="aqueue:{soak}:*", count=10_000)]
        assert not [k for k in left if ":done:" in k or k.endswith(":dead") or ":dedup:" in k], left
        return {
            "unique": unique, "dead": dead, "enqueued_in": enqueued_in, "drained_in": drained_in, "peak": peak,
            "peak_dead": peak_dead, "keys_left": len(left),
        }  # fmt: skip

    try:
        # The baseline is Redis after this queue has run a small batch of the same mix and its retention has
        # passed (scripts cached, streams and groups created, Redis's own tables sized once), with aqueue's
        # connections closed: Redis spends about 38 KB per client connection, so memory is compared at the same
        # connection count (just this test's own).
        await run_mix(2_000, 0)
        baseline = await _settled_memory(r)
        f = await run_mix(JOBS, 2_000)
        after = await _settled_memory(r, 2.0)
        for _ in range(20):  # Redis shrinks its emptied hash tables over a few cron ticks
            if after <= baseline * 1.10:
                break
            after = await _settled_memory(r, 1.0)
        print(
            f"\nsoak: {JOBS:,} jobs ({f['unique']:,} unique) enqueued in {f['enqueued_in']:.1f} s, drained in "
            f"{f['drained_in']:.1f} s ({f['unique'] / f['drained_in']:,.0f} jobs/s); dead {f['dead']:,}; "
            f"dead-letter peak {f['peak_dead']:,} entries (cap {DEAD_MAXLEN:,}); used_memory baseline "
            f"{baseline / 1e6:.2f} MB, after enqueue {f['peak'] / 1e6:.1f} MB, after retention {after / 1e6:.2f} MB "
            f"({(after - baseline) / baseline:+.1%}); {f['keys_left']} keys left (counters, capped events, empty "
            "streams)"
        )
        assert after <= baseline * 1.10, (baseline, after)
    finally:
        await stop_workers_and_disconnect()
        await r.aclose()
        server.stop()
