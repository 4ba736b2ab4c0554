"""Running and settling: the jobs a worker holds, the slots that run them, and the batched settle loop.

The claimer hands jobs over with :meth:`Settler.dispatch`; a slot coroutine (:class:`SlotPool`) takes each from the
queue and runs it (:meth:`Settler.run_one`, the hot path); its outcome joins a list that the settle loop sends in one
script call, and again as soon as that call returns. Nothing waits to fill a batch, so low load keeps low latency
and high load gets large batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aqueue._core import joblogs
from aqueue._core.aio import retry_unavailable
from aqueue._core.context import _current
from aqueue._core.errors import BrokerUnavailable
from aqueue._core.wire import Claimed, Outcome, OutcomeKind
from aqueue._redis.breaker import MAX_RETRY_DELAY as _MAX_RETRY_DELAY
from aqueue._worker.procpool import ProcessPool, check_findable
from aqueue._worker.runner import run_job
from aqueue._worker.slots import SlotPool

if TYPE_CHECKING:
    from aqueue._core.tasks import Tasks

__all__ = ["SHUTDOWN_GRACE", "JobObserver", "Settler"]

log = logging.getLogger("aqueue._worker.worker")

#: Seconds a stopping worker spends at most on its last Redis calls (settling what finished, giving the rest back)
#: after its running jobs ended: a Redis that hangs must not hold the exit; what was not given back returns after
#: the lease.
SHUTDOWN_GRACE = 5.0

#: Called after every attempt with (task, seconds it ran, seconds it waited in the stream, outcome kind ``ok``,
#: ``retry``, ``dead`` or ``cancel``); it runs on the slot's path, so it must be quick and must not block.
JobObserver = Callable[[str, float, float, OutcomeKind], None]


class Settler:
    """The jobs one worker holds, from claim to settle, and the loops that run and settle them.

    Long-lived (its counters and unsent outcomes outlive a run); :meth:`open` makes what belongs to one run's event
    loop (the queue, the events, the slot pool).
    """

    def __init__(
        self,
        owner: str,
        tasks: Tasks,
        observers: list[JobObserver],
        cpu_workers: int = 1,
        shared: list[JobObserver] | None = None,
    ) -> None:
        self._owner = owner
        self._tasks = tasks
        self.cpu_workers = cpu_workers  # the size of the process pool, made by a run whose registry needs one
        self.procs: ProcessPool | None = None  # the process pool of the current run (process tasks)
        self.observers = observers  # the worker's list: appended to by users
        # A lane of a worker of several queues: the worker's own list too (observers of every queue), beside the
        # lane's (observers of this queue only, such as the web app's per-queue histograms).
        self.shared = shared if shared is not None else []
        self.processed = 0  # attempts finished (any outcome)
        self.failed = 0  # attempts that failed (retried or dead-lettered)
        self.service_time: float | None = None  # seconds per job, exponentially weighted
        self.busy = 0  # claimed and not finished: running, or prefetched and waiting for a slot
        self.running: dict[str, Claimed] = {}  # message id -> claimed and not finished (running or prefetched)
        self.held: set[str] = set()  # message ids claimed and not yet settled: never started again here
        self.slot_tasks: dict[str, asyncio.Task[None]] = {}  # message id -> the slot coroutine running it
        self.cancel_asked: set[str] = set()  # job ids whose cancellation was requested while here
        # Plain-function jobs that finished lately, with when: a thread holding the GIL ends its block of the loop
        # by finishing, so the job to blame may be gone from `running` by the time the loop reports the block.
        self.threads_done: deque[tuple[float, Claimed]] = deque(maxlen=16)
        self.outcomes: list[Outcome] = []  # finished, not yet settled (kept across a failed final settle)
        self.pool: SlotPool | None = None
        self._queue: asyncio.Queue[Claimed] = asyncio.Queue()
        self.slot_free = asyncio.Event()  # a slot (or the target) changed: the claimer recomputes what is free
        self._wakeup = asyncio.Event()  # outcomes are waiting to be settled
        #: Called whenever a slot frees, besides ``slot_free``: a worker of several queues wakes every lane waiting
        #: for its share of the slots (:mod:`~aqueue._worker.budget`). None for a worker of one queue.
        self.on_free: Callable[[], None] | None = None

    # -- one run ---------------------------------------------------------------------------------------------

    def open(self, slots: int) -> None:
        """A run begins: a fresh queue, events and ``slots`` slot coroutines, in the running loop; the process pool
        when the registry has process tasks (:class:`ConfigurationError` if a child could not find one by name)."""
        process_tasks = [t for t in (self._tasks.get(n) for n in self._tasks.names) if t and t.executor == "process"]
        check_findable(process_tasks)
        if self._tasks.settings.job_log_level is not None:
            joblogs.install()
        self._queue = asyncio.Queue()
        self.slot_free = asyncio.Event()
        self._wakeup = asyncio.Event()
        self.pool = SlotPool(self._queue, self.run_one)
        self.pool.resize(slots)
        if process_tasks:
            modules = sorted({t.fn.__module__ for t in process_tasks})
            self.procs = ProcessPool(self._owner, self.cpu_workers, modules, self._tasks.settings.job_log_level)
            self.procs.start()

    def resize(self, slots: int) -> None:
        """A new target: slots start at once or leave after their job; the claimer recomputes its free slots."""
        if self.pool is not None:
            self.pool.resize(slots)
        self.slot_free.set()

    def dispatch(self, jobs: list[Claimed]) -> None:
        """Claimed jobs, handed to the slots."""
        for c in jobs:
            self.busy += 1
            self.running[c.msg_id] = c
            self.held.add(c.msg_id)
            self._queue.put_nowait(c)

    def runs(self, task: asyncio.Task[Any] | None) -> bool:
        """``task`` is the slot coroutine of one of these jobs."""
        return task is not None and task in self.slot_tasks.values()

    async def wait_slot_free(self, timeout: float | None = None) -> None:
        """Until a slot frees (or the target changes, or a stop asks), at most ``timeout`` seconds."""
        self.slot_free.clear()
        if timeout is None:
            await self.slot_free.wait()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.slot_free.wait()

    def drop_prefetched(self) -> None:
        """Forget the jobs claimed and never started (shutdown): ``release`` puts them back."""
        while not self._queue.empty():
            self._queue.get_nowait()
            self.busy -= 1

    async def close_slots(self) -> None:
        """Cancel every slot, running or not; their jobs stay unsettled for ``release``."""
        if self.pool is not None:
            await self.pool.close()
        self.pool = None
        if self.procs is not None:
            await self.procs.close()  # after the slots: no job of the pool is left to wait for
        self.procs = None

    async def wait_running(self, timeout: float, forced: Callable[[], str | None]) -> None:
        """Shutdown: wait for the running jobs, up to ``timeout`` seconds, or no longer once ``forced()`` says why
        they are to be cancelled; say so when some are left."""
        began = time.monotonic()
        deadline = began + timeout
        while self.busy > 0 and time.monotonic() < deadline and forced() is None:
            await self.wait_slot_free(deadline - time.monotonic())
        if self.busy:
            log.warning("worker %s: %d jobs still running after %.1fs (%s); cancelling and putting them back",
                        self._owner, self.busy, time.monotonic() - began, forced() or "shutdown timeout")  # fmt: skip

    async def give_back(self, lease: float) -> None:
        """Shutdown, once the slots are closed: settle what finished, then ``release`` puts every message still held
        back in its stream, the interrupted attempt uncounted. Within :data:`SHUTDOWN_GRACE`: what a hung Redis did
        not take returns after the ``lease``."""
        broker = await self._tasks._broker()
        try:
            async with asyncio.timeout(SHUTDOWN_GRACE):
                await retry_unavailable(f"worker {self._owner}: final settle", self.flush, attempts=5)
                put_back = await retry_unavailable(
                    f"worker {self._owner}: release", lambda: broker.release(self._owner), 5
                )
        except (BrokerUnavailable, TimeoutError) as exc:
            why = f"did not answer within {SHUTDOWN_GRACE:.0f}s" if isinstance(exc, TimeoutError) else "unavailable"
            log.error("worker %s: Redis %s at shutdown: %d finished jobs not recorded, its unfinished jobs return "
                      "after the lease (%.1fs)", self._owner, why, len(self.outcomes), lease)  # fmt: skip
        else:
            if put_back:
                log.info("worker %s: put %d unfinished jobs back in the queue", self._owner, put_back)
        self.busy = 0
        self.running.clear()
        self.held.clear()

    # -- running ---------------------------------------------------------------------------------------------

    async def run_one(self, c: Claimed) -> None:
        """Run one job on the calling slot and collect its outcome (the hot path)."""
        started = time.perf_counter()
        try:
            outcome = await self._run_cancellable(c)
        except asyncio.CancelledError:
            # Cancelled from outside (the pool closing at shutdown, or asyncio.run() cancelling every task): the
            # job stays unsettled and release() at shutdown, or its lease, puts it back. It no longer runs, so a
            # shutdown waiting for running jobs must not wait for it.
            self.busy -= 1
            self.slot_free.set()
            if self.on_free is not None:
                self.on_free()
            raise
        except Exception as exc:  # run_job returns every error of the job as an outcome: this is a bug of ours
            log.exception("worker %s: job %s (%s): internal error; dead-lettering it", self._owner, c.job_id, c.task)
            outcome = Outcome("dead", c.stream, c.msg_id, c.job_id, error=f"internal error of the worker: {exc!r}")
        took = time.perf_counter() - started
        # The autoscaler sizes from this: weighted so a change of workload shows within ~20 jobs.
        self.service_time = took if self.service_time is None else 0.95 * self.service_time + 0.05 * took
        self.running.pop(c.msg_id, None)
        if (task := self._tasks.get(c.task)) is not None and task.in_thread:
            self.threads_done.append((time.monotonic(), c))
        self.outcomes.append(outcome)
        self.processed += 1
        if outcome.kind == "cancel":
            log.info("job %s (%s) cancelled while running", c.job_id, c.task)
        elif outcome.kind != "ok":
            self.failed += 1
            log.warning("job %s (%s) attempt %d failed: %s%s", c.job_id, c.task, c.attempt, outcome.error,
                        " (will retry)" if outcome.kind == "retry" else " (dead-lettered)")  # fmt: skip
        self.busy -= 1
        self._wakeup.set()
        self.slot_free.set()
        if self.on_free is not None:
            self.on_free()
        if self.observers or self.shared:
            self._observe(c, took, outcome.kind)

    async def _run_cancellable(self, c: Claimed) -> Outcome:
        """Run a job; a cancellation requested for it (``job.cancel()``) ends it as ``cancel``, nothing else."""
        if self.cancel_asked and c.job_id in self.cancel_asked:
            self.cancel_asked.discard(c.job_id)
            return Outcome("cancel", c.stream, c.msg_id, c.job_id)
        slot = asyncio.current_task()
        assert slot is not None
        self.slot_tasks[c.msg_id] = slot
        try:
            outcome = await run_job(self._tasks, c, self.procs)
        except asyncio.CancelledError:
            if c.job_id not in self.cancel_asked:
                raise  # shutdown or shrinking: not ours to swallow
            self.cancel_asked.discard(c.job_id)
            if slot.uncancel() > 0:
                raise  # a shutdown cancellation arrived as well
            outcome = Outcome("cancel", c.stream, c.msg_id, c.job_id)
        finally:
            self.slot_tasks.pop(c.msg_id, None)
        job = _current.get()  # run_job set the job's context in this slot's task
        if job is None or job._logs is None or job.job_id != c.job_id:
            return outcome  # the job logged nothing
        logs, dropped = joblogs.take(job._logs)
        object.__setattr__(job, "_logs", None)  # lines logged later (a thread a timeout abandoned) are dropped
        return outcome.with_logs(logs, dropped)

    def _observe(self, c: Claimed, took: float, kind: OutcomeKind) -> None:
        # The message id is the (Redis clock) time the job entered its stream: wait = that until it started here.
        entered = int(c.msg_id.split("-", 1)[0]) / 1000
        wait = max(0.0, time.time() - took - entered)
        for fn in (*self.observers, *self.shared):
            try:
                fn(c.task, took, wait, kind)
            except Exception:
                log.exception("worker %s: job observer %r failed", self._owner, fn)

    def cancel(self, job_id: str) -> None:
        """A ``cancel`` command: end the job if it runs here (one not started yet is cancelled before it runs)."""
        messages = [msg_id for msg_id, c in self.running.items() if c.job_id == job_id]
        if not messages:
            return  # not ours
        self.cancel_asked.add(job_id)
        for msg_id in messages:
            slot = self.slot_tasks.get(msg_id)
            if slot is not None:
                log.info("worker %s: cancelling running job %s on request", self._owner, job_id)
                slot.cancel()
            # else: claimed but not started yet; _run_cancellable sees the request before running it

    # -- settling --------------------------------------------------------------------------------------------

    async def flush(self) -> None:
        """Settle every outcome collected, one script call per batch, until none is left."""
        while self.outcomes:
            batch, self.outcomes = self.outcomes, []
            try:
                await (await self._tasks._broker()).settle(self._owner, batch)
            except BaseException:
                self.outcomes[:0] = batch  # keep them: settling is idempotent, so a retry is safe
                raise
            self.held.difference_update(o.msg_id for o in batch)

    async def run(self) -> None:
        """The settle loop (a supervised sub-task): whatever has collected, as soon as the previous call returns."""
        backoff = 0.1
        if self.outcomes:
            self._wakeup.set()  # restarted after a failure: settle what is waiting
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self.flush()
                backoff = 0.1
            except BrokerUnavailable as exc:
                log.log(exc.log_level, "worker %s: settle failed: %s; retrying in %.1fs", self._owner, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_RETRY_DELAY)
                self._wakeup.set()
