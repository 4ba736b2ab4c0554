"""Cron extras: 6-field (seconds-first) schedules, ``run_at_startup`` once across workers, ``Tasks.cron_jobs()``."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
from typing import Any

import pytest

import aqueue
from aqueue._core.cron import CronSchedule, CronStatus, cron_statuses
from aqueue._redis.admin import Admin
from tests.helpers import MakeTasks, Serve, StartWorker, events_of, json_of, wait_until

UTC = dt.UTC


# -- 6-field expressions (no Redis) ------------------------------------------------------------------------------


@pytest.mark.no_redis
def test_six_field_expression_reads_seconds_first() -> None:
    # Seconds last (croniter's default) would read "5 * * * * *" as minute 5: next at 300 s, not 5 s.
    s = CronSchedule(name="s", task="t", cron="5 * * * * *")
    assert s.next_after(0) == 5_000
    assert s.next_after(5_000) == 65_000


@pytest.mark.no_redis
def test_every_two_seconds_ticks() -> None:
    s = CronSchedule(name="s", task="t", cron="*/2  * * * * *")
    assert s.cron == "*/2 * * * * *"
    assert s.next_after(2_500) == 4_000 and s.next_after(3_999) == 4_000 and s.next_after(4_000) == 6_000
    assert s.ticks_between(0, 10_000, 3) == [6_000, 8_000, 10_000]
    assert s.ticks_between(1_000, 7_999, 10) == [2_000, 4_000, 6_000]


@pytest.mark.no_redis
def test_six_field_expression_in_a_time_zone() -> None:
    s = CronSchedule(name="s", task="t", cron="30 0 9 * * *", tz="Europe/Paris")  # 09:00:30 Paris = 08:00:30 UTC
    start = int(dt.datetime(2025, 1, 10, 12, tzinfo=UTC).timestamp() * 1000)
    assert s.next_after(start) == int(dt.datetime(2025, 1, 11, 8, 0, 30, tzinfo=UTC).timestamp() * 1000)


@pytest.mark.no_redis
@pytest.mark.parametrize("bad", ["60 * * * * *", "* * * * * * *", "*/2 * * 31 2 *"])
def test_bad_six_field_expression(bad: str) -> None:
    with pytest.raises(aqueue.ConfigurationError, match="cron"):
        CronSchedule(name="s", task="t", cron=bad)


@pytest.mark.no_redis
@pytest.mark.parametrize("value", [1, "yes", None])
def test_run_at_startup_must_be_a_bool(value: object) -> None:
    with pytest.raises(aqueue.ConfigurationError, match="run_at_startup"):
        CronSchedule(name="s", task="t", every=60, run_at_startup=value)  # type: ignore[arg-type]


@pytest.mark.no_redis
def test_cron_statuses_merge_local_and_recorded_by_name() -> None:
    mine = CronSchedule(name="b", task="tb", every=30)
    recorded = {
        "a": {"task": "ta", "schedule": "cron '0 * * * *' (UTC)", "next": "7200000", "last": "3600000", "job": "j1"},
        "b": {"next": "60000", "startup": "1500", "job": "j2"},
    }
    a, b = cron_statuses([mine], recorded)
    assert a == CronStatus(
        name="a",
        task="ta",
        description="cron '0 * * * *' (UTC)",
        schedule=None,
        next_run=dt.datetime(1970, 1, 1, 2, tzinfo=UTC),
        last_run=dt.datetime(1970, 1, 1, 1, tzinfo=UTC),
        last_job="j1",
        startup_run=None,
    )
    assert not a.registered and b.registered and b.schedule is mine and b.description == "every 30s"
    assert b.last_run is None and b.startup_run == dt.datetime(1970, 1, 1, 0, 0, 1, 500_000, tzinfo=UTC)
    assert cron_statuses([mine], {})[0].next_run is None


# -- second resolution on both backends ------------------------------------------------------------------------


async def test_every_two_seconds_fires_once_per_tick_across_two_workers(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()
    runs: list[float] = []

    @tasks.cron("*/2 * * * * *")
    async def fast() -> None:
        runs.append(time.time())

    await asyncio.gather(start_worker(tasks), start_worker(tasks))
    await wait_until(lambda: _count(events_of(tasks, "cron"), 3), 8.0)
    ticks = [int(e["tick"]) for e in await events_of(tasks, "cron")]
    assert len(set(ticks)) == len(ticks)  # one job per tick, never two
    assert all(t % 2000 == 0 for t in ticks)
    assert all(b - a == 2000 for a, b in itertools.pairwise(ticks))  # none skipped
    await wait_until(lambda: len(runs) >= len(ticks), 3.0)


async def _count(events: Any, at_least: int) -> bool:
    return len(await events) >= at_least


# -- run_at_startup ----------------------------------------------------------------------------------------------


@pytest.fixture
def startup_calls(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What every ``cron_startup`` call returned (True: it enqueued the startup run), in order."""
    calls: list[bool] = []
    real = Admin.cron_startup

    async def spy(self: Admin, *args: Any) -> bool:
        fired = await real(self, *args)
        calls.append(fired)
        return fired

    monkeypatch.setattr(Admin, "cron_startup", spy)
    return calls


