"""A worker of several queues (``Worker([orders, emails])``): one lane per registry, run side by side.

Each lane is a single-queue :class:`~aqueue.Worker` with the worker's id, its own claim loop, slots, settle loop,
heartbeat, control reader, scheduler, cron and autoscaler on its own queue (which may live on another Redis Cluster
master), drawing on the worker's shared :class:`~aqueue._worker.budget.Budget`. :class:`Lanes` is what the worker
of several queues runs: its own lifecycle (stop requests and SIGINT/SIGTERM, installed once, reach every lane), the
lanes' runs, and the rule that one lane failing stops the others. The checks of the constructor's ``tasks`` and
``weights`` are here too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

from aqueue._core.connection import Stoppable
from aqueue._core.errors import ConfigurationError
from aqueue._core.tasks import Tasks
from aqueue._worker.lifecycle import Lifecycle, StopSignals, WorkerState

__all__ = ["Lane", "Lanes", "check_weights", "registries_of"]

log = logging.getLogger("aqueue._worker.worker")


class Lane(Protocol):
    """What :class:`Lanes` needs of one lane (a single-queue :class:`~aqueue.Worker` is one)."""

    @property
    def tasks(self) -> Tasks: ...

    async def run(self, burst: bool = False, *, max_jobs: int | None = None, handle_signals: bool = True) -> None: ...

    def request_stop(self, *, cancel_running: bool = False) -> None: ...


def registries_of(tasks: Tasks | Sequence[Tasks]) -> tuple[Tasks, ...]:
    """The registries a worker runs, in order: one :class:`Tasks` or a non-empty sequence of them, each of its own
    queue (:class:`ConfigurationError` otherwise)."""
    if isinstance(tasks, Tasks):
        return (tasks,)
    if isinstance(tasks, str | bytes) or not isinstance(tasks, Sequence):
        raise ConfigurationError(f"a Worker runs a Tasks or a sequence of them, got {type(tasks).__name__}")
    registries = tuple(tasks)
    if not registries:
        raise ConfigurationError("a Worker needs at least one Tasks")
    for t in registries:
        if not isinstance(t, Tasks):
            raise ConfigurationError(f"a Worker runs Tasks registries, got a {type(t).__name__} among them")
    queues = [t.queue for t in registries]
    twice = sorted({q for q in queues if queues.count(q) > 1})
    if twice:
        raise ConfigurationError(f"each queue of a Worker must be distinct: {', '.join(map(repr, twice))} given twice")
    return registries


def check_weights(registries: Sequence[Tasks], weights: Mapping[str, int] | None) -> dict[str, int]:
    """Each queue's weight (default 1): ``weights`` keys must be queues of the worker, values integers >= 1."""
    weights = dict(weights or {})
    queues = [t.queue for t in registries]
    unknown = [q for q in weights if q not in queues]
    if unknown:
        raise ConfigurationError(f"weights name queues this worker does not run: {', '.join(map(repr, unknown))} "
                                 f"(its queues: {', '.join(map(repr, queues))})")  # fmt: skip
    for queue, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
            raise ConfigurationError(f"the weight of queue {queue!r} must be an integer >= 1, got {weight!r}")
    return {q: weights.get(q, 1) for q in queues}


class Lanes:
    """The lanes of a worker of several queues, run as one: see the module docstring."""

    def __init__(self, owner: str, lanes: Sequence[Lane], shutdown_timeout: float) -> None:
        self._owner = owner
        self.lanes = tuple(lanes)
        self.life = Lifecycle(owner, self._drain, self._force)
        self._signals = StopSignals(owner, self.life, shutdown_timeout)

    def _drain(self) -> None:
        for lane in self.lanes:
            lane.request_stop()

    def _force(self) -> None:
        for lane in self.lanes:
            lane.request_stop(cancel_running=True)

    async def run(self, worker: Stoppable, burst: bool, max_jobs: int | None, handle_signals: bool) -> None:
        """``Worker.run`` of several queues: every lane runs until a stop (or, with ``burst``, until its queue has
        nothing left); ``worker`` is attached to every registry so that closing any of them stops it."""
        if max_jobs is not None:
            raise ConfigurationError("max_jobs applies to a worker of one queue: run one worker per queue for it")
        self.life.begin()
        loop = asyncio.get_running_loop()
        if handle_signals:
            self._signals.install(loop)  # once, for every lane
        for lane in self.lanes:
            lane.tasks._attach(worker)
        try:
            if self.life.state is WorkerState.STARTING:
                await self._serve(burst)
            else:
                log.info("worker %s: stop requested before start-up; not serving", self._owner)
        finally:
            self._signals.remove(loop)
            for lane in self.lanes:
                lane.tasks._detach(worker)
            self.life.end()

    async def _serve(self, burst: bool) -> None:
        runs = [
            asyncio.create_task(lane.run(burst, handle_signals=False), name=f"aqueue-lane-{lane.tasks.queue}")
            for lane in self.lanes
        ]
        try:
            await asyncio.sleep(0)  # every lane's run has begun: a stop request from now on reaches it
            if not self.life.serve():
                self._drain()  # a stop came during start-up
            _, pending = await asyncio.wait(runs, return_when=asyncio.FIRST_EXCEPTION)
            if pending:  # a lane failed (its lifespan, say): the others stop as a stop request stops them
                log.error("worker %s: a queue's lane failed; stopping the others", self._owner)
                self._drain()
                await asyncio.wait(pending)
            for run in runs:
                if not run.cancelled() and (error := run.exception()) is not None:
                    raise error
        except asyncio.CancelledError:
            # run() itself was cancelled: each lane, cancelled in turn, cancels its running jobs and gives them back.
            for run in runs:
                run.cancel()
            await asyncio.gather(*runs, return_exceptions=True)
            raise
        finally:
            self.life.drain()
