"""Jobs of stopped workers are taken back after the lease; live long jobs never are; shutdown is graceful."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import aqueue
from aqueue._core.aio import cancel_and_wait
from tests.helpers import (
    REDIS_URL,
    MakeTasks,
    RunningWorker,
    StartWorker,
    delete_queue,
    events_of,
    is_active,
    wait_until,
)

ON_CLUSTER = True
LEASE = 1.0


async def crash(rw: RunningWorker, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stop a worker the way SIGKILL would: no final settle, no release, no more heartbeats."""

    async def die(lease: float) -> None:
        pass  # what finished is not settled, what runs is not given back

    monkeypatch.setattr(rw.worker._settler, "give_back", die)
    await cancel_and_wait(rw.task)  # run() cancelled: no waiting for running jobs; loops and slots end


async def test_job_of_crashed_worker_is_completed_by_another_within_lease_plus_one_second(
    make_tasks: MakeTasks, start_worker: StartWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = aqueue.QueueSettings(lease=LEASE)
    doomed, rescuer = make_tasks(settings), make_tasks(settings)
    never = asyncio.Event()

    @doomed.task(name="long")
    async def hang() -> str:
        await never.wait()
        return "unreachable"

    @rescuer.task(name="long")
    async def finish() -> str:
        return "rescued"

    rw = await start_worker(doomed)
    job = await hang.enqueue()
    await wait_until(lambda: is_active(job), 5)
    await crash(rw, monkeypatch)
    crashed_at = time.monotonic()
    await start_worker(rescuer)
    assert await rescuer.job(job.id).result(timeout=LEASE + 2) == "rescued"
    assert time.monotonic() - crashed_at <= LEASE + 1.0
    assert (await job.record()).attempts == 2


_KILLED_APP = """
import asyncio, os, sys
import aqueue

tasks = aqueue.Tasks(queue=sys.argv[1], redis_url=sys.argv[2], settings=aqueue.QueueSettings(lease={lease}))

@tasks.task(name="long")
async def long() -> int:
    await asyncio.sleep(600)
    return os.getpid()

asyncio.run(aqueue.Worker(tasks, concurrency=2).run())
"""


async def test_worker_process_killed_with_sigkill_mid_job_is_rescued_within_lease_plus_one_second(
    queue_name: str, tmp_path: Path
) -> None:
    app = tmp_path / "killed_app.py"
    app.write_text(textwrap.dedent(_KILLED_APP.format(lease=LEASE)))
    rescuer = aqueue.Tasks(queue=queue_name, redis_url=REDIS_URL, settings=aqueue.QueueSettings(lease=LEASE))

    @rescuer.task(name="long")
    async def finish() -> str:
        return "rescued"

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, str(app), queue_name, REDIS_URL], env=env)
    try:
        job = await finish.enqueue()
        await wait_until(lambda: is_active(job), 15)
        assert str(proc.pid) in ((await job.record()).worker or "")
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        killed_at = time.monotonic()
        worker = aqueue.Worker(rescuer, concurrency=2)
        run = asyncio.create_task(worker.run())
        assert await job.result(timeout=LEASE + 3) == "rescued"
        assert time.monotonic() - killed_at <= LEASE + 1.0
        await worker.stop()
        await run
        info = await rescuer.info()
        assert (info.active, sum(info.queued.values())) == (0, 0)
    finally:
        if proc.poll() is None:
            proc.kill()
        await rescuer.close()
        await delete_queue(REDIS_URL, queue_name)


