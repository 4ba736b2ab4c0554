"""Weighted and strict priority reads."""

from __future__ import annotations

import asyncio
from collections import Counter

import aqueue
from tests.helpers import MakeTasks, StartWorker, wait_until

#: These tests run on the 3-master Redis Cluster too (see tests/conftest.py).
ON_CLUSTER = True


async def test_weighted_priorities_share_slots_six_three_one_under_saturation(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()
    order: list[str] = []

    @tasks.task
    async def work(level: str) -> None:
        order.append(level)
        await asyncio.sleep(0.001)

    per_level = 400
    specs = [work.with_options(priority=level).spec(level) for level in ("low", "normal", "high")
             for _ in range(per_level)]  # fmt: skip
    await tasks.enqueue_many(specs)
    await start_worker(tasks, concurrency=10)
    # Measure only while every level still has work waiting: the first 500 jobs (high alone would run out at
    # ~667 at a 6/10 share).
    await wait_until(lambda: len(order) >= 500, 30)
    share = Counter(order[:500])
    assert abs(share["high"] / 500 - 0.6) < 0.05, share
    assert abs(share["normal"] / 500 - 0.3) < 0.05, share
    assert abs(share["low"] / 500 - 0.1) < 0.04, share
    await wait_until(lambda: len(order) == 3 * per_level, 30)


async def test_strict_priority_runs_every_higher_job_first(make_tasks: MakeTasks) -> None:
    tasks = make_tasks(settings=aqueue.QueueSettings(strict_priority=True))
    order: list[str] = []

    @tasks.task
    async def work(level: str) -> None:
        order.append(level)

    # Enqueued lowest first, so FIFO alone would get the order wrong.
    specs = [work.with_options(priority=level).spec(level) for level in ("low", "normal", "high")
             for _ in range(30)]  # fmt: skip
    await tasks.enqueue_many(specs)
    await aqueue.Worker(tasks, concurrency=1).run(burst=True)
    assert order == ["high"] * 30 + ["normal"] * 30 + ["low"] * 30


async def test_low_priority_still_progresses_when_high_is_never_empty(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()
    order: list[str] = []

    @tasks.task
    async def work(level: str) -> None:
        order.append(level)

    await tasks.enqueue_many([work.with_options(priority="high").spec("high") for _ in range(300)])
    await tasks.enqueue_many([work.with_options(priority="low").spec("low") for _ in range(30)])
    await aqueue.Worker(tasks, concurrency=5).run(burst=True)
    assert len(order) == 330
    first_low = order.index("low")
    assert first_low < 20, first_low  # weighted reads reach "low" long before "high" is drained
