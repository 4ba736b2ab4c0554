"""Periodic jobs: ``@tasks.cron`` with a fixed interval or a cron expression, and ``tasks.add_cron``.

    python examples/cron.py                    # memory:// (no Redis needed): runs until 3 heartbeats
    aqueue worker examples.cron:tasks          # the real thing: every worker runs the schedule

Every worker of the queue runs the cron loop, yet each tick is enqueued exactly once (the tick is claimed in
Redis in the same script that enqueues its job), so start as many workers as you like. Ticks missed while no
worker ran are skipped, unless ``catch_up=N`` asks for the latest N of them.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta

import aqueue

tasks = aqueue.Tasks("examples-cron", redis_url=os.environ.get("AQUEUE_REDIS_URL", "memory://examples-cron"))

#: When each heartbeat ran in this process (only for the demo's output; a real task would do its work instead).
beats: list[float] = []


@tasks.cron(every=timedelta(seconds=1), name="heartbeat")
async def heartbeat() -> float:
    """Every second. ``every`` ticks are aligned to the Unix epoch, so all workers agree on them."""
    now = time.time()
    beats.append(now)
    print(f"heartbeat at {datetime.fromtimestamp(now, UTC):%H:%M:%S.%f}"[:-3])
    return now


@tasks.cron("0 9 * * 1-5", tz="Europe/Paris", name="weekday-report", catch_up=1, timeout=600.0)
async def weekday_report() -> str:
    """At 09:00 Paris time, Monday to Friday, daylight-saving time included. ``catch_up=1``: if no worker ran
    at 09:00 (a deploy, an outage), the first worker to start afterwards runs the missed report once."""
    return "report sent"


@tasks.task(name="cron.purge_sessions")
def purge_sessions(older_than_days: int) -> int:
    """A plain task, enqueued on demand as usual and also scheduled below with its own arguments."""
    return 0  # delete the sessions older than that, return how many


# An existing task on a schedule, with the arguments each run gets: 03:30 UTC every night.
tasks.add_cron(purge_sessions, "30 3 * * *", name="nightly-purge", kwargs={"older_than_days": 30})


def _when(ms: str | None) -> str:
    return f"{datetime.fromtimestamp(int(ms) / 1000, UTC):%Y-%m-%d %H:%M:%S} UTC" if ms and ms != "0" else "never"


async def main(heartbeats: int = 3, timeout: float = 10.0) -> dict[str, dict[str, str]]:
    """Run a worker until ``heartbeats`` heartbeats ran, then print and return each cron job's recorded state."""
    async with tasks:
        worker = aqueue.Worker(tasks, concurrency=10)
        running = asyncio.create_task(worker.run())
        try:
            async with asyncio.timeout(timeout):
                while len(beats) < heartbeats:  # noqa: ASYNC110 (the demo just polls what the task recorded)
                    await asyncio.sleep(0.05)
        finally:
            await worker.stop()
            await running
        # What the workers recorded per cron job: schedule, next and last run, last job (also in /status).
        state = await (await tasks._broker()).cron_state()
        for name, s in sorted(state.items()):
            print(f"{name:<15} {s['schedule']:<40} next {_when(s.get('next'))}, last {_when(s.get('last'))}")
        return state


if __name__ == "__main__":
    asyncio.run(main())
