"""The worker: one claim loop, a fixed set of long-lived slot coroutines, and batched settling.

Data flows one way: claim (one script call per turn, for exactly as many jobs as there are free slots) → slots
run jobs → outcomes collect in a list → the settler writes whatever has collected in one script call, and again
as soon as the previous call returns. Nothing waits to fill a batch, so low load keeps low latency and high load
gets large batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from aqueue._core import codec
from aqueue._core.aio import cancel_and_wait, retry_unavailable
from aqueue._core.errors import BrokerUnavailable, ConfigurationError
from aqueue._core.tasks import Tasks
from aqueue._core.wire import Claimed, Outcome, OutcomeKind
from aqueue._redis.breaker import MAX_RETRY_DELAY as _MAX_RETRY_DELAY
from aqueue._worker.cron_loop import run_crons
from aqueue._worker.loopwatch import LoopWatch
from aqueue._worker.promoter import PROMOTE_LIMIT, promote_due_jobs
from aqueue._worker.quotas import ReadQuotas
from aqueue._worker.runner import run_job
from aqueue._worker.slots import SlotPool
from aqueue._worker.subtasks import SubTasks
from aqueue.autoscale.scaling import Strategy, concurrency_bounds
from aqueue.autoscale.strategies import get_strategy
from aqueue.autoscale.supervisor import ScalingRecord, Supervisor

__all__ = ["Worker"]

log = logging.getLogger("aqueue._worker.worker")
T = TypeVar("T")

_BLOCK_SECONDS = 5.0  # longest single blocking read; an idle worker wakes at once when work arrives
_TRICKLE_WAIT = 0.002  # a blocking read that waited longer than this found an empty queue: work trickles in
#: A SIGINT/SIGTERM this soon after the one that began the shutdown is the same request delivered twice (a terminal's
#: Ctrl-C or systemd's control-group kill reaches every process, and ``aqueue worker --processes`` forwards it too),
#: not a second one: it does not cancel the running jobs.
_SIGNAL_REPEAT_WINDOW = 1.0
#: Seconds a stopping worker spends at most on its last Redis calls (settling what finished, giving the rest back)
#: after its running jobs ended: a Redis that hangs must not hold the exit; what was not given back returns after
#: the lease.
_SHUTDOWN_GRACE = 5.0
#: The event loop blocked for longer than this is reported, with the job that blocked it when it can be told.
_BLOCK_REPORTED = 1.0

#: Called after every attempt with (task, seconds it ran, seconds it waited in the stream, outcome kind ``ok``,
#: ``retry``, ``dead`` or ``cancel``); it runs on the slot's path, so it must be quick and must not block.
JobObserver = Callable[[str, float, float, OutcomeKind], None]


class Worker:
    """Runs the jobs of one :class:`Tasks` queue in this event loop: ``await Worker(tasks).run()``.

    ``concurrency`` fixes how many jobs run at once (default 100). Give ``min_concurrency`` and/or
    ``max_concurrency`` instead and a supervisor task sizes the worker between them from the queue's real state
    (backlog, oldest wait, arrival and service rates, error rate, event-loop lag), with ``strategy`` one of
    ``"default"``, ``"aggressive"``, ``"conservative"``, ``"predictive"`` or any :class:`~aqueue.Strategy`, deciding
    every ``scale_interval`` seconds, and changing direction at most once per ``cooldown`` seconds.

    ``lease`` (default: the queue's, 30 s) is how long a claimed job may go without a heartbeat before another
    worker takes it back. ``shutdown_timeout`` is how long :meth:`stop` waits for running jobs before cancelling
    them and putting them back in the queue.

    ``prefetch`` (default 0) lets the worker claim up to that many jobs beyond its free slots, so the next batch
    is already in hand while the current one runs. 0 claims only for free slots, which never takes work another
    worker could start now.

    ``name`` is the worker's id (default ``host-pid-random``), shown in records, events and the dashboard. Invalid
    values raise :class:`ConfigurationError`. ``aqueue worker MODULE:TASKS`` runs one from the command line.
    """

    def __init__(
        self,
        tasks: Tasks,
        concurrency: int | None = None,
        *,
        min_concurrency: int | None = None,
        max_concurrency: int | None = None,
        strategy: str | Strategy = "default",
        scale_interval: float = 0.5,
        cooldown: float = 5.0,
        lease: float | None = None,
        shutdown_timeout: float = 10.0,
        prefetch: int = 0,
        name: str | None = None,
    ) -> None:
        #: The bounds the concurrency stays within (equal for a fixed-concurrency worker).
        self.min_concurrency, self.max_concurrency, self._target = concurrency_bounds(
            concurrency, min_concurrency, max_concurrency
        )
        if lease is not None and lease <= 0:
            raise ConfigurationError(f"lease must be > 0 seconds, got {lease}")
        if shutdown_timeout < 0:
            raise ConfigurationError("shutdown_timeout must be >= 0")
        if prefetch < 0:
            raise ConfigurationError(f"prefetch must be >= 0, got {prefetch}")
        if scale_interval <= 0 or cooldown < 0:
            raise ConfigurationError("scale_interval must be > 0 and cooldown >= 0")
        self.strategy = get_strategy(strategy)  #: the :class:`Strategy` (a built-in name is resolved to one)
        self.scale_interval = scale_interval  #: seconds between two autoscaling decisions
        self.cooldown = cooldown  #: seconds the autoscaler waits before changing direction
        self.prefetch = prefetch  #: jobs claimed beyond the free slots
        self.tasks = tasks  #: the registry whose queue this worker runs
        #: The worker's id: ``name``, or ``host-pid-random``.
        self.id = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.lease = lease if lease is not None else tasks.settings.lease  #: seconds a claim lives without heartbeat
        self.shutdown_timeout = shutdown_timeout  #: seconds :meth:`stop` lets running jobs finish
        self.processed = 0  #: attempts finished by this worker (any outcome)
        self.failed = 0  #: attempts that failed (retried or dead-lettered)
        self.scale_ups = 0  #: applied increases of the target
        self.scale_downs = 0  #: applied decreases of the target
        #: The latest applied scaling changes, oldest first.
        self.scaling_history: deque[ScalingRecord] = deque(maxlen=50)
        self.supervisor: Supervisor | None = None  #: the autoscaling loop while an autoscaling worker runs
        #: Per-attempt observers (e.g. the web app's histograms): each is called after every attempt with the task
        #: name, the seconds it ran, the seconds it waited in the stream, and how it ended (``ok``, ``retry``,
        #: ``dead`` or ``cancel``). They run on the slot's path: quick, never blocking.
        self.observers: list[JobObserver] = []
        self._override: tuple[int, float] | None = None  # manual target, monotonic expiry
        self._service_time: float | None = None
        self._busy = 0
        self._running: dict[str, Claimed] = {}  # message id -> claimed and not finished (running or prefetched)
        self._held: set[str] = set()  # message ids claimed and not yet settled: never started again here
        # Plain-function jobs that finished lately, with when: a thread holding the GIL ends its block of the loop
        # by finishing, so the job to blame may be gone from _running by the time the loop reports the block.
        self._threads_done: deque[tuple[float, Claimed]] = deque(maxlen=16)
        self._outcomes: list[Outcome] = []
        self._quotas = ReadQuotas([p.weight for p in tasks.settings.priorities], tasks.settings.strict_priority)
        self._cancel_asked: set[str] = set()  # job ids whose cancellation was requested while here
        self._forced_by = "second stop request"
        self._slot_tasks: dict[str, asyncio.Task[None]] = {}  # message id -> the slot coroutine running it
        self._subtasks: SubTasks | None = None
        self._heartbeat_now: asyncio.Event | None = None
        self._control_from = "0-0"  # the last control command read
        self.loop_blocks = 0  #: times the event loop was found blocked for more than a second while this worker ran
        self.paused = False  #: True while the queue is paused (as this worker last saw it)
        self._started_at = 0.0
        self._stop_pending = False  # a stop requested before run() began: that run returns after start-up
        self._signalled_at: float | None = None  # monotonic time of the signal that began this run's shutdown
        self._reset_loop_state()

    def _reset_loop_state(self) -> None:
        self._queue: asyncio.Queue[Claimed] | None = None
        self._settle_wakeup: asyncio.Event | None = None
        self._slot_free: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._force: asyncio.Event | None = None
        self._done: asyncio.Event | None = None
        self._resumed: asyncio.Event | None = None
        self._claim_task: asyncio.Task[None] | None = None
        self._pool: SlotPool | None = None
        self._blocked = False

    def _runs(self, task: asyncio.Task[Any] | None) -> bool:
        """``task`` is the slot coroutine of one of this worker's jobs."""
        return task is not None and task in self._slot_tasks.values()

    def __repr__(self) -> str:
        return f"Worker(id={self.id!r}, queue={self.tasks.queue!r}, concurrency={self._target})"

    @property
    def concurrency(self) -> int:
        """How many jobs this worker runs at once: its current target, which the autoscaler and :meth:`scale_to`
        change within ``min_concurrency``..``max_concurrency``."""
        return self._target

    @property
    def busy(self) -> int:
        """Jobs claimed and not yet finished: running, or prefetched and waiting for a slot."""
        return self._busy

    @property
    def running_jobs(self) -> int:
        """Jobs running on a slot now (:attr:`busy` without the prefetched ones)."""
        return self._pool.running if self._pool is not None else 0

    @property
    def is_running(self) -> bool:
        """True from :meth:`run` until a stop is requested (False before, and while shutting down)."""
        return self._stopping is not None and not self._stopping.is_set()

    @property
    def autoscaling(self) -> bool:
        """True when a supervisor sizes this worker (``min_concurrency < max_concurrency``)."""
        return self.min_concurrency < self.max_concurrency

    @property
    def service_time(self) -> float | None:
        """Mean seconds a job takes here (exponentially weighted, so recent jobs count most), None until one has
        finished."""
        return self._service_time

    @property
    def failing(self) -> dict[str, str]:
        """Sub-tasks of this worker (``claim``, ``settler``, ``heartbeat``, ``scheduler``, ``control``, ``cron``,
        ``supervisor``, ``loop-watch``) that keep failing, with their last error: each is restarted with a backoff,
        and is listed here after 3 failures in a row until it runs 10 s without one. ``{}`` when all is well."""
        return self._subtasks.failing if self._subtasks is not None else {}

    @property
    def registry_ttl_ms(self) -> int:
        """Internal: milliseconds this worker's registry entry (what :meth:`Tasks.info` lists) lives without a
        heartbeat."""
        return round(max(self.lease, 3 * self._heartbeat_interval) * 1000)

    @property
    def scale_override(self) -> int | None:
        """The manual target set by :meth:`scale_to` while it holds (until :meth:`release_scale` or its ``ttl``),
        else None."""
        if self._override is not None and time.monotonic() >= self._override[1]:
            self._override = None
        return None if self._override is None else self._override[0]

    async def scale_to(self, concurrency: int, ttl: float | None = None) -> None:
        """Run at ``concurrency`` (clamped to the bounds) until :meth:`release_scale`, or for ``ttl`` seconds.

        Overrides the autoscaler, which makes no decision meanwhile (``POST /scale`` of the web app calls this).
        On a fixed-concurrency worker the bounds are equal, so this changes nothing.
        """
        target = max(self.min_concurrency, min(self.max_concurrency, concurrency))
        self._override = (target, time.monotonic() + ttl if ttl is not None else float("inf"))
        if target != self._target:
            await self.apply_scale(target, f"manual override to {concurrency}", "manual", None, "{}")

    def release_scale(self) -> None:
        """End a :meth:`scale_to` override: the autoscaler decides again from its next tick."""
        self._override = None

    async def apply_scale(
        self, target: int, reason: str, strategy: str, confidence: float | None, inputs: str
    ) -> ScalingRecord:
        """Internal (the autoscaler's and :meth:`scale_to`'s): set the concurrency target to ``target`` now, without
        clamping, record the change in :attr:`scaling_history` and write a ``scaling`` event.

        New slots start at once; surplus ones leave after their current job, never cancelling it.
        """
        old, self._target = self._target, target
        record = ScalingRecord(time.time(), old, target, reason, strategy, confidence)
        self.scaling_history.append(record)
        if target > old:
            self.scale_ups += 1
        else:
            self.scale_downs += 1
        if self._pool is not None:
            self._pool.resize(target)
        if self._slot_free is not None:
            self._slot_free.set()  # the claim loop recomputes its free slots
        log.info("worker %s: concurrency %d -> %d (%s: %s)", self.id, old, target, strategy, reason)
        fields: dict[str, str | int | float] = {
            "type": "scaling", "worker": self.id, "from": old, "to": target, "reason": reason,
            "strategy": strategy, "inputs": inputs,
        }  # fmt: skip
        if confidence is not None:
            fields["confidence"] = round(confidence, 3)
        try:
            await (await self.tasks._broker()).record_scaling(fields)
        except BrokerUnavailable as exc:
            log.log(exc.log_level, "worker %s: scaling event not written: %s", self.id, exc)
        return record

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def run(self, burst: bool = False, *, handle_signals: bool = True) -> None:
        """Run until :meth:`stop` or SIGINT/SIGTERM; with ``burst``, until nothing is queued, due or running.

        A second SIGINT/SIGTERM during shutdown stops waiting for running jobs: they are cancelled at once and put
        back in the queue. One that arrives within a second of the first counts as the same request (a signal sent
        to a whole process group or cgroup reaches each child of ``aqueue worker --processes`` twice: directly and
        forwarded by the parent). ``handle_signals=False`` leaves SIGINT/SIGTERM to the host application (an aiohttp
        app started with ``web.run_app``, say), which then stops the worker with :meth:`stop` on its way down.

        A stop requested before this run began (:meth:`stop` right after ``asyncio.create_task(worker.run())``)
        makes it return once connected, without claiming a job. A worker whose run has returned may run again.
        """
        if self._done is not None and not self._done.is_set():
            raise RuntimeError("this worker is already running")
        stop_pending, self._stop_pending = self._stop_pending, False
        self._signalled_at = None
        self._queue = asyncio.Queue()
        self._settle_wakeup = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._stopping = asyncio.Event()
        self._force = asyncio.Event()
        self._done = asyncio.Event()
        self._resumed = asyncio.Event()
        if stop_pending:
            self._stopping.set()
        self._started_at = time.time()
        loop = asyncio.get_running_loop()
        # Before connecting, so a signal during start-up is not fatal.
        signals = self._install_signals(loop) if handle_signals else []
        self.tasks._attach(self)  # tasks.close() stops this worker before closing its connections
        try:
            broker = await self.tasks._broker()
            await broker.ensure_groups()
            if not self._stopping.is_set():
                await self._serve(burst)
            else:
                log.info("worker %s: stop requested before or during start-up; not serving", self.id)
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            self.tasks._detach(self)
            self._done.set()

    async def _serve(self, burst: bool) -> None:
        assert self._stopping is not None and self._queue is not None and self._force is not None
        broker = await self.tasks._broker()
        self._pool = SlotPool(self._queue, self._run_one)
        self._pool.resize(self._target)
        self._heartbeat_now = asyncio.Event()
        subtasks = self._subtasks = SubTasks(self.id, broker.ensure_groups, self._heartbeat_now.set)
        settler = subtasks.start("settler", self._settler)
        helpers: list[asyncio.Task[None]] = []
        try:
            await self._heartbeat_once()
            self._control_from = await broker.last_control_id()  # before claiming: no cancel of ours is missed
            watch = LoopWatch(_BLOCK_REPORTED, run_job.__code__, "c", self._on_loop_blocked)
            helpers += [
                subtasks.start("heartbeat", self._heartbeats),
                subtasks.start("scheduler", lambda: promote_due_jobs(broker, self.id)),
                subtasks.start("control", self._control),
                subtasks.start("loop-watch", watch.run),
            ]
            if self.tasks.crons:
                helpers.append(subtasks.start("cron", lambda: run_crons(self.tasks)))
            if self.autoscaling:
                supervisor = self.supervisor = Supervisor(self, self.strategy, self.scale_interval, self.cooldown)
                helpers.append(subtasks.start("supervisor", supervisor.run))
            log.info("worker %s up: queue=%s concurrency=%d [%d..%d] lease=%.1fs loop=%s", self.id, self.tasks.queue,
                     self._target, self.min_concurrency, self.max_concurrency, self.lease,
                     type(asyncio.get_running_loop()).__module__)  # fmt: skip
            self._claim_task = subtasks.start("claim", lambda: self._claim_loop(burst))
            await self._claim_task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                # run() itself was cancelled: a forced stop. Running jobs are cancelled and put back at once
                # (waiting shutdown_timeout for them would hold up whoever cancelled), then the cancellation
                # goes through.
                self._forced_by = "run() cancelled"
                self._force.set()
                raise
        finally:
            self._stopping.set()
            if self._claim_task is not None:
                await cancel_and_wait(self._claim_task)
            await self._shutdown(self._pool, settler, helpers)
            log.info("worker %s down: processed=%d failed=%d", self.id, self.processed, self.failed)

    async def stop(self) -> None:
        """Stop claiming, let running jobs finish (up to ``shutdown_timeout``), and return when shut down.

        Called right after ``asyncio.create_task(worker.run())``, before that task has begun, it stops that run as
        soon as it has connected and returns once it has. Called on a worker that is not running and has no run
        about to begin, it returns at once (a worker that never ran then returns from its next :meth:`run` right
        after start-up).
        """
        done = self._done
        if done is None or done.is_set():
            # Not running: maybe a run() task was just created and has not had its first step yet. Its first step
            # comes before this coroutine's next one, so one yield lets it begin.
            self.request_stop()  # before a first run: kept for it
            await asyncio.sleep(0)
            if self._done is done or self._done is None:
                return  # no run began: nothing to wait for
            if self._stopping is not None and not self._stopping.is_set():
                self.request_stop()  # a new run of a worker that ran before: it did not see the request above
        elif self._stopping is not None and not self._stopping.is_set():
            self.request_stop()  # already stopping (a signal, request_stop()): waiting is not a second request
        assert self._done is not None
        await self._done.wait()

    def request_stop(self, *, cancel_running: bool = False) -> None:
        """Ask the worker to stop, without waiting (safe from a signal handler); a second call forces it.

        A forced stop (a second call, or ``cancel_running``) cancels the running jobs at once instead of letting
        them finish, and puts them back in the queue. Before the worker's first run has begun, the request is kept:
        that run returns right after start-up. On a worker whose run has returned it does nothing.
        """
        if self._stopping is None:
            self._stop_pending = True  # run() not begun yet (say, a task just created): it returns after start-up
            return
        if self._done is not None and self._done.is_set():
            return  # already shut down: nothing to stop
        if self._stopping.is_set() or cancel_running:
            if self._force is not None and not self._force.is_set():
                self._forced_by = "stop with cancel_running" if cancel_running else "second stop request"
                log.warning("worker %s: %s: cancelling running jobs now", self.id, self._forced_by)
                self._force.set()
                if self._slot_free is not None:
                    self._slot_free.set()
            if self._stopping.is_set():
                return
        self._stopping.set()
        if self._slot_free is not None:
            self._slot_free.set()  # wakes a claim loop waiting for a free slot
        if self._resumed is not None:
            self._resumed.set()  # wakes a claim loop waiting for the queue to resume
        if self._blocked and self._claim_task is not None:
            # A blocking read can be abandoned safely: whatever it delivered stays pending and release() at
            # shutdown puts it back.
            self._claim_task.cancel()

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        installed: list[int] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
                installed.append(sig)
            except (RuntimeError, ValueError, NotImplementedError):
                pass  # not the main thread, or no signal support: stop() still works
        return installed

    def _on_signal(self, sig: int) -> None:
        """SIGINT/SIGTERM: a stop request; a repeat within a second of the first is the same one."""
        assert self._stopping is not None
        name = signal.Signals(sig).name
        now = time.monotonic()
        if self._stopping.is_set():
            if self._signalled_at is not None and now - self._signalled_at < _SIGNAL_REPEAT_WINDOW:
                log.info("worker %s: %s again within %.1fs of the first: the same stop request", self.id, name,
                         _SIGNAL_REPEAT_WINDOW)  # fmt: skip
                return
        else:
            self._signalled_at = now
            log.info("worker %s: %s: stopping; running jobs get up to %.1fs (signal again after %.0fs to cancel "
                     "them now)", self.id, name, self.shutdown_timeout, _SIGNAL_REPEAT_WINDOW)  # fmt: skip
        self.request_stop()

    async def _shutdown(self, pool: SlotPool, settler: asyncio.Task[None], helpers: list[asyncio.Task[None]]) -> None:
        assert self._slot_free is not None and self._queue is not None
        while not self._queue.empty():  # prefetched, never started: release() below puts them back
            self._queue.get_nowait()
            self._busy -= 1
        began = time.monotonic()
        deadline = began + self.shutdown_timeout
        while self._busy > 0 and time.monotonic() < deadline and not (self._force and self._force.is_set()):
            self._slot_free.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(asyncio.get_running_loop().time() + deadline - time.monotonic()):
                    await self._slot_free.wait()
        if self._busy:
            why = self._forced_by if self._force is not None and self._force.is_set() else "shutdown timeout"
            log.warning("worker %s: %d jobs still running after %.1fs (%s); cancelling and putting them back",
                        self.id, self._busy, time.monotonic() - began, why)  # fmt: skip
        await cancel_and_wait(*helpers)
        await pool.close()
        await cancel_and_wait(settler)
        broker = await self.tasks._broker()
        try:
            async with asyncio.timeout(_SHUTDOWN_GRACE):
                await retry_unavailable(f"worker {self.id}: final settle", self._flush, attempts=5)
                put_back = await retry_unavailable(f"worker {self.id}: release", lambda: broker.release(self.id), 5)
        except (BrokerUnavailable, TimeoutError) as exc:
            why = f"did not answer within {_SHUTDOWN_GRACE:.0f}s" if isinstance(exc, TimeoutError) else "unavailable"
            log.error("worker %s: Redis %s at shutdown: %d finished jobs not recorded, its unfinished jobs return "
                      "after the lease (%.1fs)", self.id, why, len(self._outcomes), self.lease)  # fmt: skip
        else:
            if put_back:
                log.info("worker %s: put %d unfinished jobs back in the queue", self.id, put_back)
        self._busy = 0
        self._running.clear()
        self._held.clear()

    # -- claiming --------------------------------------------------------------------------------------------

    async def _claim_loop(self, burst: bool) -> None:
        assert self._stopping is not None and self._slot_free is not None
        broker = await self.tasks._broker()
        cursors = ["0-0"] * len(self.tasks.settings.priorities)
        lease_ms = round(self.lease * 1000)
        reclaim_every = min(self.lease / 4, 1.0)
        next_reclaim = 0.0
        backoff = 0.1
        limits = self.tasks._rate_limits_json()
        trickle = False
        while not self._stopping.is_set():
            free = self._target + self.prefetch - self._busy
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            try:
                now = time.monotonic()
                # At low load the queue was empty when the last blocking read began and that read waited: block
                # again at once instead of first claiming (an empty claim is a round trip per job at low rates).
                # When a blocking read returns at once, work is flowing: claim in batches again.
                if not (trickle and now < next_reclaim):
                    reclaim = now >= next_reclaim
                    if reclaim:
                        next_reclaim = now + reclaim_every
                    turn = await broker.claim(
                        self.id, self._quotas.split(free), cursors, lease_ms if reclaim else 0, limits
                    )
                    cursors = turn.cursors
                    if turn.paused:
                        if burst and self._busy == 0:
                            return
                        await self._wait_resumed()
                        continue
                    if self.paused:
                        self.paused = False
                        log.info("worker %s: queue %s resumed", self.id, self.tasks.queue)
                    if turn.own:
                        await self._own_overdue(turn.own, limits)
                    if turn.jobs:
                        trickle = False
                        self._dispatch(turn.jobs)
                        continue
                    if turn.consumed:  # only stale entries (e.g. of cancelled jobs): runnable ones may follow
                        continue
                    if burst:
                        if await self._burst_done():
                            return
                        continue
                self._blocked = True
                began = time.monotonic()
                try:
                    delivered = await broker.wait_for_work(self.id, min(_BLOCK_SECONDS, reclaim_every))
                finally:
                    self._blocked = False
                trickle = bool(delivered) and time.monotonic() - began > _TRICKLE_WAIT
                if delivered:
                    started, paused = await broker.start(self.id, delivered, limits)
                    self._dispatch(started)
                    if paused:
                        trickle = False
                        await self._wait_resumed()
                backoff = 0.1
            except BrokerUnavailable as exc:
                log.log(exc.log_level, "worker %s: %s; retrying in %.1fs", self.id, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_RETRY_DELAY)
            # Anything else (streams deleted under the worker: NOGROUP) ends this run of the loop; its supervisor
            # repairs what it can and starts it again.

    async def _own_overdue(self, own: list[tuple[int, str, str]], limits: str) -> None:
        """Messages of this consumer that went longer than the lease without a heartbeat: the claim renewed them.

        One still held here (running, or finished and not yet settled) is not started again: the heartbeat was late
        (a Redis stall, a blocked event loop), the worker was not gone. One not held here was left by an earlier run
        under the same name (``Worker(name=...)``): it is taken back like a dead worker's.
        """
        orphans = [item for item in own if item[1] not in self._held]
        renewed = len(own) - len(orphans)
        if renewed:
            log.warning("worker %s: %d of its jobs went longer than the lease (%.1fs) without a heartbeat (Redis "
                        "stalled or the event loop was blocked): renewed, not started again", self.id, renewed,
                        self.lease)  # fmt: skip
        if orphans:
            log.warning("worker %s: taking back %d jobs an earlier run under the same name left running", self.id,
                        len(orphans))  # fmt: skip
            started, _ = await (await self.tasks._broker()).start(self.id, orphans, limits, taken=True)
            self._dispatch(started)

    async def _wait_resumed(self) -> None:
        """The queue is paused: wait for a ``resume`` command (or re-check after a second)."""
        assert self._resumed is not None
        if not self.paused:
            self.paused = True
            log.info("worker %s: queue %s is paused; running jobs finish, no new ones start", self.id,
                     self.tasks.queue)  # fmt: skip
        self._resumed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await self._resumed.wait()

    async def _control(self) -> None:
        """Follow the control stream: cancel running jobs of this worker, wake up on ``resume``."""
        broker = await self.tasks._broker()
        backoff = 0.1
        while True:
            try:
                commands = await broker.read_control(self._control_from, _BLOCK_SECONDS)
                backoff = 0.1
            except BrokerUnavailable as exc:
                log.log(exc.log_level, "worker %s: control stream: %s; retrying in %.1fs", self.id, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_RETRY_DELAY)
                continue
            for command_id, fields in commands:
                self._control_from = command_id
                cmd = fields.get("cmd")
                if cmd == "cancel":
                    self._cancel_running(fields.get("job", ""))
                elif cmd == "resume" and self._resumed is not None:
                    self._resumed.set()

    def _cancel_running(self, job_id: str) -> None:
        messages = [msg_id for msg_id, c in self._running.items() if c.job_id == job_id]
        if not messages:
            return  # not ours
        self._cancel_asked.add(job_id)
        for msg_id in messages:
            slot = self._slot_tasks.get(msg_id)
            if slot is not None:
                log.info("worker %s: cancelling running job %s on request", self.id, job_id)
                slot.cancel()
            # else: claimed but not started yet; _run_one sees the request before running it

    async def _burst_done(self) -> bool:
        """In burst mode with nothing claimable: wait for running jobs, then check nothing became due."""
        assert self._slot_free is not None
        if self._busy > 0:
            self._slot_free.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    await self._slot_free.wait()
            return False
        await self._flush()
        state = await (await self.tasks._broker()).promote(PROMOTE_LIMIT)
        return state.promoted == 0

    def _dispatch(self, jobs: list[Claimed]) -> None:
        assert self._queue is not None
        for c in jobs:
            self._busy += 1
            self._running[c.msg_id] = c
            self._held.add(c.msg_id)
            self._queue.put_nowait(c)

    # -- running and settling --------------------------------------------------------------------------------

    async def _run_one(self, c: Claimed) -> None:
        assert self._settle_wakeup is not None and self._slot_free is not None
        started = time.perf_counter()
        try:
            outcome = await self._run_cancellable(c)
        except asyncio.CancelledError:
            # Cancelled from outside (the pool closing at shutdown, or asyncio.run() cancelling every task): the
            # job stays unsettled and release() at shutdown, or its lease, puts it back. It no longer runs, so a
            # shutdown waiting for running jobs must not wait for it.
            self._busy -= 1
            self._slot_free.set()
            raise
        except Exception as exc:  # run_job returns every error of the job as an outcome: this is a bug of ours
            log.exception("worker %s: job %s (%s): internal error; dead-lettering it", self.id, c.job_id, c.task)
            outcome = Outcome("dead", c.stream, c.msg_id, c.job_id, error=f"internal error of the worker: {exc!r}")
        took = time.perf_counter() - started
        # The autoscaler sizes from this: weighted so a change of workload shows within ~20 jobs.
        self._service_time = took if self._service_time is None else 0.95 * self._service_time + 0.05 * took
        self._running.pop(c.msg_id, None)
        if (task := self.tasks.get(c.task)) is not None and not task.is_async:
            self._threads_done.append((time.monotonic(), c))
        self._outcomes.append(outcome)
        self.processed += 1
        if outcome.kind == "cancel":
            log.info("job %s (%s) cancelled while running", c.job_id, c.task)
        elif outcome.kind != "ok":
            self.failed += 1
            log.warning("job %s (%s) attempt %d failed: %s%s", c.job_id, c.task, c.attempt, outcome.error,
                        " (will retry)" if outcome.kind == "retry" else " (dead-lettered)")  # fmt: skip
        self._busy -= 1
        self._settle_wakeup.set()
        self._slot_free.set()
        if self.observers:
            self._observe(c, took, outcome.kind)

    async def _run_cancellable(self, c: Claimed) -> Outcome:
        """Run a job; a cancellation requested for it (``job.cancel()``) ends it as ``cancel``, nothing else."""
        if self._cancel_asked and c.job_id in self._cancel_asked:
            self._cancel_asked.discard(c.job_id)
            return Outcome("cancel", c.stream, c.msg_id, c.job_id)
        slot = asyncio.current_task()
        assert slot is not None
        self._slot_tasks[c.msg_id] = slot
        try:
            return await run_job(self.tasks, c)
        except asyncio.CancelledError:
            if c.job_id not in self._cancel_asked:
                raise  # shutdown or shrinking: not ours to swallow
            self._cancel_asked.discard(c.job_id)
            if slot.uncancel() > 0:
                raise  # a shutdown cancellation arrived as well
            return Outcome("cancel", c.stream, c.msg_id, c.job_id)
        finally:
            self._slot_tasks.pop(c.msg_id, None)

    def _observe(self, c: Claimed, took: float, kind: OutcomeKind) -> None:
        # The message id is the (Redis clock) time the job entered its stream: wait = that until it started here.
        entered = int(c.msg_id.split("-", 1)[0]) / 1000
        wait = max(0.0, time.time() - took - entered)
        for fn in self.observers:
            try:
                fn(c.task, took, wait, kind)
            except Exception:
                log.exception("worker %s: job observer %r failed", self.id, fn)

    async def _flush(self) -> None:
        while self._outcomes:
            batch, self._outcomes = self._outcomes, []
            try:
                await (await self.tasks._broker()).settle(self.id, batch)
            except BaseException:
                self._outcomes[:0] = batch  # keep them: settling is idempotent, so a retry is safe
                raise
            self._held.difference_update(o.msg_id for o in batch)

    async def _settler(self) -> None:
        assert self._settle_wakeup is not None
        backoff = 0.1
        if self._outcomes:
            self._settle_wakeup.set()  # restarted after a failure: settle what is waiting
        while True:
            await self._settle_wakeup.wait()
            self._settle_wakeup.clear()
            try:
                await self._flush()
                backoff = 0.1
            except BrokerUnavailable as exc:
                log.log(exc.log_level, "worker %s: settle failed: %s; retrying in %.1fs", self.id, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_RETRY_DELAY)
                self._settle_wakeup.set()

    # -- background duties -----------------------------------------------------------------------------------

    def _info(self) -> str:
        return codec.encode(
            {
                "id": self.id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "queue": self.tasks.queue,
                "concurrency": self._target,
                "min_concurrency": self.min_concurrency,
                "max_concurrency": self.max_concurrency,
                "strategy": self.strategy.name if self.autoscaling else "fixed",
                "busy": self._busy,
                "processed": self.processed,
                "failed": self.failed,
                "started_at": self._started_at,
                "heartbeat_at": time.time(),
                "failing": self.failing,
            }
        )

    async def _heartbeat_once(self) -> None:
        broker = await self.tasks._broker()
        running = [(c.stream, c.msg_id) for c in self._running.values()]
        lost = await broker.heartbeat(self.id, running, self._info(), self.registry_ttl_ms)
        for msg_id in lost:
            c = self._running.get(msg_id)
            if c is not None:
                log.warning("job %s (%s) is no longer this worker's while running here: another worker took it back "
                            "(this one went longer than the lease without a heartbeat), or Redis lost it", c.job_id,
                            c.task)  # fmt: skip

    def _on_loop_blocked(self, seconds: float, culprit: object | None) -> None:
        """The event loop was blocked for ``seconds``; ``culprit`` is the job that was running when it was seen."""
        self.loop_blocks += 1
        if isinstance(culprit, Claimed):
            who = f"by job {culprit.job_id} ({culprit.task}, attempt {culprit.attempt})"
        else:
            running = list(self._running.values())
            since = time.monotonic() - seconds - 1.0  # the block ended moments ago: what finished in it ran in it
            threads = [c for done, c in reversed(self._threads_done) if done >= since]
            threads += [c for c in running if (t := self.tasks.get(c.task)) is not None and not t.is_async]
            shown = threads or running
            who = "; running: " + (", ".join(f"{c.job_id} ({c.task})" for c in shown[:10]) or "no job")
            if threads:
                who += " (plain functions in threads: one holding the GIL blocks the loop too)"
        log.warning("worker %s: the event loop was blocked for %.1fs %s. A task that blocks it (time.sleep, CPU work "
                    "or blocking I/O in an async def, a thread holding the GIL) stops every job, the heartbeat and "
                    "the claims of this worker; a block longer than the lease (%.1fs) lets other workers take its "
                    "jobs back", self.id, seconds, who, self.lease)  # fmt: skip
        if seconds >= self._heartbeat_interval / 2 and self._heartbeat_now is not None:
            self._heartbeat_now.set()  # renew the running jobs now rather than at the next interval

    @property
    def _heartbeat_interval(self) -> float:
        return min(self.lease / 3, 10.0)

    async def _heartbeats(self) -> None:
        assert self._heartbeat_now is not None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._heartbeat_interval):
                    await self._heartbeat_now.wait()
            self._heartbeat_now.clear()
            try:
                await self._heartbeat_once()
            except BrokerUnavailable as exc:
                log.log(exc.log_level, "worker %s: heartbeat failed: %s", self.id, exc)
