"""Constant retry delays (``retry_delay``) per job and per queue, and ``Retry(after=...)`` winning over them."""

from __future__ import annotations

import pytest

import aqueue
from aqueue._worker.runner import _retry_ms
from tests.helpers import MakeTasks, StartWorker


async def _retry_waits_ms(tasks: aqueue.Tasks, job_id: str) -> list[int]:
    """For each ``retrying`` event of the job: its due time minus the time the settle wrote it (the failed
    attempt's end), in ms on the Redis clock."""
    broker = await tasks._broker()
    waits = []
    for event_id, fields in await broker.redis.xrange(tasks._keys.events):
        if fields.get("type") == "retrying" and fields.get("job") == job_id:
            waits.append(int(fields["due_at"]) - int(event_id.split("-")[0]))
    return waits


def _exactly(waits: list[int], ms: int, backend: str) -> bool:
    """Whether every wait is ``ms``: the event's id is stamped when the settle read the clock on Redis (time stands
    still in a script), a few ms later on fakeredis (it reads its clock again), never before."""
    slack = 25 if backend.startswith("memory") else 1
    return bool(waits) and all(ms - slack <= w <= ms for w in waits)


async def test_retry_delay_waits_exactly_that_long_before_every_retry(
    make_tasks: MakeTasks, start_worker: StartWorker, backend: str
) -> None:
    tasks = make_tasks()

    @tasks.task(max_attempts=3, backoff_base=5.0)
    async def flaky() -> None:
        raise ConnectionError("down")

    await start_worker(tasks)
    job = await flaky.with_options(retry_delay=0.15).enqueue()
    with pytest.raises(aqueue.JobFailed):
        await job.result(timeout=5)
    waits = await _retry_waits_ms(tasks, job.id)
    assert len(waits) == 2 and _exactly(waits, 150, backend), waits  # no doubling, no jitter
    assert (await job.record()).options.retry_delay == 0.15


async def test_queue_retry_delay_applies_unless_the_job_sets_its_own(
    make_tasks: MakeTasks, start_worker: StartWorker, backend: str
) -> None:
    tasks = make_tasks(aqueue.QueueSettings(retry=aqueue.RetryPolicy(max_attempts=2, retry_delay=0.12)))

    @tasks.task
    async def flaky() -> None:
        raise ConnectionError("down")

    await start_worker(tasks)
    queue_default = await flaky.enqueue()
    own = await flaky.with_options(retry_delay=0.05).enqueue()
    for job in (queue_default, own):
        with pytest.raises(aqueue.JobFailed):
            await job.result(timeout=5)
    assert _exactly(await _retry_waits_ms(tasks, queue_default.id), 120, backend)
    assert _exactly(await _retry_waits_ms(tasks, own.id), 50, backend)


async def test_retry_after_wins_over_retry_delay(
    make_tasks: MakeTasks, start_worker: StartWorker, backend: str
) -> None:
    tasks = make_tasks()

    @tasks.task(max_attempts=2)
    async def polite() -> None:
        raise aqueue.Retry("rate limited", after=0.04)

    await start_worker(tasks)
    job = await polite.with_options(retry_delay=30).enqueue()
    with pytest.raises(aqueue.JobFailed):
        await job.result(timeout=5)
    assert _exactly(await _retry_waits_ms(tasks, job.id), 40, backend)


@pytest.mark.no_redis
def test_a_damaged_retry_delay_falls_back_to_the_backoff() -> None:
    for damaged in ("1", None, -1, float("nan"), True):
        ms = _retry_ms(1, {"backoff": [1.0, 10.0], "retry_delay": damaged})
        assert 500 <= ms <= 1000
    assert _retry_ms(3, {"backoff": [1.0, 10.0], "retry_delay": 2}) == 2000


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "1", True])
@pytest.mark.no_redis
def test_retry_delay_out_of_bounds_is_refused(bad: object) -> None:
    with pytest.raises(aqueue.ConfigurationError, match="retry_delay"):
        aqueue.RetryPolicy(retry_delay=bad)  # type: ignore[arg-type]
    with pytest.raises(aqueue.ConfigurationError, match="retry_delay"):
        aqueue.JobOptions(retry_delay=bad)  # type: ignore[arg-type]
