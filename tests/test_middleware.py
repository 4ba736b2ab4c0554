"""Job middleware (``@tasks.middleware``): order, the outcome it sees (the result after its ``yield``, the exception
raised at it), turning an exception into ``Retry``/``Reject`` or swallowing it, a middleware that fails itself,
and the job's timeout and cancellation with middleware around it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import aqueue
from tests.helpers import MakeTasks, StartWorker, wait_until


async def finished(*jobs: aqueue.Job[Any]) -> None:
    """Until every job has reached a final status (a burst run may end before a retry is due)."""

    async def done() -> bool:
        return all([(await job.record()).status.finished for job in jobs])

    await wait_until(done, 10)


def test_a_middleware_must_be_an_async_generator_function() -> None:
    tasks = aqueue.Tasks("mw-config", "memory://mw-config")

    async def not_a_generator(job: aqueue.JobContext) -> None:
        return None

    with pytest.raises(aqueue.ConfigurationError, match="async generator function"):
        tasks.middleware(not_a_generator)  # type: ignore[type-var]
    assert tasks._middlewares == ()


async def test_middlewares_wrap_every_job_first_registered_outermost(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()
    log: list[Any] = []

    @tasks.middleware
    async def outer(job: aqueue.JobContext) -> AsyncIterator[None]:
        log.append(("outer in", job.task, job.attempt, job.job_id == aqueue.current_job().job_id))
        yield
        log.append(("outer out", job.result))

    @tasks.middleware
    async def inner(job: aqueue.JobContext) -> AsyncIterator[None]:
        log.append(("inner in", job.tasks.queue))
        yield
        log.append(("inner out", job.result))

    @tasks.task(name="add")
    async def add(a: int, b: int) -> int:
        log.append(("task", aqueue.current_job().result))  # None in the task itself
        return a + b

    @tasks.task(name="mul")
    def mul(a: int, b: int) -> int:  # a plain function in a thread: wrapped the same way
        return a * b

    job = await add.enqueue(2, 3)
    await aqueue.Worker(tasks).run(burst=True)
    assert await job.result(timeout=1) == 5
    assert log == [
        ("outer in", "add", 1, True), ("inner in", tasks.queue), ("task", None), ("inner out", 5), ("outer out", 5)
    ]  # fmt: skip
    log.clear()
    job = await mul.enqueue(4, 5)
    await aqueue.Worker(tasks).run(burst=True)
    assert await job.result(timeout=1) == 20
    assert [entry[0] for entry in log] == ["outer in", "inner in", "inner out", "outer out"]


async def test_the_task_exception_is_raised_at_the_yield_and_reraised(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()
    seen: list[tuple[str, str, int]] = []

    @tasks.middleware
    async def report(job: aqueue.JobContext) -> AsyncIterator[None]:
        try:
            yield
        except Exception as exc:
            seen.append((job.job_id, repr(exc), job.attempt))  # a Sentry-style reporter
            raise

    @tasks.task(name="boom", max_attempts=2, backoff_base=0, backoff_max=0)
    async def boom() -> None:
        raise ValueError("bad row")

    await start_worker(tasks)
    job = await boom.enqueue()
    await finished(job)
    assert seen == [(job.id, "ValueError('bad row')", 1), (job.id, "ValueError('bad row')", 2)]
    record = await job.record()
    assert (record.status, record.attempts, record.error) == (aqueue.JobStatus.DEAD, 2, "ValueError: bad row")
    assert record.traceback is not None and "in boom" in record.traceback


@pytest.mark.parametrize("signal", ["Retry", "Reject"])
async def test_a_middleware_may_turn_an_exception_into_retry_or_reject(
    make_tasks: MakeTasks, start_worker: StartWorker, signal: str
) -> None:
    tasks = make_tasks()

    @tasks.middleware
    async def classify(job: aqueue.JobContext) -> AsyncIterator[None]:
        try:
            yield
        except ConnectionError as exc:
            if signal == "Retry" and job.attempt < 2:
                raise aqueue.Retry(f"upstream down: {exc}", after=0) from exc
            raise aqueue.Reject(f"giving up: {exc}") from exc

    @tasks.task(name="call", max_attempts=5)
    async def call() -> None:
        raise ConnectionError("503")

    await start_worker(tasks)
    job = await call.enqueue()
    await finished(job)
    record = await job.record()
    # Retry: a second attempt (after=0), which the middleware rejects; Reject: dead at once, no traceback.
    expected_attempts = 2 if signal == "Retry" else 1
    assert (record.status, record.attempts, record.error, record.traceback) == (
        aqueue.JobStatus.DEAD, expected_attempts, "Reject: giving up: 503", ""
    )  # fmt: skip


async def test_swallowing_the_exception_makes_the_attempt_succeed_with_none(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()
    outer_saw: list[Any] = []

    @tasks.middleware
    async def outer(job: aqueue.JobContext) -> AsyncIterator[None]:
        yield
        outer_saw.append(job.result)

    @tasks.middleware
    async def swallow(job: aqueue.JobContext) -> AsyncIterator[None]:
        with contextlib.suppress(KeyError):
            yield

    @tasks.task(name="lookup", max_attempts=3)
    async def lookup() -> str:
        raise KeyError("missing")

    job = await lookup.enqueue()
    await aqueue.Worker(tasks).run(burst=True)
    record = await job.record()
    assert (record.status, record.attempts, record.result, record.error) == (aqueue.JobStatus.SUCCEEDED, 1, None, None)
    assert outer_saw == [None]


@pytest.mark.parametrize("where", ["before", "after"])
async def test_a_middleware_that_raises_itself_fails_the_attempt_with_its_traceback(
    make_tasks: MakeTasks, start_worker: StartWorker, where: str
) -> None:
    tasks = make_tasks()
    ran: list[int] = []

    @tasks.middleware
    async def broken(job: aqueue.JobContext) -> AsyncIterator[None]:
        if where == "before":
            raise RuntimeError("middleware broke before")
        yield
        raise RuntimeError("middleware broke after")

    @tasks.task(name="work", max_attempts=2, backoff_base=0, backoff_max=0)
    async def work() -> int:
        ran.append(1)
        return 1

    worker = (await start_worker(tasks, concurrency=1)).worker  # one slot: it must survive every failure
    jobs = [await work.enqueue() for _ in range(3)]
    await finished(*jobs)
    for job in jobs:
        record = await job.record()
        assert (record.status, record.attempts) == (aqueue.JobStatus.DEAD, 2)
        assert record.error == f"RuntimeError: middleware broke {where}"
        assert record.traceback is not None and "in broken" in record.traceback
    assert len(ran) == (0 if where == "before" else 6)
    assert (worker.processed, worker.failed) == (6, 6)


async def test_a_middleware_that_does_not_yield_fails_the_attempt(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()

    @tasks.middleware
    async def no_yield(job: aqueue.JobContext) -> AsyncIterator[None]:
        if job.attempt > 0:
            return
        yield  # pragma: no cover

    @tasks.task(name="work", max_attempts=1)
    async def work() -> int:
        return 1

    job = await work.enqueue()
    await aqueue.Worker(tasks).run(burst=True)
    record = await job.record()
    assert (record.status, record.error) == (aqueue.JobStatus.DEAD, "RuntimeError: generator didn't yield")


async def test_the_timeout_covers_the_task_and_the_middleware_sees_timeout_error(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()
    seen: list[str] = []

    @tasks.middleware
    async def watch(job: aqueue.JobContext) -> AsyncIterator[None]:
        try:
            yield
        except TimeoutError:
            seen.append("timeout")
            await asyncio.sleep(0.3)  # the middleware's own time is not the task's: no second timeout
            seen.append("reported")
            raise

    @tasks.task(name="slow", timeout=0.2, max_attempts=1)
    async def slow() -> None:
        await asyncio.sleep(30)

    job = await slow.enqueue()
    await asyncio.wait_for(aqueue.Worker(tasks).run(burst=True), 10)
    record = await job.record()
    assert (record.status, record.error) == (aqueue.JobStatus.DEAD, "TimeoutError: timed out after 0.2 s")
    assert seen == ["timeout", "reported"]


async def test_a_cancelled_job_with_middleware_is_cancelled_and_the_middleware_cleans_up(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()
    log: list[str] = []

    @tasks.middleware
    async def track(job: aqueue.JobContext) -> AsyncIterator[None]:
        log.append("in")
        try:
            yield
        except Exception:  # a cancellation is not an Exception: it goes through to finally
            log.append("exception")
            raise
        finally:
            log.append("finally")

    @tasks.task(name="nap")
    async def nap() -> None:
        log.append("running")
        await asyncio.sleep(30)

    rw = await start_worker(tasks)
    job = await nap.enqueue()
    await wait_until(lambda: "running" in log, 5)
    assert await job.cancel()
    await wait_until(lambda: "finally" in log, 5)
    await wait_until(lambda: rw.worker.processed == 1, 5)

    async def settled_as_cancelled() -> bool:  # the settle of the batch comes after processed counts the attempt
        return (await job.record()).status is aqueue.JobStatus.CANCELLED

    await wait_until(settled_as_cancelled, 5)
    assert log == ["in", "running", "finally"]
    assert rw.worker.running_jobs == 0


async def test_middleware_sees_the_resources_of_the_lifespan(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()
    seen: list[str] = []

    @tasks.lifespan
    async def deps() -> AsyncIterator[str]:
        yield "pool"

    @tasks.middleware
    async def use(job: aqueue.JobContext) -> AsyncIterator[None]:
        seen.append(aqueue.resources(str))
        yield

    @tasks.task(name="noop")
    async def noop() -> None:
        return None

    await noop.enqueue()
    await aqueue.Worker(tasks).run(burst=True)
    assert seen == ["pool"]


async def test_a_job_blocking_the_loop_is_named_through_the_middleware_chain(
    make_tasks: MakeTasks, start_worker: StartWorker, caplog: pytest.LogCaptureFixture
) -> None:
    tasks = make_tasks()

    @tasks.middleware
    async def passthrough(job: aqueue.JobContext) -> AsyncIterator[None]:
        yield

    @tasks.task(name="hog", max_attempts=1)
    async def hog() -> str:
        time.sleep(1.5)  # blocks the loop: the watchdog looks for run_job's frame under the chain
        return "done"

    await start_worker(tasks)
    with caplog.at_level(logging.WARNING, logger="aqueue"):
        job = await hog.enqueue()
        assert await job.result(timeout=10) == "done"
        await wait_until(lambda: any("event loop was blocked" in r.getMessage() for r in caplog.records), 5)
    blocks = [r.getMessage() for r in caplog.records if "event loop was blocked" in r.getMessage()]
    assert f"by job {job.id} (hog, attempt 1)" in blocks[0], blocks
