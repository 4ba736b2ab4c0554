"""The admin API in Python: ``tasks.dead_letters()``, ``tasks.retry(job_id)``, ``tasks.reprocess(ids | max)``.

The REST routes (``/dead-letter``, ``/jobs/{id}/retry``, ``/dead-letter/reprocess``) and the CLI (``aqueue
dead-letter list|reprocess``) are thin front ends over these methods; here they are tested directly on both
backends, each outcome read back from the queue: the job ran again, its dead-letter entry is gone, a limit held.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

import aqueue
from aqueue._core import admin
from tests.helpers import MakeTasks, StartWorker, events_of, wait_until


def app(tasks: aqueue.Tasks) -> tuple[aqueue.Tasks, Counter[int]]:
    """Register ``flaky`` (fails its first run for each argument, then succeeds; one attempt per run) and ``late``
    (fails with a minute of backoff before its second attempt); returns the runs of ``flaky`` by argument."""
    runs: Counter[int] = Counter()

    @tasks.task(name="flaky", max_attempts=1)
    async def flaky(n: int) -> int:
        runs[n] += 1
        if runs[n] == 1:
            raise RuntimeError(f"first run of {n}")
        return n

    @tasks.task(name="late", max_attempts=2, backoff_base=60, backoff_max=60)
    async def late(n: int) -> int:
        runs[-n] += 1
        if runs[-n] == 1:
            raise RuntimeError("not yet")
        return n

    return tasks, runs


async def status_of(tasks: aqueue.Tasks, job_id: str) -> aqueue.JobStatus:
    return await tasks.job(job_id).status()


async def dead_jobs(tasks: aqueue.Tasks, start_worker: StartWorker, args: range) -> list[str]:
    """Dead-lettered ``flaky`` jobs, one per argument (each argument's first run), oldest first; the worker that
    ran them (one at a time, in order) is stopped again."""
    flaky = tasks.get("flaky")
    assert flaky is not None
    jobs = [await flaky.enqueue(i) for i in args]
    worker = await start_worker(tasks, concurrency=1)

    async def all_dead() -> bool:
        return [await status_of(tasks, j.id) for j in jobs] == [aqueue.JobStatus.DEAD] * len(jobs)

    await wait_until(all_dead)
    await worker.stop()
    return [j.id for j in jobs]


# -- dead_letters --------------------------------------------------------------------------------------------


async def test_dead_letters_pages_newest_first_within_the_limit(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks, _ = app(make_tasks())
    empty = await tasks.dead_letters()
    assert (empty.entries, empty.total) == ([], 0)
    before = time.time()
    ids = await dead_jobs(tasks, start_worker, range(5))
    page = await tasks.dead_letters(2)
    assert page.total == 5
    assert [e.job for e in page.entries] == [ids[4], ids[3]]  # the newest first, no more than the limit
    entry = page.entries[0]
    assert isinstance(entry, aqueue.DeadLetter)
    assert (entry.task, entry.reason) == ("flaky", "RuntimeError: first run of 4")
    assert before - 1 <= entry.dead_at <= time.time() + 1  # Redis clock, seconds
    older = await tasks.dead_letters(2, before=page.entries[-1].id)
    assert [e.job for e in older.entries] == [ids[2], ids[1]] and older.total == 5
    last = await tasks.dead_letters(10, before=older.entries[-1].id)
    assert [e.job for e in last.entries] == [ids[0]]
    assert [e.job for e in (await tasks.dead_letters(100)).entries] == ids[::-1]


async def test_dead_letters_refuses_bad_arguments(make_tasks: MakeTasks) -> None:
    tasks, _ = app(make_tasks())
    for limit in (0, -1, True, 1.5):
        with pytest.raises(aqueue.ConfigurationError, match="limit"):
            await tasks.dead_letters(limit)  # type: ignore[arg-type]
    with pytest.raises(aqueue.ConfigurationError, match="entry id"):
        await tasks.dead_letters(before="yesterday")


# -- retry ---------------------------------------------------------------------------------------------------


async def test_retry_runs_a_dead_job_again_and_deletes_its_dead_letter(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks, runs = app(make_tasks())
    (job_id,) = await dead_jobs(tasks, start_worker, range(1))
    others = await dead_jobs(tasks, start_worker, range(10, 12))  # they stay dead: retry touches only its job
    assert (await tasks.dead_letters()).total == 3
    result = await tasks.retry(job_id)
    assert isinstance(result, aqueue.RequeueResult)
    assert (result.requeued, result.skipped) == ([job_id], {})
    assert await status_of(tasks, job_id) == aqueue.JobStatus.QUEUED
    record = await tasks.job(job_id).record()
    assert (record.attempts, record.error, record.finished_at) == (0, None, None)  # a fresh start
    assert [e.job for e in (await tasks.dead_letters()).entries] == others[::-1]  # its entry went, not the others'
    assert [e["by"] for e in await events_of(tasks, "requeued", job=job_id)] == ["retry"]
    await start_worker(tasks, concurrency=1)
    assert await tasks.job(job_id).result(timeout=5) == 0  # it ran again, and succeeded this time
    assert runs[0] == 2
    again = await tasks.retry(job_id)  # succeeded: nothing to retry, and it does not run a third time
    assert again.requeued == [] and "succeeded" in again.skipped[job_id]
    assert await status_of(tasks, job_id) == aqueue.JobStatus.SUCCEEDED and runs[0] == 2
    assert [await status_of(tasks, i) for i in others] == [aqueue.JobStatus.DEAD] * 2


async def test_retry_runs_a_failed_job_now_instead_of_after_its_backoff(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks, runs = app(make_tasks())
    late = tasks.get("late")
    assert late is not None
    worker = await start_worker(tasks, concurrency=1)
    job = await late.enqueue(7)

    async def failed() -> bool:
        return await status_of(tasks, job.id) == aqueue.JobStatus.FAILED

    await wait_until(failed)  # waiting a minute for its second attempt
    assert (await tasks.retry(job.id)).requeued == [job.id]
    assert await job.result(timeout=5) == 7  # long before the backoff was over
    assert runs[-7] == 2
    await worker.stop()


async def test_retry_of_an_unknown_job_raises_unknown_job(make_tasks: MakeTasks) -> None:
    tasks, _ = app(make_tasks())
    with pytest.raises(aqueue.UnknownJob, match="'nope'"):
        await tasks.retry("nope")
    assert await events_of(tasks, "requeued") == []


async def test_retry_leaves_a_queued_job_alone(make_tasks: MakeTasks) -> None:
    tasks, _ = app(make_tasks())
    flaky = tasks.get("flaky")
    assert flaky is not None
    job = await flaky.enqueue(1)
    result = await tasks.retry(job.id)
    assert result.requeued == [] and "queued" in result.skipped[job.id]
    assert await events_of(tasks, "requeued") == []


# -- reprocess -----------------------------------------------------------------------------------------------


async def test_reprocess_by_ids_by_count_and_all_in_batches(
    make_tasks: MakeTasks, start_worker: StartWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks, runs = app(make_tasks())
    ids = await dead_jobs(tasks, start_worker, range(6))
    result = await tasks.reprocess([ids[3], "nope", ids[3]])
    assert result.requeued == [ids[3]]
    assert result.skipped == {"nope": "no record (never existed, or its retention expired)"}
    oldest = await tasks.reprocess(max=2)
    assert (oldest.requeued, oldest.skipped) == (ids[:2], {})  # the oldest first, no more than max
    assert [await status_of(tasks, i) for i in ids[2:]] == ["dead", "queued", "dead", "dead"]
    monkeypatch.setattr(admin, "BATCH", 2)  # all of them: the rest, in several batches
    rest = await tasks.reprocess()
    assert (rest.requeued, rest.skipped) == ([ids[2], ids[4], ids[5]], {})
    assert [await status_of(tasks, i) for i in ids] == ["queued"] * 6
    page = await tasks.dead_letters()
    assert page.total == 0
    assert {e["by"] for e in await events_of(tasks, "requeued")} == {"reprocess"}
    nothing = await tasks.reprocess()
    assert (nothing.requeued, nothing.skipped) == ([], {})
    await start_worker(tasks, concurrency=3)
    assert [await tasks.job(i).result(timeout=5) for i in ids] == list(range(6))  # every one ran again
    assert runs == Counter(dict.fromkeys(range(6), 2))


async def test_reprocess_takes_any_iterable_and_leaves_jobs_that_are_not_dead(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks, _ = app(make_tasks())
    ids = await dead_jobs(tasks, start_worker, range(3))
    assert (await tasks.reprocess(ids=iter(ids))).requeued == ids  # any iterable of ids
    assert (await tasks.reprocess(ids[:1])).skipped == {
        ids[0]: "job is queued; only dead or failed jobs can be retried"
    }
    assert (await tasks.reprocess(max=5)).requeued == []  # no dead job left


async def test_reprocess_refuses_bad_arguments(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks, _ = app(make_tasks())
    ids = await dead_jobs(tasks, start_worker, range(1))
    with pytest.raises(aqueue.ConfigurationError, match="not both"):
        await tasks.reprocess(ids, max=1)
    for bad in (0, -3, True):
        with pytest.raises(aqueue.ConfigurationError, match="max"):
            await tasks.reprocess(max=bad)
    with pytest.raises(aqueue.ConfigurationError, match="not the string"):
        await tasks.reprocess(ids[0])
    assert await status_of(tasks, ids[0]) == aqueue.JobStatus.DEAD  # nothing was touched
    assert (await tasks.dead_letters()).total == 1
