"""Re-running finished jobs: ``tasks.retry(job_id)`` takes cancelled and expired jobs as well as dead and failed
ones, through Python, ``POST /jobs/{id}/retry`` and ``aqueue retry``.

Each test reads the outcome back from the queue: the same job id ran (again), with its headers, attempts counted
from 0, a ``requeued`` event; what is refused is left as it was, with no event.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import orjson

import aqueue
from aqueue.web import create_app
from tests import test_cli_control as cli_tests
from tests import test_dashboard_browser as browser
from tests.helpers import MakeTasks, RunningWorker, Serve, StartWorker, events_of, json_of, wait_until

cli = cli_tests.cli  # the in-process CLI fixtures, shared
target = cli_tests.target
_keep_logging = cli_tests._keep_logging
driver = browser.driver  # the browser fixtures, shared
tasks = browser.tasks


def app(tasks: aqueue.Tasks) -> tuple[aqueue.Tasks, Counter[str], asyncio.Event]:
    """Register ``echo`` (returns its argument), ``hold`` (waits for the returned event) and ``boom`` (dies at its
    first failure); returns the runs of each task by name."""
    runs: Counter[str] = Counter()
    release = asyncio.Event()

    @tasks.task(name="echo")
    async def echo(value: str) -> str:
        runs["echo"] += 1
        return value

    @tasks.task(name="hold")
    async def hold() -> None:
        runs["hold"] += 1
        await release.wait()

    @tasks.task(name="boom", max_attempts=1)
    async def boom() -> None:
        raise RuntimeError("boom")

    return tasks, runs, release


async def view_of(tasks: aqueue.Tasks, job_id: str) -> dict[str, Any]:
    """The job's view (what ``GET /jobs/{id}`` answers)."""
    (view,) = await tasks._job_views([job_id])
    assert view is not None
    return view


def task_of(tasks: aqueue.Tasks, name: str) -> aqueue.Task[Any, Any]:
    task = tasks.get(name)
    assert task is not None
    return task


async def status_of(tasks: aqueue.Tasks, job_id: str) -> aqueue.JobStatus:
    return await tasks.job(job_id).status()


async def cancelled_job(tasks: aqueue.Tasks, value: str, **options: Any) -> str:
    """An ``echo`` job cancelled before it ran (it was delayed by a minute)."""
    job = await task_of(tasks, "echo").with_options(delay=60, **options).enqueue(value)
    await job.cancel()
    assert await status_of(tasks, job.id) == aqueue.JobStatus.CANCELLED
    return job.id


# -- Python ------------------------------------------------------------------------------------------------------


