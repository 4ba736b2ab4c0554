"""The public :class:`Worker`: its settings and figures, its scaling API, and its lifecycle.

A run goes ``STARTING → RUNNING → DRAINING → STOPPED`` (:mod:`~aqueue._worker.lifecycle`). Its long-lived loops,
named in :meth:`Worker._loops`, run under :class:`SubTasks`: the claimer hands jobs to the settler, whose slots run
them and whose settle loop records them in batches; beside them the heartbeat, the scheduler, the control reader,
the loop watch, and when configured the cron loop and the autoscaling supervisor.

A worker of several queues (``Worker([orders, emails])``) runs none of these itself: it builds one single-queue
``Worker`` per registry (a lane, :meth:`Worker.lane`) sharing one :class:`~aqueue._worker.budget.Budget` of slots,
runs them with :class:`~aqueue._worker.lanes.Lanes`, and reports their figures summed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aqueue._core.tasks import Tasks
from aqueue._core.wire import QueueSample
from aqueue._redis.broker import Broker
from aqueue._worker.budget import Budget
from aqueue._worker.claimer import Claimer, check_max_jobs
from aqueue._worker.control import Control
from aqueue._worker.cron_loop import run_crons
from aqueue._worker.heartbeat import Heartbeat
from aqueue._worker.lanes import Lanes, check_weights, registries_of
from aqueue._worker.lifecycle import Lifecycle, StopSignals, WorkerState
from aqueue._worker.lifespan import Lifespan
from aqueue._worker.loopwatch import LoopWatch
from aqueue._worker.options import WorkerOptions
from aqueue._worker.promoter import promote_due_jobs
from aqueue._worker.runner import run_job
from aqueue._worker.scaling_api import Scaling
from aqueue._worker.settings_api import Settings
from aqueue._worker.settler import JobObserver, Settler
from aqueue._worker.sizing import Sizing
from aqueue._worker.subtasks import SubTasks
from aqueue.autoscale.scaling import Strategy, concurrency_bounds
from aqueue.autoscale.supervisor import Supervisor

__all__ = ["JobObserver", "Worker"]

log = logging.getLogger("aqueue._worker.worker")

#: The event loop blocked for longer than this is reported, with the job that blocked it when it can be told.
_BLOCK_REPORTED = 1.0


class Worker(Settings, Scaling):
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

    ``name`` is the worker's id (default ``host-pid-random``), shown in records, events and the dashboard.
    ``cpu_workers`` (default: the CPU count) is the size of the process pool that runs the registry's
    ``executor="process"`` tasks (started only when it has one). ``metadata`` (at most 32 ``str`` keys of letters,
    digits and ``_ . : / -`` to ``str`` values of at most 256 characters: ``{"version": "1.4.2"}``) is carried in
    the worker's registry entry and shown by :meth:`Tasks.info`, ``/status`` and the dashboard. Invalid values
    raise :class:`ConfigurationError`.
    ``aqueue worker MODULE:TASKS`` runs one from the command line. Its settings and figures are read-only
    properties; :attr:`observers` is the one list to append to.

    Given several registries (``Worker([orders, emails], concurrency=100, weights={"orders": 3})``), one worker runs
    all their queues in this loop: one lane per queue (a single-queue ``Worker``, :meth:`lane`, with this worker's
    id and its own claim loop, pause, rate limits, cron, leases and autoscaling), all sharing one budget of
    ``concurrency`` slots. Queue names must be distinct; ``weights`` maps queue names to integers >= 1 (default 1).
    While several queues have work each gets at least its weighted share of the slots (3:1 → 75 and 25); a queue
    with nothing to do leaves its share to the others, and takes a job that arrives at once. With
    ``min_concurrency``/``max_concurrency`` each lane autoscales on its own queue's state within those bounds, and
    the budget caps the total at ``max_concurrency``. ``lease`` and the other settings apply to every lane (each
    lane's default lease is its own queue's). The figures (:attr:`busy`, :attr:`processed`, ...) are the lanes'
    sums, :attr:`failing` names ``"<queue>:<sub-task>"``, :attr:`paused` is True only when every queue is paused,
    and :meth:`scale_to` sets the shared budget (and each lane's target) instead of one queue's. ``max_jobs`` is
    for a worker of one queue. Closing any of the registries stops the whole worker.
    """

    def __init__(
        self,
        tasks: Tasks | Sequence[Tasks],
        concurrency: int | None = None,
        *,
        weights: Mapping[str, int] | None = None,
        min_concurrency: int | None = None,
        max_concurrency: int | None = None,
        strategy: str | Strategy = "default",
        scale_interval: float = 0.5,
        cooldown: float = 5.0,
        lease: float | None = None,
        shutdown_timeout: float = 10.0,
        prefetch: int = 0,
        name: str | None = None,
        cpu_workers: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        registries = registries_of(tasks)
        bounds = concurrency_bounds(concurrency, min_concurrency, max_concurrency)
        resolve = functools.partial(
            WorkerOptions.resolve, strategy=strategy, scale_interval=scale_interval, cooldown=cooldown, lease=lease,
            shutdown_timeout=shutdown_timeout, prefetch=prefetch, cpu_workers=cpu_workers, metadata=metadata,
        )  # fmt: skip
        self._setup(resolve(registries[0], name=name), registries, check_weights(registries, weights), bounds, [])
        if len(registries) == 1:
            self._build(None)
            return
        # Several queues: one lane each, sharing one budget; this worker runs them (its own parts are theirs).
        budget = self._budget = Budget(bounds[1], list(self._weights.values()))
        self._lanes = tuple(
            Worker._lane(resolve(t, name=self._opts.id), t, self._weights[t.queue], bounds, self._observers, budget, i)
            for i, t in enumerate(registries)
        )
        self._group = Lanes(self._opts.id, self._lanes, shutdown_timeout)
        self._life = self._group.life

    def _setup(self, opts: WorkerOptions, registries: tuple[Tasks, ...], weights: dict[str, int],
               bounds: tuple[int, int, int], observers: list[JobObserver]) -> None:  # fmt: skip
        """What every worker has, whether it runs one queue (a lane too) or several."""
        self._opts = opts
        self._registries = registries
        self._weights = weights
        self._bounds = bounds
        self._tasks = registries[0]
        self._observers = observers
        self._shared: list[JobObserver] = []  # a lane: the observers of the worker of several queues it belongs to
        self._supervisor: Supervisor | None = None
        self._budget: Budget | None = None  # a worker of several queues: the slots its lanes share
        self._lanes: tuple[Worker, ...] = (self,)

    def _build(self, share: tuple[Budget, int] | None) -> None:
        """The parts of a worker of one queue, each in its module (state, jobs held, target, control, heartbeat,
        claims) and the run's sub-tasks; ``share``: the budget and index of a lane of a worker of several queues."""
        opts, tasks = self._opts, self._tasks
        self._life = Lifecycle(opts.id, self._on_drain, lambda: self._settler.slot_free.set())
        self._signals = StopSignals(opts.id, self._life, opts.shutdown_timeout)
        settler = self._settler = Settler(opts.id, tasks, self._observers, opts.cpu_workers, self._shared)
        self._sizing = Sizing(opts.id, tasks, self._settler, self._bounds)
        self._control = Control(opts.id, tasks, self._settler.cancel)
        self._heartbeat = Heartbeat(self, self._settler)
        self._claimer = Claimer(opts, tasks, self._sizing, self._life, self._settler, self._control, share)
        self._subtasks = SubTasks(opts.id, self._ensure_groups)
        if share is not None:
            budget, index = share
            settler.on_free = budget.freed
            budget.join(index, lambda: settler.busy, lambda: settler.slot_free.set())

    @classmethod
    def _lane(cls, opts: WorkerOptions, tasks: Tasks, weight: int, bounds: tuple[int, int, int],
              observers: list[JobObserver], budget: Budget, index: int) -> Worker:  # fmt: skip
        """The lane of ``tasks`` in a worker of several queues: a worker of that queue alone, on a shared budget."""
        lane = cls.__new__(cls)
        lane._setup(opts, (tasks,), {tasks.queue: weight}, bounds, [])  # its own observers: of this queue only
        lane._shared = observers  # and the worker's: of every queue
        lane._build((budget, index))
        return lane

    def __repr__(self) -> str:
        queues = ", ".join(repr(t.queue) for t in self._registries)
        where = f"queue={queues}" if len(self._registries) == 1 else f"queues=({queues})"
        return f"Worker(id={self._opts.id!r}, {where}, concurrency={self.concurrency})"

    def lane(self, queue: str) -> Worker:
        """The single-queue worker that runs ``queue`` (a worker of one queue is its own lane): its own figures,
        :attr:`failing`, :attr:`paused`, :attr:`supervisor`. :class:`KeyError` for a queue this worker does not run."""
        for lane in self._lanes:
            if lane._tasks.queue == queue:
                return lane
        queues = ", ".join(repr(t.queue) for t in self._registries)
        raise KeyError(f"worker {self._opts.id} does not run queue {queue!r} (its queues: {queues})")

    @property
    def concurrency(self) -> int:
        """How many jobs this worker runs at once: its current target, which the autoscaler and :meth:`scale_to`
        change within ``min_concurrency``..``max_concurrency`` (of several queues: the shared budget, capped by
        the sum of the lanes' targets)."""
        if self._budget is None:
            return self._sizing.target
        return min(self._budget.total, sum(lane._sizing.target for lane in self._lanes))

    @property
    def busy(self) -> int:
        """Jobs claimed and not yet finished: running, or prefetched and waiting for a slot."""
        return sum(lane._settler.busy for lane in self._lanes)

    @property
    def running_jobs(self) -> int:
        """Jobs running on a slot now (:attr:`busy` without the prefetched ones)."""
        return sum(pool.running for lane in self._lanes if (pool := lane._settler.pool) is not None)

    @property
    def processed(self) -> int:
        """Attempts finished by this worker (any outcome)."""
        return sum(lane._settler.processed for lane in self._lanes)

    @property
    def failed(self) -> int:
        """Attempts that failed (retried or dead-lettered)."""
        return sum(lane._settler.failed for lane in self._lanes)

    @property
    def service_time(self) -> float | None:
        """Mean seconds a job takes here (exponentially weighted: recent jobs count most), None until one ends
        (of several queues: the mean of the lanes')."""
        if self._budget is None:
            return self._settler.service_time
        times = [t for lane in self._lanes if (t := lane._settler.service_time) is not None]
        return sum(times) / len(times) if times else None

    @property
    def is_running(self) -> bool:
        """True from :meth:`run` until a stop is requested (False before, and while shutting down)."""
        return self._life.is_running

    @property
    def paused(self) -> bool:
        """True while the queue is paused (as this worker last saw it); of several, while every one is."""
        return all(lane._control.paused for lane in self._lanes)

    @property
    def loop_blocks(self) -> int:
        """Times the event loop was found blocked for more than a second while this worker ran."""
        return max(lane._heartbeat.loop_blocks for lane in self._lanes)  # every lane sees the same blocks

    @property
    def failing(self) -> dict[str, str]:
        """Sub-tasks of this worker (``claim``, ``settler``, ``heartbeat``, ``scheduler``, ``control``, ``cron``,
        ``supervisor``, ``loop-watch``) that keep failing, with their last error: each is restarted with a backoff,
        and is listed here after 3 failures in a row until it runs 10 s without one. ``{}`` when all is well. Of
        several queues, keyed ``"<queue>:<sub-task>"``."""
        if self._budget is None:
            return self._subtasks.failing
        return {f"{lane._tasks.queue}:{n}": e for lane in self._lanes for n, e in lane._subtasks.failing.items()}

    async def _sample_queue(self) -> QueueSample:
        """The queue's figures for the supervisor (live workers counted by this worker's registry TTL)."""
        return await (await self._tasks._broker()).sample(self._registry_ttl_ms)

    @property
    def _registry_ttl_ms(self) -> int:
        """Milliseconds this worker's registry entry (what :meth:`Tasks.info` lists) lives without a heartbeat."""
        return self._heartbeat.ttl_ms

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def run(self, burst: bool = False, *, max_jobs: int | None = None, handle_signals: bool = True) -> None:
        """Run until :meth:`stop` or SIGINT/SIGTERM; with ``burst``, until nothing is queued, due or running.

        ``max_jobs`` (burst only: :class:`ConfigurationError` otherwise, or below 1) also ends a burst run once it
        has started that many jobs: it claims no more than that (none is left waiting for a lease), lets them
        finish, and returns.

        A second SIGINT/SIGTERM during shutdown stops waiting for running jobs: they are cancelled at once and put
        back in the queue. One that arrives within a second of the first counts as the same request (a signal sent
        to a whole process group or cgroup reaches each child of ``aqueue worker --processes`` twice: directly and
        forwarded by the parent). ``handle_signals=False`` leaves SIGINT/SIGTERM to the host application (an aiohttp
        app started with ``web.run_app``, say), which then stops the worker with :meth:`stop` on its way down.

        A stop requested before this run began (:meth:`stop` right after ``asyncio.create_task(worker.run())``)
        makes it return once connected, without claiming a job. A worker whose run has returned may run again.
        """
        max_jobs = check_max_jobs(burst, max_jobs)
        if self._budget is not None:
            await self._group.run(self, burst, max_jobs, handle_signals)
            return
        self._life.begin()  # STARTING (or DRAINING at once for a stop requested before); refused while running
        self._claimer.limit(max_jobs)  # a fresh count per run
        loop = asyncio.get_running_loop()
        if handle_signals:
            self._signals.install(loop)  # before connecting, so a signal during start-up is not fatal
        self._tasks._attach(self)  # tasks.close() stops this worker before closing its connections
        try:
            broker = await self._tasks._broker()
            await broker.ensure_groups()
            if self._life.state is WorkerState.STARTING:
                async with Lifespan(self._tasks, self._opts.id):  # before the first claim; exited after the last settle
                    await self._serve(broker, burst)
            else:
                log.info("worker %s: stop requested before or during start-up; not serving", self._opts.id)
        finally:
            self._signals.remove(loop)
            self._tasks._detach(self)
            self._life.end()

    def _loops(self, broker: Broker, burst: bool) -> dict[str, Callable[[], Awaitable[None]]]:
        """Every long-lived loop a run owns, by the name :class:`SubTasks` supervises it under (the names
        :attr:`failing` reports), in start order. ``claim`` starts last, once start-up is done, and is stopped
        first; ``settler`` is stopped last, after the slots."""
        loops: dict[str, Callable[[], Awaitable[None]]] = {
            "settler": self._settler.run,
            "heartbeat": self._heartbeat.run,
            "scheduler": lambda: promote_due_jobs(broker, self._opts.id),
            "control": self._control.run,
            "loop-watch": LoopWatch(_BLOCK_REPORTED, run_job.__code__, "c", self._heartbeat.on_loop_blocked).run,
        }
        if self._tasks.crons:
            loops["cron"] = lambda: run_crons(self._tasks)
        if self.autoscaling:
            opts = self._opts
            supervisor = self._supervisor = Supervisor(self, opts.strategy, opts.scale_interval, opts.cooldown)
            loops["supervisor"] = supervisor.run
        loops["claim"] = lambda: self._claimer.run(burst)
        return loops

    async def _serve(self, broker: Broker, burst: bool) -> None:
        self._settler.open(self._sizing.target)
        self._heartbeat.open()
        subtasks = self._subtasks = SubTasks(self._opts.id, self._ensure_groups, self._heartbeat.soon)
        try:
            await self._heartbeat.beat()
            await self._control.open()
            loops = self._loops(broker, burst)
            claim = loops.pop("claim")
            for name, loop in loops.items():
                subtasks.start(name, loop)
            log.info("worker %s up: queue=%s concurrency=%d [%d..%d] lease=%.1fs loop=%s", self._opts.id,
                     self._tasks.queue, self.concurrency, self.min_concurrency, self.max_concurrency, self._opts.lease,
                     type(asyncio.get_running_loop()).__module__)  # fmt: skip
            if self._life.serve():  # RUNNING, unless a stop came during start-up
                await subtasks.start("claim", claim)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                # run() itself was cancelled: a forced stop. Running jobs are cancelled and put back at once
                # (waiting shutdown_timeout for them would hold up whoever cancelled), then the cancellation
                # goes through.
                self._life.force("run() cancelled")
                raise
            # else: the claim loop was cancelled by a stop request while it blocked in a read
        finally:
            self._life.drain()
            await self._shutdown(subtasks)
            log.info("worker %s down: processed=%d failed=%d", self._opts.id, self.processed, self.failed)

    async def _ensure_groups(self) -> None:
        await (await self._tasks._broker()).ensure_groups()

    async def stop(self) -> None:
        """Stop claiming, let running jobs finish (up to ``shutdown_timeout``), and return when shut down.

        Called right after ``asyncio.create_task(worker.run())``, before that task has begun, it stops that run as
        soon as it has connected and returns once it has. Called on a worker that is not running and has no run
        about to begin, it returns at once (a worker that never ran then returns from its next :meth:`run` right
        after start-up).
        """
        await self._life.stop()

    def request_stop(self, *, cancel_running: bool = False) -> None:
        """Ask the worker to stop, without waiting (safe from a signal handler); a second call forces it.

        A forced stop (a second call, or ``cancel_running``) cancels the running jobs at once instead of letting
        them finish, and puts them back in the queue. Before the worker's first run has begun, the request is kept:
        that run returns right after start-up. On a worker whose run has returned it does nothing.
        """
        self._life.request_stop(cancel_running)

    def _on_drain(self) -> None:
        """A stop request began the drain: wake the claim loop wherever it waits."""
        self._settler.slot_free.set()  # waiting for a free slot
        self._control.wake()  # waiting for the queue to resume
        claim = self._subtasks.tasks.get("claim")
        if self._claimer.blocked and claim is not None:
            claim.cancel()  # abandoning a blocking read is safe: what it delivered stays pending for release()

    async def _shutdown(self, subtasks: SubTasks) -> None:
        """DRAINING: stop claiming, wait for running jobs (up to ``shutdown_timeout``, not at all when forced), stop
        the other loops and the slots, settle what finished and give back what did not."""
        await subtasks.stop("claim")
        self._settler.drop_prefetched()  # prefetched, never started: release() below puts them back
        await self._settler.wait_running(self._opts.shutdown_timeout, lambda: self._life.forced_by)
        await subtasks.stop(*[name for name in subtasks.tasks if name != "settler"])
        await self._settler.close_slots()
        await subtasks.stop("settler")
        await self._settler.give_back(self._opts.lease)

    def _runs(self, task: asyncio.Task[Any] | None) -> bool:
        """``task`` is the slot coroutine of one of this worker's jobs (what :meth:`Tasks.close` asks)."""
        return any(lane._settler.runs(task) for lane in self._lanes)
