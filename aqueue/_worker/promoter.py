"""Promotion of delayed and backing-off jobs, woken at the earliest due time rather than on a poll."""

from __future__ import annotations

import asyncio
import logging

from aqueue._core.errors import BrokerUnavailable
from aqueue._redis.breaker import MAX_RETRY_DELAY as _MAX_RETRY_DELAY
from aqueue._redis.broker import Broker
from aqueue._redis.connect import MAX_BLOCK

__all__ = ["PROMOTE_LIMIT", "promote_due_jobs"]

log = logging.getLogger("aqueue._worker.promoter")

#: Jobs moved per promotion call; a full batch is followed by another at once.
PROMOTE_LIMIT = 1000
#: Waits this short are timed by this process, not by a blocking read in Redis (see promote_due_jobs).
_LOCAL_TIMER = 0.1


async def promote_due_jobs(broker: Broker, worker_id: str) -> None:
    """Promote due jobs forever: sleep in Redis until the earliest due time or a newly announced earlier one.

    Every worker runs this; the promotion script is atomic, so concurrent schedulers never promote a job twice.
    The wait is capped at ``MAX_BLOCK`` only as a safety net.
    """
    backoff = 0.1
    while True:
        try:
            state = await broker.promote(PROMOTE_LIMIT)
            if state.promoted >= PROMOTE_LIMIT:
                continue
            wait = MAX_BLOCK
            if state.next_due_ms is not None:
                wait = min(wait, max(0.001, (state.next_due_ms - state.now_ms + 1) / 1000))
            if wait <= _LOCAL_TIMER:
                await asyncio.sleep(wait)
            else:
                # Redis ends a blocking read's timeout on its own timer (every 100 ms at the default hz 10), so it
                # can return up to 100 ms late: block until shortly before the due time, then sleep locally.
                await broker.wait_wake(state.wake_id, wait - _LOCAL_TIMER)
            backoff = 0.1
        except BrokerUnavailable as exc:
            log.log(exc.log_level, "worker %s: scheduler: %s; retrying in %.1fs", worker_id, exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_RETRY_DELAY)