async def test_cancelled_job_runs_again_under_its_id_with_its_headers_and_fresh_attempts(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks, runs, _ = app(make_tasks())
    job_id = await cancelled_job(tasks, "again", headers={"tenant": "acme"})
    result = await tasks.retry(job_id)
    assert (result.requeued, result.skipped) == ([job_id], {})
    record = await tasks.job(job_id).record()
    assert (record.status, record.attempts, record.error, record.finished_at) == ("queued", 0, None, None)
    assert [(e["from"], e["by"]) for e in await events_of(tasks, "requeued", job=job_id)] == [("cancelled", "retry")]
    assert (await view_of(tasks, job_id))["headers"] == {"tenant": "acme"}  # kept, like its arguments
    await start_worker(tasks, concurrency=1)
    assert await tasks.job(job_id).result(timeout=5) == "again"  # no delay this time: it is due at once
    assert runs["echo"] == 1
    assert (await tasks.job(job_id).record()).attempts == 1


async def test_expired_job_runs_again_and_its_ttl_no_longer_applies(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks, runs, _ = app(make_tasks())
    job = await task_of(tasks, "echo").with_options(ttl=0.05).enqueue("late")
    broker = await tasks._broker()
    expires_at: float = (await view_of(tasks, job.id))["expires_at"]

    async def past_its_ttl() -> bool:
        sec, usec = await broker.redis.time()
        return bool(int(sec) + int(usec) / 1e6 > expires_at)

    await wait_until(past_its_ttl)
    worker = await start_worker(tasks, concurrency=1)

    async def expired() -> bool:
        return await status_of(tasks, job.id) == aqueue.JobStatus.EXPIRED

    await wait_until(expired)
    assert runs["echo"] == 0
    await worker.stop()
    assert (await tasks.retry(job.id)).requeued == [job.id]
    assert (await view_of(tasks, job.id))["expires_at"] is None
    assert [e["from"] for e in await events_of(tasks, "requeued", job=job.id)] == ["expired"]
    await start_worker(tasks, concurrency=1)
    assert await job.result(timeout=5) == "late"
    assert runs["echo"] == 1


async def test_retry_refuses_succeeded_running_and_queued_jobs(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks, runs, release = app(make_tasks())
    await start_worker(tasks, concurrency=2)
    done = await task_of(tasks, "echo").enqueue("once")
    assert await done.result(timeout=5) == "once"
    running = await task_of(tasks, "hold").enqueue()
    await wait_until(lambda: runs["hold"] == 1)
    waiting = await task_of(tasks, "echo").with_options(delay=60).enqueue("later")
    reasons = {}
    for job in (done, running, waiting):
        result = await tasks.retry(job.id)
        assert result.requeued == []
        reasons[job.id] = result.skipped[job.id]
    assert reasons == {
        done.id: "job is succeeded; only dead, failed, cancelled or expired jobs can be retried",
        running.id: "job is active; only dead, failed, cancelled or expired jobs can be retried",
        waiting.id: "job is scheduled; only dead, failed, cancelled or expired jobs can be retried",
    }
    assert [await status_of(tasks, j.id) for j in (done, running, waiting)] == ["succeeded", "active", "scheduled"]
    assert await events_of(tasks, "requeued") == []
    assert runs == Counter({"echo": 1, "hold": 1})
    release.set()


async def test_cancelled_workflow_step_is_not_rerun(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks, runs, _ = app(make_tasks())
    wf = tasks.workflow("fails")
    root = wf.step(task_of(tasks, "boom").spec(), name="root")
    wf.step(task_of(tasks, "echo").spec("after"), after=root, name="after")
    handle = await wf.enqueue()
    await start_worker(tasks, concurrency=1)
    states = await handle.wait(timeout=5)
    assert states == {"root": "dead", "after": "cancelled"}
    step_id = handle.jobs["after"].id
    result = await tasks.retry(step_id)
    assert result.requeued == []
    assert result.skipped[step_id] == (
        f"job is a cancelled step of workflow {handle.id}, which already went on without it"
    )
    assert await status_of(tasks, step_id) == aqueue.JobStatus.CANCELLED
    assert runs["echo"] == 0


async def test_reprocess_still_takes_only_dead_or_failed_jobs(make_tasks: MakeTasks) -> None:
    tasks, _, _ = app(make_tasks())
    job_id = await cancelled_job(tasks, "x")
    result = await tasks.reprocess([job_id])
    assert result.skipped == {job_id: "job is cancelled; only dead or failed jobs can be retried"}
    assert await status_of(tasks, job_id) == aqueue.JobStatus.CANCELLED


async def test_rerun_job_cancelled_again_leaves_no_entry_on_its_stream(make_tasks: MakeTasks) -> None:
    tasks, _, _ = app(make_tasks())
    job_id = await cancelled_job(tasks, "twice")
    assert (await tasks.retry(job_id)).requeued == [job_id]
    stream = tasks._keys.stream("normal")
    broker = await tasks._broker()
    assert await broker.redis.xlen(stream) == 1  # waiting on its stream
    await tasks.job(job_id).cancel()
    assert await status_of(tasks, job_id) == aqueue.JobStatus.CANCELLED
    assert await broker.redis.xlen(stream) == 0  # the record named its new entry, so cancelling deleted it


# -- REST --------------------------------------------------------------------------------------------------------


async def test_rest_retry_reruns_a_cancelled_job_and_refuses_a_succeeded_one(
    serve: Serve, make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks, _, _ = app(make_tasks())
    client = await serve(tasks)
    job_id = await cancelled_job(tasks, "web")
    assert await json_of(await client.post(f"/jobs/{job_id}/retry"), 200) == {"id": job_id, "status": "queued"}
    assert (await json_of(await client.get(f"/jobs/{job_id}"), 200))["status"] == "queued"
    await start_worker(tasks, concurrency=1)
    assert await tasks.job(job_id).result(timeout=5) == "web"
    refused = await json_of(await client.post(f"/jobs/{job_id}/retry"), 409)
    assert refused == {"error": "job is succeeded; only dead, failed, cancelled or expired jobs can be retried"}


# -- CLI (real Redis: memory:// lives in one process) ------------------------------------------------------------


@cli_tests.on_redis
async def test_cli_retry_reruns_jobs_and_exits_1_for_what_it_could_not(
    make_tasks: MakeTasks, cli: cli_tests.Cli
) -> None:
    tasks, _, _ = app(make_tasks())
    first, second = [await cancelled_job(tasks, v) for v in ("a", "b")]
    code, out, err = await cli("retry", first, "nope")
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        f"{first}  requeued",
        "nope  not requeued: no such job (never enqueued, or its retention expired)",
    ]
    assert await status_of(tasks, first) == aqueue.JobStatus.QUEUED
    code, out, err = await cli("retry", second, "--json")
    assert (code, err) == (0, "")
    assert orjson.loads(out) == {"jobs": [{"id": second, "requeued": True, "reason": None}]}
    code, out, _ = await cli("retry", second)
    assert (code, out) == (1, f"{second}  not requeued: job is queued; only dead, failed, cancelled or expired "
                              "jobs can be retried\n")  # fmt: skip
    code, _, err = await cli("retry")
    cli_tests.one_error_line(code, err, "JOB_ID")
    code, _, err = await cli("retry", first, redis="memory://x")
    cli_tests.one_error_line(code, err, "memory://")


# -- dashboard (real headless Chromium, real Redis) --------------------------------------------------------------


async def test_dashboard_reruns_a_cancelled_job_from_its_panel(driver: Any, tasks: aqueue.Tasks) -> None:
    _, runs, _ = app(tasks)
    job_id = await cancelled_job(tasks, "from the panel")
    worker = RunningWorker(aqueue.Worker(tasks, concurrency=1))
    runner, url = await browser.serve(create_app(tasks, worker.worker, token=browser.TOKEN))
    try:
        await browser.run(driver.get, url)
        await wait_until(lambda: browser.shows(driver, "#conn", "live"), 10, step=0.05)
        row = f'#jobs tr[data-job="{job_id}"]'
        await browser.element(driver, row)
        await browser.click(driver, row)
        await wait_until(lambda: browser.shows(driver, "#details-fields", "cancelled"), 5)
        assert await browser.gone(driver, "#details-fields button.cancel")  # finished: nothing to cancel
        await browser.click(driver, "#details-fields button.rerun")
        await wait_until(lambda: browser.shows(driver, "#notice", "queued to run again"), 5)  # the POST answered
        assert await tasks.job(job_id).result(timeout=5) == "from the panel"
        await wait_until(lambda: browser.shows(driver, row, "succeeded"), 5)
        await wait_until(lambda: browser.gone(driver, "#details-fields button.rerun"), 5)  # succeeded: no re-run
        assert runs["echo"] == 1
        assert browser.errors_in(await browser.run(driver.get_log, "browser")) == []
    finally:
        await runner.cleanup()
        await worker.stop()
