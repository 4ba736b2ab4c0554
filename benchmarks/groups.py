"""Throughput with fair groups and with a concurrency limit, against plain jobs in the same run.

Run from the repository root::

    python benchmarks/groups.py [--jobs N] [--concurrency C] [--redis URL]

Each scenario enqueues N no-op jobs on a fresh queue with ``enqueue_many`` and drains them with one
``Worker(tasks, concurrency=C).run(burst=True)``, measuring wall time, this process' CPU and Redis' CPU around the
drain (``INFO cpu``):

- ``plain``: jobs with no group and no limit (the floor every other line is compared with);
- ``groups=1``, ``groups=100``, ``groups=10000``: the same jobs spread round-robin over that many groups;
- ``groups=100 gc=10``: 100 groups with ``QueueSettings(group_concurrency=10)``;
- ``limit=C``: the task has ``concurrency_limit=C`` (never reached: what a permit costs per job);
- ``limit=10``: ``concurrency_limit=10``, below the worker's concurrency (what the limit allows a no-op job).

It also prints the Redis memory the waiting groups take (``INFO memory`` around the enqueue, less the plain
run's, per group) and checks that every job succeeded and nothing is left waiting. The figures are
printed next to the plain run's; nothing is asserted (see docs/queues.md for a run on this machine).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis
from _common import delete_keys

import aqueue


@dataclass(frozen=True)
class Scenario:
    name: str
    groups: int = 0  # 0: jobs without a group
    group_concurrency: int | None = None
    limit: int | None = None  # the task's concurrency_limit


@dataclass(frozen=True)
class Result:
    scenario: Scenario
    jobs: int
    seconds: float
    py_cpu: float
    redis_cpu: float
    memory: int  # Redis memory taken by the enqueued jobs (INFO memory used_memory, before and after enqueueing)

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds


async def redis_cpu(r: aioredis.Redis) -> float:
    cpu = await r.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


async def run(url: str, scenario: Scenario, jobs: int, concurrency: int) -> Result:
    queue = f"bench-groups-{uuid.uuid4().hex[:8]}"
    settings = aqueue.QueueSettings(group_concurrency=scenario.group_concurrency)
    tasks = aqueue.Tasks(queue=queue, redis_url=url, settings=settings)
    r = aioredis.Redis.from_url(url, decode_responses=True)

    @tasks.task(name="noop", concurrency_limit=scenario.limit)
    async def noop() -> None:
        return None

    try:
        n_groups = scenario.groups
        specs = [
            noop.with_options(group=f"tenant-{i % n_groups}").spec() if n_groups else noop.spec() for i in range(jobs)
        ]
        mem0 = int((await r.info("memory"))["used_memory"])
        for start in range(0, jobs, 10_000):
            await tasks.enqueue_many(specs[start : start + 10_000])
        mem1 = int((await r.info("memory"))["used_memory"])
        cpu0, py0, t0 = await redis_cpu(r), time.process_time(), time.perf_counter()
        await aqueue.Worker(tasks, concurrency=concurrency).run(burst=True, handle_signals=False)
        seconds, py_cpu = time.perf_counter() - t0, time.process_time() - py0
        rcpu = await redis_cpu(r) - cpu0
        info = await tasks.info()
        done = info.stats.get("succeeded", 0)
        left = sum(info.queued.values()) + info.grouped + info.active + info.scheduled
        if done != jobs or left:
            print(f"  !! {scenario.name}: {done} of {jobs} succeeded, {left} left")
        return Result(scenario, jobs, seconds, py_cpu, rcpu, mem1 - mem0)
    finally:
        await tasks.close()
        await delete_keys(r, f"aqueue:{{{queue}}}:")
        await r.aclose()


async def main_async(args: argparse.Namespace) -> None:
    c = args.concurrency
    scenarios = [
        Scenario("plain"),
        Scenario("groups=1", groups=1),
        Scenario("groups=100", groups=100),
        Scenario("groups=10000", groups=10_000),
        Scenario("groups=100 gc=10", groups=100, group_concurrency=10),
        Scenario(f"limit={c}", limit=c),
        Scenario("limit=10", limit=10),
    ]
    print(f"{args.jobs:,} no-op jobs per scenario, one worker of concurrency {c}, Redis {args.redis}")
    results: list[Result] = []
    for scenario in scenarios:
        res = await run(args.redis, scenario, args.jobs, c)
        results.append(res)
        print(f"  {scenario.name:<18} {res.rate:>9,.0f} jobs/s", flush=True)
    base = results[0]
    print()
    print(f"{'scenario':<18} {'jobs/s':>9} {'vs plain':>9} {'python us/job':>14} {'redis us/job':>13}  note")
    for res in results:
        note = ""
        if res.scenario.groups >= 1000:  # what the groups add over the same jobs without a group
            note = f"{(res.memory - base.memory) / res.scenario.groups:,.0f} B of Redis memory per waiting group"
        print(
            f"{res.scenario.name:<18} {res.rate:>9,.0f} {res.rate / base.rate:>8.2f}x"
            f" {1e6 * res.py_cpu / res.jobs:>14.1f} {1e6 * res.redis_cpu / res.jobs:>13.1f}  {note}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
