"""``worker.run(burst=True, max_jobs=N)`` and ``aqueue worker --burst --max-jobs N``: a burst run that starts at most
N jobs, lets them finish and returns, never claiming a job it will not run."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import aqueue
from tests.helpers import MakeTasks, worker_flag_refused
from tests.test_cli import app_dir, producer, queue, run_cli_async  # noqa: F401  (fixtures)


def _counting(tasks: aqueue.Tasks, seconds: float = 0.0) -> tuple[aqueue.Task[..., int], list[int]]:
    """Register ``work(i)``, which records ``i`` in the list returned beside it once it has run."""
    ran: list[int] = []

    @tasks.task(name="work")
    async def work(i: int) -> int:
        await asyncio.sleep(seconds)
        ran.append(i)
        return i

    return work, ran


def _task(tasks: aqueue.Tasks, name: str) -> aqueue.Task[..., Any]:
    task = tasks.get(name)
    assert task is not None
    return task


@pytest.mark.parametrize(("concurrency", "prefetch"), [(3, 2), (10, 0)])
async def test_burst_run_starts_max_jobs_and_leaves_the_rest_unclaimed(
    make_tasks: MakeTasks, concurrency: int, prefetch: int
) -> None:
    tasks = make_tasks()
    work, ran = _counting(tasks, 0.01)
    jobs = await tasks.enqueue_many([work.spec(i) for i in range(10)])
    worker = aqueue.Worker(tasks, concurrency, prefetch=prefetch)
    await asyncio.wait_for(worker.run(burst=True, max_jobs=4), 10)
    assert sorted(ran) == [0, 1, 2, 3]  # FIFO: the first four, each once
    assert worker.processed == 4
    records = [await j.record() for j in jobs]
    assert [r.status for r in records] == [aqueue.JobStatus.SUCCEEDED] * 4 + [aqueue.JobStatus.QUEUED] * 6
    # Never claimed: not given back after a claim (which would count an attempt or leave them waiting for a lease).
    assert all(r.attempts == 0 and not r.worker for r in records[4:])
    info = await tasks.info()
    assert (sum(info.queued.values()), info.active, info.workers) == (6, 0, [])


async def test_burst_run_with_more_max_jobs_than_work_drains_the_queue(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()
    work, ran = _counting(tasks)
    await tasks.enqueue_many([work.spec(i) for i in range(5)])
    worker = aqueue.Worker(tasks, 2)
    await asyncio.wait_for(worker.run(burst=True, max_jobs=50), 10)
    assert sorted(ran) == [0, 1, 2, 3, 4]


async def test_each_run_counts_its_own_max_jobs(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()
    work, ran = _counting(tasks)
    await tasks.enqueue_many([work.spec(i) for i in range(5)])
    worker = aqueue.Worker(tasks, 2)
    await asyncio.wait_for(worker.run(burst=True, max_jobs=2), 10)
    await asyncio.wait_for(worker.run(burst=True, max_jobs=2), 10)
    assert sorted(ran) == [0, 1, 2, 3]
    await asyncio.wait_for(worker.run(burst=True), 10)
    assert sorted(ran) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"burst": True, "max_jobs": 0}, "max_jobs must be an integer >= 1, got 0"),
        ({"burst": True, "max_jobs": 2.5}, "max_jobs must be an integer >= 1, got 2.5"),
        ({"burst": True, "max_jobs": True}, "max_jobs must be an integer >= 1, got True"),
        ({"max_jobs": 3}, "max_jobs applies to a burst run"),
    ],
)
async def test_bad_max_jobs_is_refused_before_the_run_begins(
    make_tasks: MakeTasks, kwargs: dict[str, Any], fragment: str
) -> None:
    tasks = make_tasks()
    work, ran = _counting(tasks)
    await work.enqueue(1)
    worker = aqueue.Worker(tasks, 2)
    with pytest.raises(aqueue.ConfigurationError, match=fragment):
        await worker.run(**kwargs)
    assert ran == [] and worker.processed == 0
    await asyncio.wait_for(worker.run(burst=True), 10)  # the refused call left the worker as it was
    assert ran == [1]


# -- the command line --------------------------------------------------------------------------------------


async def test_cli_burst_worker_stops_after_max_jobs(app_dir: Path, queue: str) -> None:  # noqa: F811
    async with producer(queue) as tasks:
        jobs = await tasks.enqueue_many([_task(tasks, "add").spec(i, i) for i in range(7)])
        code, _, err = await run_cli_async(
            app_dir, "worker", "app:tasks", "--queue", queue, "--burst", "--concurrency", "4", "--prefetch", "3",
            env={"AQUEUE_MAX_JOBS": "3"},
        )  # fmt: skip
        assert code == 0, err
        records = [await j.record() for j in jobs]
        assert [r.status for r in records] == [aqueue.JobStatus.SUCCEEDED] * 3 + [aqueue.JobStatus.QUEUED] * 4
        assert all(r.attempts == 0 for r in records[3:])
        assert "started its max_jobs" in err


async def test_cli_processes_each_stop_after_max_jobs(app_dir: Path, queue: str) -> None:  # noqa: F811
    async with producer(queue) as tasks:
        jobs = await tasks.enqueue_many([_task(tasks, "nap").spec(0.05) for _ in range(10)])
        code, _, err = await run_cli_async(
            app_dir, "worker", "app:tasks", "--queue", queue, "--burst", "--max-jobs", "2", "--processes", "2",
        )  # fmt: skip
        assert code == 0, err
        statuses = [await j.status() for j in jobs]
        assert statuses.count(aqueue.JobStatus.SUCCEEDED) == 4
        assert statuses.count(aqueue.JobStatus.QUEUED) == 6


@pytest.mark.no_redis
@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (["--burst", "--max-jobs", "0"], {}, "--max-jobs: expected an integer >= 1, got '0'"),
        (["--max-jobs", "2"], {}, "--max-jobs applies to a burst run: add --burst"),
        (["--burst"], {"AQUEUE_MAX_JOBS": "x"}, "$AQUEUE_MAX_JOBS: expected an integer >= 1, got 'x'"),
    ],
)
def test_cli_bad_max_jobs_is_one_error_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str],
    fragment: str,
) -> None:  # fmt: skip
    assert fragment in worker_flag_refused(capsys, monkeypatch, args, env)
