"""Bugs found by the property and security suites, each pinned by a test."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

import aqueue
from tests.conftest import RunningWorker

MakeTasks = Callable[..., aqueue.Tasks]
StartWorker = Callable[..., Awaitable[RunningWorker]]


async def test_a_stored_spec_with_a_bad_backoff_is_dead_lettered_and_the_slot_lives_on(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()

    @tasks.task
    async def fails() -> None:
        raise RuntimeError("always")

    @tasks.task
    async def ok() -> str:
        return "ok"

    job = await fails.enqueue()
    broker = await tasks.broker()
    damaged = '{"a":[],"k":{},"o":{"max_attempts":2,"timeout":null,"backoff":["x",1]}}'
    await broker.redis.hset(tasks.keys.job(job.id), "spec", damaged)
    await start_worker(tasks, concurrency=1)
    with pytest.raises(aqueue.JobFailed, match="undecodable job spec"):
        await job.result(timeout=5)
    assert await (await ok.enqueue()).result(timeout=5) == "ok"  # the only slot still runs jobs


@pytest.mark.parametrize("option", ["delay", "timeout", "backoff_base", "backoff_max", "ttl", "dedup_ttl"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_option_values_are_refused_at_once(option: str, value: float) -> None:
    tasks = aqueue.Tasks("reg-options", "memory://reg-options")

    @tasks.task
    async def t() -> None:
        return None

    with pytest.raises(aqueue.ConfigurationError, match=option):
        t.with_options(**{option: value})


async def test_a_keyword_argument_named_self_is_an_ordinary_argument(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()

    @tasks.task
    async def echo(**kwargs: int) -> dict[str, int]:
        return kwargs

    await start_worker(tasks)
    assert await (await echo.enqueue(self=1)).result(timeout=5) == {"self": 1}
    assert echo.spec(self=2).kwargs == {"self": 2}
    assert await echo(self=3) == {"self": 3}


def test_backoff_that_would_overflow_is_capped_at_a_day() -> None:
    from aqueue.runner import _backoff_ms

    assert 43_200_000 <= _backoff_ms(2000, 1e306, 1e306) <= 86_400_000
