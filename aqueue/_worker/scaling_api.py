"""The scaling face of a :class:`~aqueue.Worker`: its bounds in use, the autoscaler, and :meth:`scale_to`.

A base class of ``Worker`` (which owns the :class:`~aqueue._worker.sizing.Sizing` and the supervisor), kept apart
so that the worker's module holds its lifecycle.
"""

from __future__ import annotations

from collections.abc import Sequence

from aqueue._worker.sizing import Sizing
from aqueue.autoscale.scaling import ScalingRecord
from aqueue.autoscale.supervisor import Supervisor

__all__ = ["Scaling"]


class Scaling:
    """Scaling properties and methods of a worker whose target ``_sizing`` holds."""

    _sizing: Sizing
    _supervisor: Supervisor | None

    @property
    def autoscaling(self) -> bool:
        """True when a supervisor sizes this worker (``min_concurrency < max_concurrency``)."""
        return self._sizing.low < self._sizing.high

    @property
    def supervisor(self) -> Supervisor | None:
        """The autoscaling loop (its ``history`` of snapshots, its ``last_decision``), from the first run of an
        autoscaling worker; None on a fixed-concurrency one."""
        return self._supervisor

    @property
    def scale_ups(self) -> int:
        """Applied increases of the concurrency target."""
        return self._sizing.ups

    @property
    def scale_downs(self) -> int:
        """Applied decreases of the concurrency target."""
        return self._sizing.downs

    @property
    def scaling_history(self) -> Sequence[ScalingRecord]:
        """The latest applied scaling changes (at most 50), oldest first."""
        return tuple(self._sizing.history)

    @property
    def scale_override(self) -> int | None:
        """The target set by :meth:`scale_to` while it holds (until :meth:`release_scale` or its ``ttl``), else None."""
        return self._sizing.override

    async def scale_to(self, concurrency: int, ttl: float | None = None) -> None:
        """Run at ``concurrency`` (clamped to the bounds) until :meth:`release_scale`, or for ``ttl`` seconds.

        Overrides the autoscaler, which makes no decision meanwhile (``POST /scale`` of the web app calls this).
        On a fixed-concurrency worker the bounds are equal, so this changes nothing.
        """
        await self._sizing.scale_to(concurrency, ttl)

    def release_scale(self) -> None:
        """End a :meth:`scale_to` override: the autoscaler decides again from its next tick."""
        self._sizing.release()

    async def _apply_scale(
        self, target: int, reason: str, strategy: str, confidence: float | None, inputs: str
    ) -> ScalingRecord:
        """The supervisor's: set the target now (see :meth:`Sizing.apply`)."""
        return await self._sizing.apply(target, reason, strategy, confidence, inputs)
