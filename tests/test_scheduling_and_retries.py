"""Delayed jobs, retries with backoff, dead-lettering, timeouts."""

from __future__ import annotations

import asyncio

import pytest

import aqueue
from tests.helpers import MakeTasks, StartWorker, events_of

#: These tests run on the 3-master Redis Cluster too (see tests/conftest.py).
ON_CLUSTER = True


async def test_delayed_job_starts_not_before_due_and_within_100ms_after(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()

    @tasks.task
    async def noop() -> None:
        return None

    await start_worker(tasks)
    jobs = [await noop.with_options(delay=d).enqueue() for d in (0.6, 0.3)]
    assert [await j.status() for j in jobs] == [aqueue.JobStatus.SCHEDULED] * 2
    for job, delay in zip(jobs, (0.6, 0.3), strict=True):
        await job.result(timeout=5)
        record = await job.record()
        assert record.enqueued_at is not None and record.started_at is not None
        late = record.started_at - record.enqueued_at - delay
        assert -0.001 <= late <= 0.1, late  # both timestamps come from the Redis clock


async def test_failing_job_retries_with_backoff_then_dead_letters_with_traceback(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()
    calls: list[float] = []

    @tasks.task(max_attempts=3, backoff_base=0.1, backoff_max=1.0)
    async def flaky(n: int) -> None:
        calls.append(asyncio.get_running_loop().time())
        raise ValueError(f"bad input {n}")

    await start_worker(tasks)
    job = await flaky.enqueue(7)
    with pytest.raises(aqueue.JobFailed) as info:
        await job.result(timeout=10)
    assert info.value.error == "ValueError: bad input 7"
    assert "in flaky" in info.value.traceback and "ValueError: bad input 7" in info.value.traceback
    record = await job.record()
    assert (record.status, record.attempts) == (aqueue.JobStatus.DEAD, 3)
    assert len(calls) == 3
    # Backoff: base 0.1 s doubling, each scaled by a jitter factor in [0.5, 1].
    assert calls[1] - calls[0] >= 0.05 and calls[2] - calls[1] >= 0.1
    dead = await (await tasks._broker()).dead_letters()
    assert [(f["job"], f["reason"]) for _, f in dead] == [(job.id, "ValueError: bad input 7")]
    types = [e["type"] for e in await events_of(tasks, job=job.id)]
    assert types == ["enqueued", "started", "failed", "retrying", "queued", "started", "failed", "retrying",
                     "queued", "started", "dead"]  # fmt: skip
    info_now = await tasks.info()
    assert (info_now.dead, info_now.stats["retried"], info_now.stats["dead"]) == (1, 2, 1)


async def test_job_succeeding_on_a_later_attempt_returns_its_result(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()
    attempts = 0

    @tasks.task(max_attempts=3, backoff_base=0.01)
    async def second_time_lucky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 2:
            raise ConnectionError("downstream hiccup")
        return "ok"

    await start_worker(tasks)
    job = await second_time_lucky.enqueue()
    assert await job.result(timeout=5) == "ok"
    assert (await job.record()).attempts == 2


async def test_a_task_raising_retry_is_retried_after_the_delay_it_asks_for(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    """``aqueue.Retry(after=…)`` (say, a 429's Retry-After) replaces the backoff; the attempt counts."""
    tasks = make_tasks()
    calls: list[float] = []

    @tasks.task(max_attempts=3, backoff_base=30.0)  # the usual backoff would be 15-30 s
    async def polite() -> str:
        calls.append(asyncio.get_running_loop().time())
        if len(calls) == 1:
            raise aqueue.Retry("429 from the partner API", after=0.3)
        return "done"

    await start_worker(tasks)
    job = await polite.enqueue()
    assert await job.result(timeout=10) == "done"
    assert 0.3 <= calls[1] - calls[0] < 1.3, calls
    record = await job.record()
    assert record.attempts == 2
    failed = [e for e in await events_of(tasks, job=job.id) if e["type"] == "failed"]
    assert [e["error"] for e in failed] == ["Retry: 429 from the partner API"]


async def test_a_task_raising_retry_with_no_attempts_left_is_dead_lettered(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()

    @tasks.task(max_attempts=2)
    async def never_ready() -> None:
        raise aqueue.Retry(after=0)

    await start_worker(tasks)
    job = await never_ready.enqueue()
    with pytest.raises(aqueue.JobFailed) as info:
        await job.result(timeout=10)
    assert info.value.error == "Retry: retry in 0 s" and info.value.traceback == ""
    assert (await job.record()).attempts == 2


async def test_a_task_raising_reject_is_dead_lettered_at_once(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    """``aqueue.Reject`` means the input is wrong: no further attempt, whatever ``max_attempts`` says."""
    tasks = make_tasks()

    @tasks.task(max_attempts=5)
    async def strict(order: int) -> None:
        raise aqueue.Reject(f"order {order} does not exist")

    await start_worker(tasks)
    job = await strict.enqueue(42)
    with pytest.raises(aqueue.JobFailed) as info:
        await job.result(timeout=10)
    assert info.value.error == "Reject: order 42 does not exist" and info.value.traceback == ""
    assert (await job.record()).attempts == 1
    dead = await (await tasks._broker()).dead_letters()
    assert [(f["job"], f["reason"]) for _, f in dead] == [(job.id, "Reject: order 42 does not exist")]


@pytest.mark.parametrize("after", [-1, float("nan"), float("inf"), 10**9, True, "5"])
def test_retry_refuses_a_delay_that_is_not_seconds_from_0_to_a_year(after: object) -> None:
    with pytest.raises(aqueue.ConfigurationError, match="Retry"):
        aqueue.Retry(after=after)  # type: ignore[arg-type]


async def test_timed_out_attempt_counts_as_a_failure(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()
    started: list[int] = []

    @tasks.task(timeout=0.2, max_attempts=2, backoff_base=0.01)
    async def slow() -> None:
        started.append(1)
        await asyncio.sleep(10)

    await start_worker(tasks)
    job = await slow.enqueue()
    with pytest.raises(aqueue.JobFailed, match=r"timed out after 0\.2 s"):
        await job.result(timeout=5)
    assert len(started) == 2
    # A per-job timeout overrides the task's.
    quick = await slow.with_options(timeout=0.05, max_attempts=1).enqueue()
    with pytest.raises(aqueue.JobFailed, match=r"timed out after 0\.05 s"):
        await quick.result(timeout=5)


async def test_timeout_error_raised_by_the_task_itself_is_reported_as_such(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()

    @tasks.task(timeout=5.0, max_attempts=1)
    async def raises_timeout() -> None:
        raise TimeoutError("upstream took too long")

    await start_worker(tasks)
    job = await raises_timeout.enqueue()
    with pytest.raises(aqueue.JobFailed, match="TimeoutError: upstream took too long"):
        await job.result(timeout=5)


async def test_burst_worker_returns_when_nothing_is_queued_due_or_running(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()
    done: list[int] = []

    @tasks.task
    async def work(i: int) -> None:
        await asyncio.sleep(0.01)
        done.append(i)

    await tasks.enqueue_many([work.spec(i) for i in range(200)])
    later = await work.with_options(delay=60).enqueue(-1)
    await asyncio.wait_for(aqueue.Worker(tasks, concurrency=20).run(burst=True), 30)
    assert sorted(done) == list(range(200))
    assert await later.status() is aqueue.JobStatus.SCHEDULED
