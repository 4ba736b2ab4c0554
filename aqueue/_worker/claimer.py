"""The claim loop: exactly as many jobs as there are free slots, one script call per turn; blocking when idle.

A turn asks ``claim.lua`` for ``free = concurrency + prefetch - busy`` jobs split among the priority levels by quota
(first taking back messages idle longer than the lease, at most once per ``min(lease/4, 1 s)``). With nothing to
claim, an idle worker blocks in ``XREADGROUP … BLOCK`` on all levels and starts whatever arrives. At low load the
queue was empty when the last blocking read began and that read waited: it blocks again at once instead of first
claiming (an empty claim is a round trip per job at low rates). When a blocking read returns at once, work is
flowing: it claims in batches again.

A burst run with ``max_jobs`` asks for no more than the jobs it may still start, so it never holds one it will not
run; once it has started them all it claims nothing more, waits for them to finish and be recorded, and ends.

In a worker of several queues each queue has its own claim loop (a lane), and ``free`` is also capped by the
lane's part of the shared :class:`~aqueue._worker.budget.Budget`. A lane that found its queue empty may still take
one job when the budget is spent (its blocking read, or a claim of one), so that a quiet queue's job starts at once
while another queue is flooded; it then waits for its share as the other lanes' jobs end.
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
from aqueue._worker.budget import Budget
from aqueue._worker.control import Control
from aqueue._worker.lifecycle import Lifecycle, WorkerState
from aqueue._worker.options import WorkerOptions
from aqueue._worker.promoter import PROMOTE_LIMIT
from aqueue._worker.quotas import ReadQuotas, read_weights
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
        self,
        opts: WorkerOptions,
        tasks: Tasks,
        sizing: Sizing,
        life: Lifecycle,
        settler: Settler,
        control: Control,
        share: tuple[Budget, int] | None = None,
    ) -> None:
        self._owner = opts.id
        # A lane of a worker of several queues: the shared budget and this lane's index in it.
        self._budget: Budget | None = share[0] if share is not None else None
        self._lane = share[1] if share is not None else 0
        self._tasks = tasks
        self._lease = opts.lease
        self._prefetch = opts.prefetch
        self._sizing = sizing
        self._life = life
        self._settler = settler
        self._control = control
        self._quotas = ReadQuotas(read_weights(tasks.settings), tasks.settings.strict_priority)
        self._lease_ms = round(opts.lease * 1000)
        self._reclaim_every = min(opts.lease / 4, 1.0)
        self.blocked = False  # in a blocking read, which a stop may abandon (what it delivered stays pending)
        self._cursors: list[str] = []
        self._next_reclaim = 0.0
        self._trickle = False
        self._limits = ""
        self._waited = False  # burst: the last check found jobs waiting that this worker could not claim
        self._groups = False  # the last claim saw groups waiting: their level gets its share of the next
        self._left: int | None = None  # with max_jobs: jobs this run may still start

    def limit(self, max_jobs: int | None) -> None:
        """A run begins: start at most ``max_jobs`` jobs in it (None: no limit)."""
        self._left = max_jobs

    async def run(self, burst: bool) -> None:
        """Claim until the worker drains (a supervised sub-task); with ``burst``, until nothing is left to do."""
        broker = await self._tasks._broker()
        self._cursors = ["0-0"] * (len(self._tasks.settings.priorities) + 1)  # the levels and the group stream
        self._next_reclaim = 0.0
        self._trickle = False
        self._limits = self._tasks._rate_limits_json()
        backoff = 0.1
        try:
            while self._life.state is WorkerState.RUNNING:
                if self._left == 0:
                    await self._finish_limited()
                    return
                free = self._sizing.target + self._prefetch - self._settler.busy
                if self._left is not None:
                    free = min(free, self._left)
                if self._budget is not None and free > 0:
                    # Over its share, a lane whose queue was empty may still take a job (see the module docstring).
                    floor = 1 if self._budget.idle(self._lane) else 0
                    free = max(floor, self._budget.claimable(self._lane, free))
                if free <= 0:
                    await self._settler.wait_slot_free()
                    continue
                try:
                    if await self._turn(broker, free, burst):
                        return
                    backoff = 0.1
                except BrokerUnavailable as exc:
                    log.log(exc.log_level, "worker %s: %s; retrying in %.1fs", self._owner, exc, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, _MAX_RETRY_DELAY)
                # Anything else (streams deleted under the worker: NOGROUP) ends this run of the loop; its
                # supervisor repairs what it can and starts it again.
        finally:
            self._compete(False)  # a lane that stopped claiming leaves its share to the others

    async def _turn(self, broker: Broker, free: int, burst: bool) -> bool:
        """Claim ``free`` jobs, or block until work arrives and start it; True when the run is done."""
        now = time.monotonic()
        if not (self._trickle and now < self._next_reclaim):
            step = await self._claim(broker, free, now, burst)
            if step is not _Next.BLOCK:
                return step is _Next.DONE
        await self._block(broker)
        return False

    def _compete(self, has_work: bool) -> None:
        """A lane of several: tell the budget whether this queue has work (it shares slots among those that do)."""
        if self._budget is not None:
            self._budget.competing(self._lane, has_work)

    async def _claim(self, broker: Broker, free: int, now: float, burst: bool) -> _Next:
        """One claim call for ``free`` jobs (taking back idle messages when that is due)."""
        reclaim = now >= self._next_reclaim
        if reclaim:
            self._next_reclaim = now + self._reclaim_every
        lease_ms = self._lease_ms if reclaim else 0
        quotas = self._quotas.split(free, self._groups)
        turn = await broker.claim(self._owner, quotas, self._cursors, lease_ms, self._limits)
        self._cursors = turn.cursors
        self._groups = turn.groups
        if turn.paused:
            if burst and self._settler.busy == 0:
                return _Next.DONE
            self._compete(False)
            await self._control.wait_resumed()
            return _Next.CLAIM
        self._control.claimed()
        if turn.own:
            await self._own_overdue(broker, turn.own)
        if turn.jobs:
            self._trickle = False
            self._waited = False
            self._compete(True)
            self._dispatch(turn.jobs)
            return _Next.CLAIM
        if turn.consumed:  # only stale entries (e.g. of cancelled jobs): runnable ones may follow
            return _Next.CLAIM
        if burst:
            return _Next.DONE if await self._burst_done(broker) else _Next.CLAIM
        self._compete(False)
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
            self._compete(bool(started))
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
        if state.promoted:
            return False
        # Settling may have put jobs back to wait (a permit given back re-queues a parked job, a workflow step's
        # end queues the next): done only when nothing waits anywhere, parked and grouped jobs included.
        if await broker.waiting(list(self._tasks.concurrency_limits)):
            # Claim again at once; when this repeats (parked jobs whose permits other workers hold), not in a spin.
            if self._waited:
                await self._settler.wait_slot_free(0.01)
            self._waited = True
            return False
        return True

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
