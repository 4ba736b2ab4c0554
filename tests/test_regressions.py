"""Bugs found by the property and security suites, each pinned by a test."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest

import aqueue
from tests.helpers import MakeTasks, StartWorker


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
    broker = await tasks._broker()
    damaged = '{"a":[],"k":{},"o":{"max_attempts":2,"timeout":null,"backoff":["x",1]}}'
    await broker.redis.hset(tasks._keys.job(job.id), "spec", damaged)
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
    from aqueue._worker.runner import _backoff_ms

    assert 43_200_000 <= _backoff_ms(2000, 1e306, 1e306) <= 86_400_000


async def test_a_worker_run_with_handle_signals_false_leaves_sigterm_to_the_host(make_tasks: MakeTasks) -> None:
    """Embedded in an app that handles SIGINT/SIGTERM itself (aiohttp's run_app), the worker must not take the
    signal: the host's handler runs and the worker keeps going until the host stops it."""
    tasks = make_tasks()

    @tasks.task
    async def echo(n: int) -> int:
        return n

    loop = asyncio.get_running_loop()
    host_got = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, host_got.set)
    try:
        worker = aqueue.Worker(tasks, concurrency=2)
        running = asyncio.create_task(worker.run(handle_signals=False))
        assert await (await echo.enqueue(1)).result(timeout=5) == 1
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(host_got.wait(), 5)
        assert not running.done()
        assert await (await echo.enqueue(2)).result(timeout=5) == 2
        await worker.stop()
        await running
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def test_stop_after_the_worker_finished_is_quiet(make_tasks: MakeTasks, caplog: pytest.LogCaptureFixture) -> None:
    tasks = make_tasks()
    worker = aqueue.Worker(tasks, concurrency=1)
    await worker.run(burst=True)
    with caplog.at_level(logging.WARNING, logger="aqueue"):
        await worker.stop()
        await worker.stop()
    assert not [r for r in caplog.records if "stop request" in r.getMessage()], caplog.text


@pytest.mark.parametrize(
    "kwargs", [{"name": "a:b", "every": 1.0}, {"every": -1.0}, {"every": 1.0, "tz": "Mars/Olympus"}, {}]
)
def test_a_cron_that_cannot_be_scheduled_leaves_no_task_registered(kwargs: dict[str, object]) -> None:
    tasks = aqueue.Tasks(queue="crons", redis_url="memory://crons")
    with pytest.raises(aqueue.ConfigurationError):

        @tasks.cron(**kwargs)  # type: ignore[arg-type]
        async def tick() -> None: ...

    assert tasks.names == [] and tasks.crons == []
