"""Listing jobs from Python: ``await tasks.jobs(status=, task=, limit=)`` → typed ``JobSummary`` values, on the same
bounded read model ``GET /jobs`` answers from (the newest events, never a keyspace scan)."""

from __future__ import annotations

import dataclasses

import pytest

import aqueue
from aqueue._core import listing
from aqueue._core.listing import JobPage, JobSummary
from tests.helpers import MakeTasks, Serve, StartWorker, json_of


def app(tasks: aqueue.Tasks) -> aqueue.Tasks:
    """Register ``add`` and ``echo``."""

    @tasks.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    @tasks.task(name="echo")
    async def echo(value: str) -> str:
        return value

    return tasks


async def test_jobs_lists_the_most_recent_first_typed_and_filtered(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = app(make_tasks())
    add, echo = tasks.get("add"), tasks.get("echo")
    assert add is not None and echo is not None
    done = await add.enqueue(1, 2)
    worker = await start_worker(tasks, concurrency=1)
    assert await done.result(timeout=5) == 3
    await worker.stop()
    queued = [await add.enqueue(i, i) for i in range(2)]  # no worker runs them: they stay queued
    later = await echo.with_options(delay=60).enqueue("later")

    page = await tasks.jobs()
    assert isinstance(page, JobPage) and page.complete
    assert [j.id for j in page.jobs][:2] == [later.id, queued[1].id]
    assert {j.id for j in page.jobs} == {done.id, later.id, *(j.id for j in queued)}
    summary = next(j for j in page.jobs if j.id == done.id)
    assert isinstance(summary, JobSummary)
    assert (summary.task, summary.status, summary.attempts, summary.error) == ("add", "succeeded", 1, None)
    assert summary.status is aqueue.JobStatus.SUCCEEDED
    assert summary.enqueued_at is not None and summary.finished_at is not None
    assert summary.started_at is not None and summary.enqueued_at <= summary.started_at <= summary.finished_at

    scheduled = await tasks.jobs(status=aqueue.JobStatus.SCHEDULED)
    assert [(j.id, j.status) for j in scheduled.jobs] == [(later.id, "scheduled")]
    assert [j.id for j in (await tasks.jobs(status="succeeded")).jobs] == [done.id]  # a status by its name too
    assert [j.id for j in (await tasks.jobs(task="echo")).jobs] == [later.id]
    assert len((await tasks.jobs(task="add", limit=1)).jobs) == 1
    assert [j.id for j in (await tasks.jobs(status="queued")).jobs] == [queued[1].id, queued[0].id]
    assert (await tasks.jobs(status="dead")).jobs == []


async def test_jobs_refuses_bad_arguments(make_tasks: MakeTasks) -> None:
    tasks = app(make_tasks())
    with pytest.raises(aqueue.ConfigurationError, match="status must be one of queued"):
        await tasks.jobs(status="bogus")
    for limit in (0, -1, True):
        with pytest.raises(aqueue.ConfigurationError, match="limit"):
            await tasks.jobs(limit=limit)
    with pytest.raises(aqueue.ConfigurationError, match="task"):
        await tasks.jobs(task="")


async def test_jobs_sees_only_the_newest_events_and_says_so(
    make_tasks: MakeTasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = app(make_tasks())
    add = tasks.get("add")
    assert add is not None
    jobs = [await add.enqueue(i, i) for i in range(5)]  # one event each
    monkeypatch.setattr(listing, "SCAN_EVENTS", 3)
    page = await tasks.jobs(limit=50)
    assert [j.id for j in page.jobs] == [j.id for j in reversed(jobs[2:])]  # the two oldest are out of sight
    assert (page.scanned, page.complete) == (3, False)
    monkeypatch.setattr(listing, "SCAN_EVENTS", 10_000)
    page = await tasks.jobs(limit=50)
    assert [j.id for j in page.jobs] == [j.id for j in reversed(jobs)] and page.complete


async def test_rest_listing_answers_what_tasks_jobs_returns(serve: Serve, make_tasks: MakeTasks) -> None:
    tasks = app(make_tasks())
    client = await serve(tasks)
    echo = tasks.get("echo")
    assert echo is not None
    for value in ("a", "b"):
        await echo.with_options(delay=60).enqueue(value)
    page = await tasks.jobs(status="scheduled")
    listed = await json_of(await client.get("/jobs", params={"status": "scheduled"}), 200)
    assert listed == {
        "jobs": [dataclasses.asdict(j) for j in page.jobs],
        "scanned_events": page.scanned,
        "complete": page.complete,
    }
    assert [j["status"] for j in listed["jobs"]] == ["scheduled", "scheduled"]
