"""``async with tasks.batch():``: the jobs enqueued in a block that raises are cancelled before they start; running
ones are left to finish and the exception says so; duplicates' existing jobs are never touched; batches nest. On
``memory://`` and the real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import aqueue
from tests.helpers import MakeTasks, StartWorker, wait_until


class Boom(Exception):
    pass


async def test_a_block_that_raises_cancels_the_jobs_it_enqueued(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()

    @tasks.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    before = await add.enqueue(0, 0)
    with pytest.raises(Boom) as raised:
        async with tasks.batch() as batch:
            one = await add.enqueue(1, 2)
            many = await tasks.enqueue_many([add.spec(i, i) for i in range(3)])
            later = await add.with_options(delay=60).enqueue(5, 5)
            raise Boom("the order failed")
    assert [j.id for j in batch.jobs] == [one.id, *(j.id for j in many), later.id]
    assert sorted(batch.cancelled) == sorted(j.id for j in batch.jobs) and not batch.running and not batch.finished
    for job in batch.jobs:
        assert (await job.status()) == aqueue.JobStatus.CANCELLED
        with pytest.raises(aqueue.JobCancelled):
            await job.result(timeout=1)
    assert (await before.status()) == aqueue.JobStatus.QUEUED  # made outside the block: untouched
    assert any("cancelled 5 of the 5 jobs enqueued in the block" in n for n in raised.value.__notes__)
    assert sum((await tasks.info()).queued.values()) == 1


async def test_a_block_that_ends_normally_keeps_its_jobs(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()

    @tasks.task(name="noop")
    async def noop() -> None: ...

    async with tasks.batch() as batch:
        job = await noop.enqueue()
    assert batch.cancelled == [] and [j.id for j in batch.jobs] == [job.id]
    assert (await job.status()) == aqueue.JobStatus.QUEUED
    await noop.enqueue()  # after the block: not noted
    assert len(batch.jobs) == 1


async def test_running_jobs_are_left_to_finish_and_said_so(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()
    started = asyncio.Event()
    release = asyncio.Event()

    @tasks.task(name="slow")
    async def slow() -> str:
        started.set()
        await release.wait()
        return "done"

    @tasks.task(name="fast")
    async def fast() -> str:
        return "fast"

    await start_worker(tasks, concurrency=1)
    with pytest.raises(Boom) as raised:
        async with tasks.batch() as batch:
            finished = await fast.enqueue()
            assert await finished.result(timeout=10) == "fast"
            running = await slow.enqueue()
            await asyncio.wait_for(started.wait(), 10)
            waiting = await fast.with_options(delay=60).enqueue()
            raise Boom
    assert (batch.finished, batch.running, batch.cancelled) == ([finished.id], [running.id], [waiting.id]), batch
    note = "\n".join(raised.value.__notes__)
    assert "cancelled 1 of the 3 jobs" in note and "1 already running, left to finish: " + running.id in note, note
    assert "1 already finished" in note, note
    release.set()
    assert await running.result(timeout=10) == "done"
    with pytest.raises(aqueue.JobCancelled):
        await waiting.result(timeout=1)


async def test_a_duplicates_existing_job_is_never_cancelled(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()

    @tasks.task(name="mail")
    async def mail(to: str) -> None: ...

    existing = await mail.with_options(dedup_key="welcome:ann").enqueue("ann")
    with pytest.raises(Boom):
        async with tasks.batch() as batch:
            again = await mail.with_options(dedup_key="welcome:ann").enqueue("ann")
            new = await mail.enqueue("bob")
            raise Boom
    assert again.id == existing.id and again.duplicate
    assert batch.created == [new.id] and batch.cancelled == [new.id]
    assert (await existing.status()) == aqueue.JobStatus.QUEUED


async def test_batches_nest_and_cancellation_of_the_caller_counts_as_failure(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()

    @tasks.task(name="noop")
    async def noop() -> None: ...

    jobs: list[aqueue.Job[Any]] = []
    with pytest.raises(Boom):
        async with tasks.batch() as outer:
            async with tasks.batch() as inner:
                jobs.append(await noop.enqueue())
            jobs.append(await noop.enqueue())
            raise Boom
    assert inner.cancelled == [] and sorted(outer.cancelled) == sorted(j.id for j in jobs)

    async def caller() -> None:
        async with tasks.batch():
            jobs.append(await noop.enqueue())
            await asyncio.sleep(60)

    task = asyncio.create_task(caller())
    await wait_until(lambda: len(jobs) == 3, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await jobs[2].status()) == aqueue.JobStatus.CANCELLED


async def test_workflow_and_chain_steps_are_part_of_the_batch(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()

    @tasks.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(Boom) as raised:
        async with tasks.batch() as batch:
            last = await add.spec(1, 2).then(add.spec_after(3)).enqueue()
            raise Boom
    assert len(batch.jobs) == 2 and last.id in batch.cancelled and sorted(batch.cancelled) == sorted(batch.created)
    for job in batch.jobs:
        assert (await job.status()) == aqueue.JobStatus.CANCELLED
    assert "cancelled 2 of the 2 jobs" in raised.value.__notes__[0]