async def test_run_at_startup_runs_once_across_three_workers_starting_together(
    make_tasks: MakeTasks, start_worker: StartWorker, startup_calls: list[bool]
) -> None:
    tasks = make_tasks()
    runs: list[str] = []

    @tasks.cron("0 0 1 1 *", name="warmup", run_at_startup=True)  # its next tick is months away
    async def warm() -> None:
        runs.append("ran")

    await asyncio.gather(*(start_worker(tasks) for _ in range(3)))
    await wait_until(lambda: len(startup_calls) == 3, 5.0)
    assert sorted(startup_calls) == [False, False, True]
    await wait_until(lambda: runs == ["ran"], 5.0)
    (fired,) = await events_of(tasks, "cron")
    assert fired["name"] == "warmup" and fired["startup"] == "1"
    (status,) = await tasks.cron_jobs()
    assert status.last_job == fired["job"] and status.last_run is None  # the tick record is left alone
    assert status.startup_run is not None and abs(status.startup_run.timestamp() - time.time()) < 5


async def test_run_at_startup_runs_again_for_a_worker_started_after_the_window(
    make_tasks: MakeTasks, start_worker: StartWorker, startup_calls: list[bool]
) -> None:
    tasks = make_tasks()

    @tasks.cron("0 0 1 1 *", name="warmup", run_at_startup=True)
    async def warm() -> None:
        return None

    @tasks.cron("0 0 1 1 *", name="plain")
    async def plain() -> None:
        return None

    await start_worker(tasks)
    await wait_until(lambda: startup_calls == [True], 5.0)
    broker = await tasks._broker()
    await broker.redis.hset(tasks._keys.cron, "warmup:startup", 1)  # the last startup run: long before the window
    await start_worker(tasks)
    await wait_until(lambda: startup_calls == [True, True], 5.0)
    fired = await events_of(tasks, "cron")
    assert [(e["name"], e.get("startup")) for e in fired] == [("warmup", "1")] * 2  # never for "plain"
    assert fired[0]["job"] != fired[1]["job"]


# -- cron_jobs(): the Python view /status shows -----------------------------------------------------------------


async def test_cron_jobs_lists_next_and_last_run_here_and_elsewhere(
    make_tasks: MakeTasks, start_worker: StartWorker, serve: Serve
) -> None:
    tasks = make_tasks()

    @tasks.cron(every=1, name="beat")
    async def beat() -> None:
        return None

    (before,) = await tasks.cron_jobs()
    assert before.registered and before.schedule is not None and before.schedule.every == 1.0
    assert before.next_run is None and before.last_run is None and before.last_job is None

    await start_worker(tasks)
    await wait_until(lambda: _count(events_of(tasks, "cron"), 1), 5.0)
    fired = (await events_of(tasks, "cron"))[-1]
    other = make_tasks()  # a registry that does not declare the schedule still sees what workers recorded

    async def caught_up() -> bool:
        (s,) = await other.cron_jobs()
        return s.last_job == fired["job"]

    await wait_until(caught_up, 3.0)
    (seen,) = await other.cron_jobs()
    assert not seen.registered and seen.task == "beat" and seen.description == "every 1s"
    assert seen.last_run is not None and seen.last_run.timestamp() * 1000 == int(fired["tick"])
    assert seen.next_run is not None and seen.next_run > seen.last_run

    status = await json_of(await (await serve(other)).get("/status"), 200)
    (shown,) = status["cron"]
    assert shown["last_run"] >= seen.last_run.timestamp() and shown["next_run"] > shown["last_run"]
    assert shown["schedule"] == "every 1s" and shown["registered"] is False
