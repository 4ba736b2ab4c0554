"""Enqueue → worker → result, on both backends."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import redis.asyncio.connection as rconn

import aqueue
from tests.helpers import REDIS_URL, MakeTasks, StartWorker, delete_queue, wait_until

#: These tests run on the 3-master Redis Cluster too (see tests/conftest.py).
ON_CLUSTER = True


async def test_enqueued_job_runs_and_returns_its_result(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()

    @tasks.task
    async def add(x: int, y: int) -> int:
        return x + y

    await start_worker(tasks, concurrency=4)
    job = await add.enqueue(2, 3)
    assert await job.result(timeout=5) == 5
    assert await job.status() is aqueue.JobStatus.SUCCEEDED
    record = await job.record()
    assert record.task == add.name == f"{__name__}.test_enqueued_job_runs_and_returns_its_result.<locals>.add"
    assert record.args == [2, 3]
    assert record.attempts == 1
    assert record.started_at is not None and record.finished_at is not None
    assert record.finished_at >= record.started_at >= (record.enqueued_at or 0)


async def test_job_handle_from_id_works_in_another_registry(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()

    @tasks.task(name="echo")
    async def echo(value: dict[str, Any]) -> dict[str, Any]:
        return value

    await start_worker(tasks)
    job = await echo.enqueue({"nested": [1, "two", None, 3.5]})
    other = make_tasks()  # e.g. another process that knows only the id
    assert await other.job(job.id).result(timeout=5) == {"nested": [1, "two", None, 3.5]}


async def test_with_options_and_task_defaults_are_recorded(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()

    @tasks.task(name="emails.send", priority="high", max_attempts=5, timeout=30.0)
    async def send(to: str) -> None:
        return None

    job = await send.enqueue("a@example.com")
    record = await job.record()
    assert (record.priority, record.status) == ("high", aqueue.JobStatus.QUEUED)
    low = await send.with_options(priority="low", delay=5.0, max_attempts=3, timeout=10.0).enqueue("b@example.com")
    record = await low.record()
    assert (record.priority, record.status) == ("low", aqueue.JobStatus.SCHEDULED)
    # An option given again replaces the earlier one, a delay of 0 included.
    now = await send.with_options(delay=60).with_options(delay=0).enqueue("c@example.com")
    assert (await now.record()).status == aqueue.JobStatus.QUEUED
    with pytest.raises(aqueue.ConfigurationError, match="unknown priority"):
        send.with_options(priority="urgent")


async def test_calling_a_task_runs_it_here_and_a_plain_function_off_the_loop(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()

    @tasks.task
    async def add(x: int, y: int) -> int:
        return x + y

    @tasks.task
    def which_thread(tag: str) -> tuple[str, int]:
        return tag, threading.get_ident()

    assert await add(1, 2) == 3
    tag, ident = await which_thread("x")
    assert (tag, ident != threading.get_ident()) == ("x", True)
    assert (await tasks.info()).stats.get("enqueued", 0) == 0  # no job was made


async def test_enqueue_many_preserves_order_and_all_jobs_run(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()
    seen: list[int] = []

    @tasks.task
    async def record_it(i: int) -> int:
        seen.append(i)
        return i * 2

    jobs = await tasks.enqueue_many([record_it.spec(i) for i in range(2_000)])
    assert len({j.id for j in jobs}) == 2_000
    await start_worker(tasks, concurrency=50)
    assert await jobs[-1].result(timeout=30) == 3_998
    assert await jobs[0].result(timeout=5) == 0
    await wait_until(lambda: len(seen) == 2_000, 30)
    assert sorted(seen) == list(range(2_000))


async def test_sync_task_runs_in_a_thread_without_blocking_the_loop(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()
    main_thread = threading.get_ident()

    @tasks.task
    def blocking(seconds: float) -> int:
        threading.Event().wait(seconds)  # a blocking call, as sync code does
        return threading.get_ident()

    await start_worker(tasks, concurrency=4)
    job = await blocking.enqueue(0.3)
    ticks = 0
    while not (await job.status()).finished:
        ticks += 1
        await asyncio.sleep(0.01)
    assert await job.result(timeout=5) != main_thread
    assert ticks >= 10  # the loop kept turning while the thread slept


async def test_result_times_out_with_a_clear_error_and_unknown_ids_are_reported(
    make_tasks: MakeTasks,
) -> None:
    tasks = make_tasks()

    @tasks.task
    async def never_run() -> None:
        return None

    job = await never_run.enqueue()
    with pytest.raises(aqueue.ResultTimeout, match=job.id):
        await job.result(timeout=0.1)
    with pytest.raises(aqueue.UnknownJob):
        await tasks.job("no-such-job").status()


async def test_single_enqueue_is_one_round_trip_on_real_redis(queue_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    tasks = aqueue.Tasks(queue=queue_name, redis_url=REDIS_URL)

    @tasks.task
    async def noop() -> None:
        return None

    try:
        await tasks._broker()  # connect and load scripts first, as any long-lived producer has
        sends = 0
        original = rconn.AbstractConnection.send_packed_command

        async def counting(self: Any, command: Any, check_health: bool = True) -> None:
            nonlocal sends
            sends += 1
            await original(self, command, check_health)

        monkeypatch.setattr(rconn.AbstractConnection, "send_packed_command", counting)
        await noop.enqueue()
        assert sends == 1
        sends = 0
        jobs = await tasks.enqueue_many([noop.spec() for _ in range(3_000)])
        assert sends == 1
        monkeypatch.undo()
        assert (await tasks.info()).queued["normal"] == 3_001
        assert await jobs[-1].status() is aqueue.JobStatus.QUEUED
    finally:
        await tasks.close()
        await delete_queue(REDIS_URL, queue_name)
