"""Autoscaling vocabulary: the metrics snapshot a strategy sees, the decision it returns, the strategy protocol,
the record of an applied change, and :class:`ScalingTarget`, what the supervisor sizes.

Kept apart from ``strategies.py`` (the built-in policies) and ``supervisor.py`` (the loop that measures, asks the
strategy, enforces bounds and cooldown, and applies the target) so each can be read and tested alone. Nothing here
knows the worker: it satisfies :class:`ScalingTarget`, and the supervisor talks only to that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from aqueue._core.errors import ConfigurationError
from aqueue._core.wire import QueueSample

__all__ = ["Decision", "MetricsSnapshot", "ScalingRecord", "ScalingTarget", "Strategy", "concurrency_bounds"]


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """What the supervisor measured in one tick (one pipelined Redis round trip plus local counters).

    Rates are per second over the supervisor's sliding window; times are in seconds.
    """

    t: float  #: monotonic time of the measurement
    backlog: dict[str, int]  #: jobs waiting per priority (in a stream, not yet claimed by any worker)
    due: int  #: scheduled jobs already due (about to be promoted into the streams)
    pending: int  #: jobs claimed and not yet settled, across all workers
    oldest_wait: float  #: age of the oldest waiting job (0 when nothing waits)
    arrival_rate: float  #: jobs entering the queue per second
    completion_rate: float  #: attempts finishing per second, across all workers
    error_rate: float  #: failed attempts / finished attempts over the window, 0..1
    concurrency: int  #: this worker's current target
    busy: int  #: this worker's slots running a job
    service_time: float | None  #: mean seconds one job takes on this worker (None until one has finished)
    loop_lag: float  #: how late this process's event loop runs a timer (CPU saturation)
    workers: int  #: live workers sharing the queue (>= 1: this one)
    min_concurrency: int  #: this worker's lower bound
    max_concurrency: int  #: this worker's upper bound
    #: Seconds one slot spent per finished job while at least one job per slot waited (concurrency / jobs this
    #: worker finished per second): the service time plus what claiming and settling cost a slot. None until
    #: measured, or when the last such measurement is more than 10 s old.
    slot_cycle: float | None = None

    @property
    def effective_service_time(self) -> float | None:
        """What sizing uses: the larger of :attr:`service_time` and :attr:`slot_cycle` (None before any job
        finished). Short jobs on a busy loop spend longer waiting for their claim than running."""
        if self.service_time is None:
            return None
        return max(self.service_time, self.slot_cycle or 0.0)

    @property
    def total_backlog(self) -> int:
        """Jobs waiting in every priority, plus scheduled jobs already due."""
        return sum(self.backlog.values()) + self.due

    @property
    def utilization(self) -> float:
        """Share of this worker's slots that are busy, 0..1."""
        return self.busy / self.concurrency if self.concurrency else 0.0


@dataclass(frozen=True, slots=True)
class Decision:
    """A strategy's answer: the concurrency it wants, and why (shown in events, logs and the dashboard)."""

    target: int  #: the concurrency wanted; the supervisor clamps it to the bounds and applies the cooldown
    reason: str  #: a short human explanation, e.g. ``"error rate 25.0% > 20%: back off to 40"``
    #: How sure a forecasting strategy is of its forecast (0..1), else None.
    confidence: float | None = None
    #: Extra figures worth reporting with the decision (e.g. the predicted backlog).
    details: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Strategy(Protocol):
    """A scaling policy: maps the newest snapshot and the recent history to a decision.

    Pass one to ``Worker(..., strategy=...)`` in place of a built-in name. Any object with a ``name`` and a
    ``decide`` method is one; no need to subclass. ``history`` holds earlier snapshots, oldest first, not including
    ``snapshot``. A strategy may keep state between calls (it is used by one supervisor). It need not clamp to the
    bounds or honour the cooldown: the supervisor does both, so a strategy states what it wants and why.
    """

    name: str  #: shown with every decision (in ``scaling`` events, logs and the dashboard)

    def decide(self, snapshot: MetricsSnapshot, history: Sequence[MetricsSnapshot]) -> Decision:
        """The concurrency this worker should run at now, with the reason; called every ``scale_interval``
        seconds."""
        ...


@dataclass(frozen=True, slots=True)
class ScalingRecord:
    """One applied change of a worker's concurrency."""

    at: float  #: wall-clock time (seconds since the epoch)
    old: int
    new: int
    reason: str
    strategy: str
    confidence: float | None = None


class ScalingTarget(Protocol):
    """What a supervisor sizes (a :class:`~aqueue.Worker` is one): the figures it reads every tick, one read of the
    queue, and the one call that applies a target."""

    @property
    def id(self) -> str:
        """Named in the supervisor's logs."""
        ...

    @property
    def concurrency(self) -> int:
        """The current target."""
        ...

    @property
    def min_concurrency(self) -> int:
        """The lower bound."""
        ...

    @property
    def max_concurrency(self) -> int:
        """The upper bound."""
        ...

    @property
    def running_jobs(self) -> int:
        """Slots running a job now."""
        ...

    @property
    def processed(self) -> int:
        """Attempts finished so far (the slot cycle is measured from its growth)."""
        ...

    @property
    def service_time(self) -> float | None:
        """Mean seconds a job takes, None until one finished."""
        ...

    @property
    def scale_override(self) -> int | None:
        """A manual target that holds: the supervisor makes no decision meanwhile."""
        ...

    @property
    def paused(self) -> bool:
        """The queue is paused: the supervisor holds."""
        ...

    async def _sample_queue(self) -> QueueSample:
        """The queue's figures, in one read-only script call."""
        ...

    async def _apply_scale(
        self, target: int, reason: str, strategy: str, confidence: float | None, inputs: str
    ) -> ScalingRecord:
        """Set the target now (already clamped and governed), record the change and write its ``scaling`` event."""
        ...


def concurrency_bounds(concurrency: int | None, low: int | None, high: int | None) -> tuple[int, int, int]:
    """(min, max, initial target) from the constructor's arguments, validated."""
    for name, value in (("concurrency", concurrency), ("min_concurrency", low), ("max_concurrency", high)):
        if value is not None and value < 1:
            raise ConfigurationError(f"{name} must be >= 1, got {value}")
    if low is None and high is None:
        fixed = concurrency if concurrency is not None else 100
        return fixed, fixed, fixed
    low = low if low is not None else 1
    high = high if high is not None else max(low, concurrency or 100)
    if low > high:
        raise ConfigurationError(f"min_concurrency {low} is above max_concurrency {high}")
    start = low if concurrency is None else max(low, min(high, concurrency))
    return low, high, start
