"""The claim loop: exactly as many jobs as there are free slots, one script call per turn; blocking when idle.

A turn asks ``claim.lua`` for ``free = concurrency + prefetch - busy`` jobs split among the priority levels by quota
(first taking back messages idle longer than the lease, at most once per ``min(lease/4, 1 s)``). With nothing to
claim, an idle worker blocks in ``XREADGROUP … BLOCK`` on all levels and starts whatever arrives. At low load the
queue was empty when the last blocking read began and that read waited: it blocks again at once instead of first
claiming (an empty claim is a round trip per job at low rates). When a blocking read returns at once, work is
flowing: it claims in batches again.

A burst run with ``max_jobs`` asks for no more than the jobs it may still start, so it never holds one it will not
run; once it has started them all it claims nothing more, waits for them to finish and be recorded, and ends.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from typing import TYPE_CHECKING

from aqueue._core.errors import BrokerUnavailable, ConfigurationError
from aqueue._core.wire import Claimed
from aqueue._redis.breaker import MAX_RETRY_DELAY as _MAX_RETRY_DELAY
from aqueue._redis.broker import Broker
from aqueue._worker.control import Control
from aqueue._worker.lifecycle import Lifecycle, WorkerState
from aqueue._worker.options import WorkerOptions
from aqueue._worker.promoter import PROMOTE_LIMIT
from aqueue._worker.quotas import ReadQuotas
from aqueue._worker.settler import Settler
from aqueue._worker.sizing import Sizing

if TYPE_CHECKING:
    from aqueue._core.tasks import Tasks

__all__ = ["Claimer", "check_max_jobs"]

log = logging.getLogger("aqueue._worker.worker")

_BLOCK_SECONDS = 5.0  # longest single blocking read; an idle worker wakes at once when work arrives
_TRICKLE_WAIT = 0.002  # a blocking read that waited longer than this found an empty queue: work trickles in


class _Next(enum.Enum):
    """What a claim turn leads to."""

    CLAIM = 1  # claim again at once (jobs came, only stale entries did, or the queue was paused)
    BLOCK = 2  # nothing claimable: block until work arrives
    DONE = 3  # burst mode, and nothing is left to do


def check_max_jobs(burst: bool, max_jobs: int | None) -> int | None:
    """``max_jobs`` of ``Worker.run``, checked: None, or an int >= 1 of a burst run."""
    if max_jobs is None:
        return None
    if isinstance(max_jobs, bool) or not isinstance(max_jobs, int) or max_jobs < 1:
        raise ConfigurationError(f"max_jobs must be an integer >= 1, got {max_jobs!r}")
    if not burst:
        raise ConfigurationError("max_jobs applies to a burst run: use run(burst=True, max_jobs=...)")
    return max_jobs


class Claimer:
    """Claims jobs for one worker and hands them to its :class:`Settler` (see the module docstring)."""

    def __init__(
        self, opts: WorkerOptions, tasks: Tasks, sizing: Sizing, life: Lifecycle, settler: Settler, control: Control
    ) -> None:
        self._owner = opts.id
        self._tasks = tasks
        self._lease = opts.lease
        self._prefetch = opts.prefetch
        self._sizing = sizing
        self._life = life
        self._settler = settler
        self._control = control
        self._quotas = ReadQuotas([p.weight for p in tasks.settings.priorities], tasks.settings.strict_priority)
        self._lease_ms = round(opts.lease * 1000)
        self._reclaim_every = min(opts.lease / 4, 1.0)
        self.blocked = False  # in a blocking read, which a stop may abandon (what it delivered stays pending)
        self._cursors: list[str] = []
        self._next_reclaim = 0.0
        self._trickle = False
        self._limits = ""
        self._left: int | None = None  # with max_jobs: jobs this run may still start

    def limit(self, max_jobs: int | None) -> None:
        """A run begins: start at most ``max_jobs`` jobs in it (None: no limit)."""
        self._left = max_jobs

    async def run(self, burst: bool) -> None:
        """Claim until the worker drains (a supervised sub-task); with ``burst``, until nothing is left to do."""
        broker = await self._tasks._broker()
        self._cursors = ["0-0"] * len(self._tasks.settings.priorities)
        self._next_reclaim = 0.0
        self._trickle = False
        self._limits = self._tasks._rate_limits_json()
        settler, sizing = self._settler, self._sizing
        backoff = 0.1
        while self._life.state is WorkerState.RUNNING:
            free = sizing.target + self._prefetch - settler.busy
            if self._left is not None:
                if self._left == 0:
                    await self._finish_limited()
                    return
                free = min(free, self._left)
            if free <= 0:
                await settler.wait_slot_free()
                continue
            try:
                now = time.monotonic()
                if not (self._trickle and now < self._next_reclaim):
                    step = await self._claim(broker, free, now, burst)
                    if step is _Next.DONE:
                        return
                    if step is _Next.CLAIM:
                        continue
                await self._block(broker)
                backoff = 0.1
            except BrokerUnavailable as exc:
                log.log(exc.log_level, "worker %s: %s; retrying in %.1fs", self._owner, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_RETRY_DELAY)
            # Anything else (streams deleted under the worker: NOGROUP) ends this run of the loop; its supervisor
            # repairs what it can and starts it again.

    async def _claim(self, broker: Broker, free: int, now: float, burst: bool) -> _Next:
        """One claim call for ``free`` jobs (taking back idle messages when that is due)."""
        reclaim = now >= self._next_reclaim
        if reclaim:
            self._next_reclaim = now + self._reclaim_every
        lease_ms = self._lease_ms if reclaim else 0
        turn = await broker.claim(self._owner, self._quotas.split(free), self._cursors, lease_ms, self._limits)
        self._cursors = turn.cursors
        if turn.paused:
            if burst and self._settler.busy == 0:
                return _Next.DONE
            await self._control.wait_resumed()
            return _Next.CLAIM
        self._control.claimed()
        if turn.own:
            await self._own_overdue(broker, turn.own)
        if turn.jobs:
            self._trickle = False
            self._dispatch(turn.jobs)
            return _Next.CLAIM
        if turn.consumed:  # only stale entries (e.g. of cancelled jobs): runnable ones may follow
            return _Next.CLAIM
        if burst:
            return _Next.DONE if await self._burst_done(broker) else _Next.CLAIM
        return _Next.BLOCK

    async def _block(self, broker: Broker) -> None:
        """Nothing to claim: block until work arrives (at most until the next take-back is due), start it."""
        self.blocked = True
        began = time.monotonic()
        try:
            delivered = await broker.wait_for_work(self._owner, min(_BLOCK_SECONDS, self._reclaim_every))
        finally:
            self.blocked = False
        self._trickle = bool(delivered) and time.monotonic() - began > _TRICKLE_WAIT
        if delivered:
            started, paused = await broker.start(self._owner, delivered, self._limits)
            self._dispatch(started)
            if paused:
                self._trickle = False
                await self._control.wait_resumed()

    async def _own_overdue(self, broker: Broker, own: list[tuple[int, str, str]]) -> None:
        """Messages of this consumer that went longer than the lease without a heartbeat: the claim renewed them.

        One still held here (running, or finished and not yet settled) is not started again: the heartbeat was late
        (a Redis stall, a blocked event loop), the worker was not gone. One not held here was left by an earlier run
        under the same name (``Worker(name=...)``): it is taken back like a dead worker's.
        """
        orphans = [item for item in own if item[1] not in self._settler.held]
        if self._left is not None:
            orphans = orphans[: self._left]  # the rest stay held here, and release() gives them back at the end
        renewed = len(own) - len(orphans)
        if renewed:
            log.warning("worker %s: %d of its jobs went longer than the lease (%.1fs) without a heartbeat (Redis "
                        "stalled or the event loop was blocked): renewed, not started again", self._owner, renewed,
                        self._lease)  # fmt: skip
        if orphans:
            log.warning("worker %s: taking back %d jobs an earlier run under the same name left running",
                        self._owner, len(orphans))  # fmt: skip
            started, _ = await broker.start(self._owner, orphans, self._limits, taken=True)
            self._dispatch(started)

    async def _burst_done(self, broker: Broker) -> bool:
        """In burst mode with nothing claimable: wait for running jobs, then check nothing became due."""
        if self._settler.busy > 0:
            await self._settler.wait_slot_free(0.1)
            return False
        await self._settler.flush()
        state = await broker.promote(PROMOTE_LIMIT)
        return state.promoted == 0

    def _dispatch(self, jobs: list[Claimed]) -> None:
        """Hand claimed jobs to the settler, counting them against ``max_jobs``."""
        if self._left is not None:
            self._left -= len(jobs)
        self._settler.dispatch(jobs)

    async def _finish_limited(self) -> None:
        """``max_jobs`` started: claim no more, wait for them to finish and be recorded (unless a stop comes)."""
        log.info("worker %s: started its max_jobs; finishing them, then stopping", self._owner)
        while self._settler.busy > 0 and self._life.state is WorkerState.RUNNING:
            await self._settler.wait_slot_free(0.1)
        await self._settler.flush()
