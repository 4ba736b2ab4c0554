"""Result retention per job (``keep_result``): deleted as the job succeeds, kept for a time, or kept forever."""

from __future__ import annotations

import asyncio
import math

import pytest

import aqueue
from aqueue._core.options import KEEP_FOREVER
from tests.helpers import MakeTasks, StartWorker, events_of, wait_until


async def _indexed(tasks: aqueue.Tasks, job_id: str) -> bool:
    """Whether the cleanup index of succeeded jobs lists ``job_id``."""
    broker = await tasks._broker()
    entries = await broker.redis.xrange(tasks._keys.done("succeeded"))
    return any(job_id in fields["ids"].split(",") for _, fields in entries)


async def test_keep_result_0_deletes_the_record_yet_a_waiting_caller_gets_the_result(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()
    gate = asyncio.Event()

    @tasks.task
    async def compute(n: int) -> dict[str, int]:
        await gate.wait()
        return {"double": n * 2}

    await start_worker(tasks)
    job = await compute.with_options(keep_result=0).enqueue(21)
    hub = await tasks._event_hub()
    waiting = asyncio.create_task(job.result(timeout=5))
    await wait_until(lambda: bool(hub._listeners))  # result() read the record and listens for the event
    gate.set()
    assert await waiting == {"double": 42}
    with pytest.raises(aqueue.UnknownJob):
        await job.record()
    assert not await _indexed(tasks, job.id)
    with pytest.raises(aqueue.UnknownJob):  # a caller coming after the record went has nothing to read
        await job.result(timeout=1)
    assert not hub._listeners  # result() stopped listening


async def test_keep_result_0_result_is_found_in_the_events_when_the_listener_missed_it(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()

    @tasks.task
    async def value() -> str:
        return "v"

    await start_worker(tasks)
    job = await value.with_options(keep_result=0).enqueue()

    async def succeeded() -> bool:
        return bool(await events_of(tasks, "succeeded", job=job.id))

    await wait_until(succeeded)
    assert await job._result_event() == '"v"'


async def test_succeeded_event_carries_no_result_unless_the_record_goes(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()

    @tasks.task
    async def value() -> str:
        return "v"

    await start_worker(tasks)
    plain, kept = await value.enqueue(), await value.with_options(keep_result=60).enqueue()
    for job in (plain, kept):
        assert await job.result(timeout=5) == "v"
        (event,) = await events_of(tasks, "succeeded", job=job.id)
        assert "result" not in event


async def test_keep_result_forever_survives_the_age_out_and_cleanup(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks(aqueue.QueueSettings(succeeded_ttl=0.3))

    @tasks.task
    async def value(n: int) -> int:
        return n

    await start_worker(tasks)
    plain = await value.enqueue(1)
    forever = await value.with_options(keep_result=KEEP_FOREVER).enqueue(2)
    assert [await plain.result(timeout=5), await forever.result(timeout=5)] == [1, 2]
    broker = await tasks._broker()

    async def plain_gone() -> bool:
        return not await broker.get_record(plain.id)

    await wait_until(plain_gone, timeout=5)
    assert await tasks.cleanup(older_than=0) == 0
    assert await broker.redis.pttl(tasks._keys.job(forever.id)) == -1
    record = await forever.record()
    assert (record.result, record.options.keep_result) == (2, math.inf)
    assert record.options.as_json()["keep_result"] == "forever"
    assert not await _indexed(tasks, forever.id)


async def test_keep_result_in_seconds_sets_the_record_ttl(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()

    @tasks.task
    async def value() -> int:
        return 1

    await start_worker(tasks)
    short = await value.with_options(keep_result=30).enqueue()
    plain = await value.enqueue()
    await short.result(timeout=5)
    await plain.result(timeout=5)
    broker = await tasks._broker()
    assert 25_000 < await broker.redis.pttl(tasks._keys.job(short.id)) <= 30_000
    assert await broker.redis.pttl(tasks._keys.job(plain.id)) > 30_000  # the queue's 24 h
    assert await _indexed(tasks, short.id)  # a finite retention stays in reach of tasks.cleanup()
    assert await tasks.cleanup(older_than=0) == 2
    with pytest.raises(aqueue.UnknownJob):
        await short.record()


async def test_keep_result_applies_to_success_only(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()

    @tasks.task(max_attempts=1)
    async def broken() -> None:
        raise ValueError("no")

    await start_worker(tasks)
    job = await broken.with_options(keep_result=0).enqueue()
    with pytest.raises(aqueue.JobFailed):
        await job.result(timeout=5)
    assert (await job.record()).status is aqueue.JobStatus.DEAD  # kept for reprocess, dead_ttl


async def test_a_job_id_is_free_again_once_its_record_was_deleted_at_success(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()

    @tasks.task
    async def value(n: int) -> int:
        return n

    await start_worker(tasks)
    first = await value.with_options(job_id="once", keep_result=0).enqueue(1)
    assert await first.result(timeout=5) == 1
    second = await value.with_options(job_id="once").enqueue(2)
    assert second.duplicate is False
    assert await second.result(timeout=5) == 2


@pytest.mark.parametrize("bad", [-1, -0.5, math.nan, "1", True, -math.inf])
@pytest.mark.no_redis
def test_keep_result_out_of_bounds_is_refused(bad: object) -> None:
    with pytest.raises(aqueue.ConfigurationError, match="keep_result"):
        aqueue.JobOptions(keep_result=bad)  # type: ignore[arg-type]