async def test_job_twice_as_long_as_the_lease_runs_exactly_once(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    settings = aqueue.QueueSettings(lease=LEASE)
    a, b = make_tasks(settings), make_tasks(settings)
    runs: list[str] = []

    for tasks, label in ((a, "a"), (b, "b")):

        @tasks.task(name="slow")
        async def slow(label: str = label) -> str:
            runs.append(label)
            await asyncio.sleep(2 * LEASE)
            return label

    await start_worker(a, concurrency=2)
    await start_worker(b, concurrency=2)
    job = await a.get("slow").enqueue()  # type: ignore[union-attr]
    assert await job.result(timeout=10) in ("a", "b")
    assert len(runs) == 1
    assert (await job.record()).attempts == 1
    assert len(await events_of(a, "started", job=job.id)) == 1


async def test_sigterm_lets_running_jobs_finish_before_exit(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()

    @tasks.task
    async def work() -> str:
        await asyncio.sleep(0.5)
        return "finished"

    rw = await start_worker(tasks, concurrency=5, shutdown_timeout=10)
    jobs = await tasks.enqueue_many([work.spec() for _ in range(5)])
    await wait_until(lambda: rw.worker.busy == 5, 5)
    os.kill(os.getpid(), signal.SIGTERM)  # the worker's own handler, as in `aqueue worker`
    await asyncio.wait_for(rw.task, 10)
    for job in jobs:
        record = await job.record()
        assert (record.status, record.attempts, record.result) == (aqueue.JobStatus.SUCCEEDED, 1, "finished")
    assert (await tasks.info()).workers == []


async def test_jobs_still_running_at_the_shutdown_deadline_go_back_to_the_queue_uncounted(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    first, second = make_tasks(), make_tasks()

    @first.task(name="job")
    async def endless() -> str:
        await asyncio.sleep(600)
        return "no"

    @second.task(name="job")
    async def quick() -> str:
        return "second worker"

    rw = await start_worker(first, shutdown_timeout=0.2)
    job = await endless.enqueue()
    await wait_until(lambda: is_active(job), 5)
    await rw.stop()
    record = await job.record()
    assert (record.status, record.attempts) == (aqueue.JobStatus.QUEUED, 0)
    await start_worker(second)
    assert await job.result(timeout=5) == "second worker"
    assert (await job.record()).attempts == 1


async def test_streams_are_empty_after_a_drained_run_and_events_stay_capped(make_tasks: MakeTasks) -> None:
    tasks = make_tasks(settings=aqueue.QueueSettings(events_maxlen=100))

    @tasks.task
    async def noop(i: int) -> int:
        return i

    await tasks.enqueue_many([noop.with_options(priority=p).spec(i) for i in range(300)
                              for p in ("high", "normal", "low")])  # fmt: skip
    await aqueue.Worker(tasks, concurrency=50).run(burst=True)
    broker = await tasks._broker()
    for stream in tasks._keys.streams:
        assert await broker.redis.xlen(stream) == 0
        assert (await broker.redis.xpending(stream, "workers"))["pending"] == 0
    # 2,700 events were written; MAXLEN ~ trims whole nodes, so allow a node's worth of slack.
    assert await broker.redis.xlen(tasks._keys.events) <= 300
    assert (await tasks.info()).stats["succeeded"] == 900


async def test_job_that_keeps_killing_its_workers_is_dead_lettered_as_poison(
    make_tasks: MakeTasks, start_worker: StartWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = aqueue.QueueSettings(lease=0.5, max_reclaims=1)
    never = asyncio.Event()
    registries = [make_tasks(settings) for _ in range(3)]
    for tasks in registries:

        @tasks.task(name="poison")
        async def poison() -> None:
            await never.wait()  # stands for a job that crashes whichever process runs it

    job = await registries[0].get("poison").enqueue()  # type: ignore[union-attr]
    for attempt, tasks in enumerate(registries[:2], start=1):
        rw = await start_worker(tasks)
        await wait_until(lambda attempt=attempt: _attempts_active(job, attempt), 5)  # type: ignore[misc]
        await crash(rw, monkeypatch)
    await start_worker(registries[2])
    with pytest.raises(aqueue.JobFailed, match="poison: taken back from a stopped worker 2 times"):
        await job.result(timeout=5)
    dead = await (await registries[2]._broker()).dead_letters()
    assert dead[0][1]["job"] == job.id


async def _attempts_active(job: aqueue.Job[Any], attempts: int) -> bool:
    record = await job.record()
    return record.status is aqueue.JobStatus.ACTIVE and record.attempts == attempts


async def test_second_stop_request_cancels_running_jobs_at_once_and_puts_them_back(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()

    @tasks.task
    async def endless() -> None:
        await asyncio.sleep(600)

    rw = await start_worker(tasks, shutdown_timeout=60)
    job = await endless.enqueue()
    await wait_until(lambda: is_active(job), 5)
    rw.worker.request_stop()  # first SIGTERM: would wait up to 60 s for the job
    await asyncio.sleep(0.1)
    assert not rw.task.done()
    rw.worker.request_stop()  # second SIGTERM: stop waiting
    await asyncio.wait_for(rw.task, 5)
    record = await job.record()
    assert (record.status, record.attempts) == (aqueue.JobStatus.QUEUED, 0)


async def test_deleting_the_queues_keys_under_a_blocked_worker_does_not_kill_it(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    """A worker blocked reading its streams when they are deleted (FLUSHALL, a DEL of the queue's keys) is woken
    with ``UNBLOCKED`` or finds ``NOGROUP`` next; it recreates its groups and runs the jobs enqueued after."""
    tasks = make_tasks()

    @tasks.task
    async def echo(n: int) -> int:
        return n

    rw = await start_worker(tasks, concurrency=2)
    assert await (await echo.enqueue(1)).result(timeout=5) == 1
    await asyncio.sleep(0.2)  # blocked in XREADGROUP now
    broker = await tasks._broker()
    for _ in range(2):
        await broker.redis.delete(*tasks._keys.streams)
        broker._bump()
        await asyncio.sleep(0.3)
    assert not rw.task.done()
    assert await (await echo.enqueue(2)).result(timeout=10) == 2
    assert not rw.task.done()
