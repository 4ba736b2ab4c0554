"""The cron loop a worker runs when its :class:`~aqueue.Tasks` has periodic jobs.

Every worker runs it; each tick is enqueued by exactly one of them because ``cron.lua`` records the tick and
enqueues its job in one script call, and skips a tick that is not newer than the recorded one. Ticks are computed
from the wall clock (:class:`~aqueue._core.cron.CronSchedule` works in Unix ms), so workers agree on them; a worker
whose clock is a little behind just finds its tick already taken. A schedule with ``run_at_startup`` also gets
one run when the loop starts, unless another worker enqueued one less than
:data:`~aqueue._core.cron.STARTUP_WINDOW` ago (the script decides, on the Redis clock).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aqueue._core import cron
from aqueue._core.aio import retry_unavailable
from aqueue._core.errors import BrokerUnavailable
from aqueue._redis.breaker import MAX_RETRY_DELAY as _MAX_RETRY_DELAY

if TYPE_CHECKING:
    from aqueue._core.task import CronJob
    from aqueue._core.tasks import Tasks

__all__ = ["run_crons"]

log = logging.getLogger("aqueue._core.cron")


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _fire(tasks: Tasks, job: CronJob, tick: int | None) -> bool:
    """Enqueue the job of ``tick`` (None: the startup run) unless another worker did."""
    s = job.schedule
    task = tasks.get(s.task)
    if task is None:  # registered by add_cron, so only a registry changed at run time gets here
        log.error("cron %s: task %r is not registered; run skipped", s.name, s.task)
        return False
    item = tasks._item(task.spec(*job.args, **job.kwargs))
    broker = await tasks._broker()
    if tick is None:
        window, following = round(cron.STARTUP_WINDOW * 1000), s.next_after(_now_ms())
        fired = await retry_unavailable(
            f"cron {s.name}",
            lambda: broker.cron_startup(s.name, window, following, s.describe(), s.task, item),
            5,
        )
    else:
        fired = await retry_unavailable(
            f"cron {s.name}", lambda: broker.cron_tick(s.name, tick, s.next_after(tick), s.describe(), s.task, item), 5
        )
    if fired:
        log.info("cron %s: enqueued job %s for %s", s.name, item.job_id, "startup" if tick is None else tick)
    return fired


async def run_crons(tasks: Tasks) -> None:
    """Register every cron job's schedule, run the configured catch-up and startup runs, then fire each tick as it
    comes."""
    crons = tasks.crons
    if not crons:
        return
    next_at = await _register(tasks, crons)
    by_name = {job.schedule.name: job for job in crons}
    while True:
        due = min(next_at.values())
        wait = (due - _now_ms()) / 1000
        if wait > 0:
            await asyncio.sleep(min(wait, 60.0))  # re-read the clock at least every minute (suspend, clock steps)
            continue
        now = _now_ms()
        for name, at in list(next_at.items()):
            if at <= now:
                await _fire_due(tasks, by_name[name], at, now)
                next_at[name] = by_name[name].schedule.next_after(now)


async def _register(tasks: Tasks, crons: Sequence[CronJob]) -> dict[str, int]:
    """Record each cron job's schedule and next tick, fire the catch-up ticks and startup runs; returns the next
    tick of each."""
    broker = await tasks._broker()
    backoff = 0.1
    while True:
        try:
            state = await broker.cron_state()
            break
        except BrokerUnavailable as exc:
            log.log(exc.log_level, "cron: Redis unavailable: %s; retrying in %.1fs", exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_RETRY_DELAY)
    now = _now_ms()
    next_at: dict[str, int] = {}
    for job in crons:
        s = job.schedule
        next_at[s.name] = s.next_after(now)
        register = functools.partial(broker.cron_tick, s.name, 0, next_at[s.name], s.describe(), s.task, None)
        await retry_unavailable(f"cron {s.name}", register, 50)
        last = int(state.get(s.name, {}).get("last", "0") or 0)
        if s.catch_up and last:  # a cron that never ran has nothing to catch up
            for tick in s.ticks_between(last, now, s.catch_up):
                await _fire(tasks, job, tick)
        if s.run_at_startup:
            await _fire(tasks, job, None)
    return next_at


async def _fire_due(tasks: Tasks, job: CronJob, at: int, now: int) -> None:
    """Fire the newest tick of ``job`` due since ``at``: a loop that was blocked or asleep does not burst through
    missed ones."""
    ticks = job.schedule.ticks_between(at - 1, now, 1)
    try:
        if ticks:
            await _fire(tasks, job, ticks[-1])
    except BrokerUnavailable as exc:
        log.log(exc.log_level, "cron %s: tick %d not enqueued, Redis unavailable: %s", job.schedule.name, ticks[-1],
                exc)  # fmt: skip
