"""The scaling face of a :class:`~aqueue.Worker`: its bounds in use, the autoscaler, and :meth:`scale_to`.

A base class of ``Worker`` (which owns the :class:`~aqueue._worker.sizing.Sizing` and the supervisor), kept apart
so that the worker's module holds its lifecycle. A worker of several queues has no sizing of its own: its lanes
each have theirs, and :meth:`Scaling.scale_to` sets the :class:`~aqueue._worker.budget.Budget` they share.
"""

from __future__ import annotations

from collections.abc import Sequence

from aqueue._worker.budget import Budget
from aqueue._worker.sizing import Sizing
from aqueue.autoscale.scaling import ScalingRecord
from aqueue.autoscale.supervisor import Supervisor

__all__ = ["Scaling"]


class Scaling:
    """Scaling properties and methods of a worker whose target ``_sizing`` holds."""

    _sizing: Sizing
    _supervisor: Supervisor | None
    _budget: Budget | None  # several queues: the slots the lanes share
    _lanes: Sequence[Scaling]  # the lanes (of one queue: itself)

    @property
    def autoscaling(self) -> bool:
        """True when a supervisor sizes this worker (``min_concurrency < max_concurrency``); of several queues,
        each lane has its own."""
        return any(lane._sizing.low < lane._sizing.high for lane in self._lanes)

    @property
    def supervisor(self) -> Supervisor | None:
        """The autoscaling loop (its ``history`` of snapshots, its ``last_decision``), from the first run of an
        autoscaling worker; None on a fixed-concurrency one, and on one of several queues (see ``lane(q)``)."""
        return self._supervisor

    @property
    def scale_ups(self) -> int:
        """Applied increases of the concurrency target (of several queues: every lane's)."""
        return sum(lane._sizing.ups for lane in self._lanes)

    @property
    def scale_downs(self) -> int:
        """Applied decreases of the concurrency target (of several queues: every lane's)."""
        return sum(lane._sizing.downs for lane in self._lanes)

    @property
    def scaling_history(self) -> Sequence[ScalingRecord]:
        """The latest applied scaling changes (at most 50 per queue), oldest first."""
        if self._budget is None:
            return tuple(self._sizing.history)
        return tuple(sorted((r for lane in self._lanes for r in lane._sizing.history), key=lambda r: r.at))

    @property
    def scale_override(self) -> int | None:
        """The target set by :meth:`scale_to` while it holds (until :meth:`release_scale` or its ``ttl``), else None."""
        return self._sizing.override if self._budget is None else self._budget.override

    async def scale_to(self, concurrency: int, ttl: float | None = None) -> None:
        """Run at ``concurrency`` (clamped to the bounds) until :meth:`release_scale`, or for ``ttl`` seconds.

        Overrides the autoscaler, which makes no decision meanwhile (``POST /scale`` of the web app calls this).
        On a fixed-concurrency worker the bounds are equal, so this changes nothing. On a worker of several queues
        it sets the budget the queues share, and each lane's own target, to ``concurrency``.
        """
        if self._budget is None:
            await self._sizing.scale_to(concurrency, ttl)
            return
        low, high = min(lane._sizing.low for lane in self._lanes), max(lane._sizing.high for lane in self._lanes)
        self._budget.scale_to(max(low, min(high, concurrency)), ttl)
        for lane in self._lanes:
            await lane._sizing.scale_to(concurrency, ttl)

    def release_scale(self) -> None:
        """End a :meth:`scale_to` override: the autoscaler decides again from its next tick."""
        if self._budget is None:
            self._sizing.release()
            return
        self._budget.release()
        for lane in self._lanes:
            lane._sizing.release()

    async def _apply_scale(
        self, target: int, reason: str, strategy: str, confidence: float | None, inputs: str
    ) -> ScalingRecord:
        """The supervisor's: set the target now (see :meth:`Sizing.apply`)."""
        return await self._sizing.apply(target, reason, strategy, confidence, inputs)
