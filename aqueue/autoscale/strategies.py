"""The built-in scaling strategies: pure functions of the snapshots they are shown, plus a little state of their own.

Every strategy sizes from demand rather than stepping by one: with ``s`` the time one job takes a slot (the measured
service time, or ``slot_cycle`` when claiming and settling make a slot take longer per job),
``need = ceil((arrival_rate * s + total_backlog * s / drain_target) / workers)`` is the concurrency that keeps up
with arrivals and drains the backlog within ``drain_target`` seconds, this worker's share of it. No I/O, no clock
but ``snapshot.t``, no randomness: the same snapshots give the same decisions. Bounds and cooldown are the
supervisor's job, so targets here are not clamped to ``max_concurrency``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from aqueue._core.errors import ConfigurationError
from aqueue.autoscale.scaling import Decision, MetricsSnapshot, Strategy

__all__ = ["AggressiveStrategy", "ConservativeStrategy", "DefaultStrategy", "PredictiveStrategy", "get_strategy"]


#: Calls with errors under the threshold after which a back-off episode is over.
_CALM_TICKS = 10


@dataclass
class _State:
    idle: int = 0  # consecutive idle decide() calls at the current concurrency
    seen: int = -1  # concurrency of the previous call: a change restarts the idle count
    recover_to: int | None = None  # concurrency before an error back-off; increases are additive until reached
    backed_off_to: int | None = None  # the back-off target asked for (the governor may have held it)
    calm: int = 0  # consecutive calls with the error rate under the threshold


@dataclass(frozen=True)
class _Demand:
    need: int  # concurrency wanted for this worker
    why: str  # the inputs behind ``need``, for the reason string
    urgent: bool  # grounds to scale up now (growth confirmed, jobs waiting too long, a rising forecast)
    confidence: float | None = None
    details: dict[str, float] = field(default_factory=dict)


def _service(s: MetricsSnapshot, service: float) -> str:
    """``51 ms``, or ``9 ms per slot (3 ms running)`` when claiming and settling make up most of a slot's time."""
    if s.service_time is not None and service > s.service_time:
        return f"{service * 1000:.0f} ms per slot ({s.service_time * 1000:.0f} ms running)"
    return f"{service * 1000:.0f} ms"


def _trend(s: MetricsSnapshot, history: Sequence[MetricsSnapshot]) -> str:
    """How the backlog moved since the previous snapshot: growing, falling or steady (a first sighting grows)."""
    before = history[-1].total_backlog if history else 0
    return "growing" if s.total_backlog > before else "falling" if s.total_backlog < before else "steady"


def _growth_streak(s: MetricsSnapshot, history: Sequence[MetricsSnapshot]) -> int:
    """Consecutive ticks, ending now, in which the backlog or the oldest wait grew (a first sighting counts)."""
    points = [*history, s]
    streak = 0
    for prev, cur in zip(reversed(points[:-1]), reversed(points[1:]), strict=True):
        waiting_longer = cur.total_backlog > 0 and cur.oldest_wait > prev.oldest_wait
        if not (cur.total_backlog > prev.total_backlog or waiting_longer):
            return streak
        streak += 1
    return streak + (1 if points[0].total_backlog > 0 else 0)


@dataclass(frozen=True, kw_only=True)
class DefaultStrategy:
    """Demand sizing with AIMD on errors. Knobs (keyword arguments) and their defaults:

    - ``drain_target=1.0`` s: drain the backlog within this time; ``wait_threshold`` (default: ``drain_target``)
      s of oldest wait is urgent even if the backlog is not growing.
    - ``confirm_ticks=1``: consecutive ticks of backlog (or oldest wait) growth before scaling up, straight to
      ``need * headroom`` (``headroom=1.0``), adding at most ``max_step_up`` times current per decision (None: no cap).
    - ``idle_ticks=5``, ``idle_utilization=0.5``, ``down_fraction=0.25``: after that many consecutive calls with
      no backlog and utilization below the threshold, step down by a quarter (at least 1), never below ``need``.
    - ``error_threshold=0.2``, ``error_backoff=0.5``, ``recovery_step=1``: above the error rate, halve (again
      only while the rate is not falling); then grow back by ``recovery_step`` per call, if demand asks for more,
      until the pre-error concurrency is reached.
    - ``lag_threshold=0.1`` s: event loop lag above this means the process is CPU-bound; every increase is held.
    - ``probe_factor=2.0``: with no service time measured yet and jobs waiting, multiply the concurrency.

    Why errors never add concurrency here: failures and timeouts usually mean a dependency (database, API) is
    failing or saturated, and more concurrent attempts hammer it harder and turn slowness into more timeouts.
    Backing off multiplicatively and recovering additively (as TCP does) finds the rate it can take.
    Precedence: errors first (a decrease is allowed even when CPU-bound, as it also lowers CPU load), then loop
    lag, which vetoes increases only; idle step-downs stay allowed when CPU-bound.
    """

    name = "default"

    drain_target: float = 1.0
    wait_threshold: float | None = None
    confirm_ticks: int = 1
    headroom: float = 1.0
    max_step_up: float | None = None
    idle_ticks: int = 5
    idle_utilization: float = 0.5
    down_fraction: float = 0.25
    error_threshold: float = 0.2
    error_backoff: float = 0.5
    recovery_step: int = 1
    scale_up_on_errors: bool = False
    lag_threshold: float = 0.1
    probe_factor: float = 2.0
    _state: _State = field(default_factory=_State, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        checks = {
            "drain_target must be > 0": self.drain_target > 0,
            "wait_threshold must be > 0": self.wait_threshold is None or self.wait_threshold > 0,
            "confirm_ticks must be >= 0": self.confirm_ticks >= 0,
            "headroom must be >= 1": self.headroom >= 1,
            "max_step_up must be > 0": self.max_step_up is None or self.max_step_up > 0,
            "idle_ticks must be >= 1": self.idle_ticks >= 1,
            "idle_utilization must be in (0, 1]": 0 < self.idle_utilization <= 1,
            "down_fraction must be in (0, 1)": 0 < self.down_fraction < 1,
            "error_threshold must be in [0, 1]": 0 <= self.error_threshold <= 1,
            "error_backoff must be in (0, 1)": 0 < self.error_backoff < 1,
            "recovery_step must be >= 1": self.recovery_step >= 1,
            "lag_threshold must be > 0": self.lag_threshold > 0,
            "probe_factor must be > 1": self.probe_factor > 1,
        }
        failed = [message for message, ok in checks.items() if not ok]
        if failed:
            raise ConfigurationError(f"{type(self).__name__}: {'; '.join(failed)}")

    def decide(self, snapshot: MetricsSnapshot, history: Sequence[MetricsSnapshot]) -> Decision:
        """The concurrency this worker should run at now, with the inputs that drove it."""
        s, st, current = snapshot, self._state, snapshot.concurrency
        if st.seen != current:  # a step (ours or a manual override) was applied: idleness is judged afresh
            st.idle, st.seen = 0, current
        erring = s.error_rate > self.error_threshold
        st.calm = 0 if erring else st.calm + 1
        if erring and not self.scale_up_on_errors:
            return self._back_off(s, history)
        if st.recover_to is not None and (current >= st.recover_to or st.calm >= _CALM_TICKS):
            st.recover_to = None  # recovered, or the error episode is long over: size from demand again
            st.backed_off_to = None
        service = s.effective_service_time
        if service is not None:
            demand = self._demand(s, history, service)
        elif s.total_backlog:  # nothing finished yet: no basis for sizing, so probe
            target = max(current + 1, math.ceil(current * self.probe_factor))
            why = f"service time unknown, backlog {s.total_backlog} → probing at {self.probe_factor:g}x to {target}"
            return self._up(s, target, _Demand(target, why, True))
        else:  # no job has run here yet (or none finished): only idleness can be judged, keeping what runs
            demand = _Demand(max(1, s.busy), f"no job finished yet, backlog 0, {s.busy} running", False)
        return self._from_demand(s, demand, erring)

    def _back_off(self, s: MetricsSnapshot, history: Sequence[MetricsSnapshot]) -> Decision:
        """The error rate is above the threshold: halve, unless the back-off applied and the rate is falling."""
        st, current = self._state, s.concurrency
        st.idle = 0
        rate = f"error rate {s.error_rate:.1%} > {self.error_threshold:.0%}"
        applied = st.backed_off_to is not None and current <= st.backed_off_to
        if applied and history and s.error_rate < history[-1].error_rate:
            # The rate is a sliding window that still holds failures from before our back-off: falling, it
            # shows the back-off working, and halving again on stale errors would overshoot. (Only once the
            # back-off really applied: the governor may have held it.)
            return Decision(current, f"{rate} but falling since the back-off: holding at {current}")
        st.recover_to = max(st.recover_to or 0, current)
        target = max(1, s.min_concurrency, int(current * self.error_backoff))
        st.backed_off_to = target
        return Decision(target, f"{rate}: back off to {target}")

    def _from_demand(self, s: MetricsSnapshot, demand: _Demand, erring: bool) -> Decision:
        """Up to the demand when it is urgent (or recovering), a step down after enough idle ticks, else hold."""
        st, current = self._state, s.concurrency
        idle = s.total_backlog == 0 and s.utilization < self.idle_utilization
        st.idle = st.idle + 1 if idle else 0
        if erring and s.total_backlog > 0:
            # scale_up_on_errors: failing attempts come back as retries, so count them as work to do (with no
            # backlog the failures were dead-lettered, and more concurrency would only add load).
            bump = max(demand.need, current + max(1, current // 2))
            why = f"error rate {s.error_rate:.1%} > {self.error_threshold:.0%}, retries count as backlog; {demand.why}"
            return self._up(s, bump, replace(demand, why=why))
        if demand.need > current and (demand.urgent or st.recover_to is not None):
            target = demand.need
            if self.max_step_up is not None:
                target = min(target, current + max(1, math.ceil(current * self.max_step_up)))
            return self._up(s, target, demand)
        if idle and st.idle >= self.idle_ticks and current > s.min_concurrency:
            step = max(1, int(current * self.down_fraction))
            target = max(demand.need, current - step, s.min_concurrency, 1)
            if target < current:
                st.recover_to = None  # the demand that met the errors is gone
                why = f"idle {st.idle} ticks (backlog 0, utilization {s.utilization:.0%}) → step down to {target}"
                return Decision(target, why, demand.confidence, demand.details)
        return Decision(current, f"holding at {current}: {demand.why}", demand.confidence, demand.details)

    def _size(self, arrival: float, backlog: float, s: MetricsSnapshot, service: float) -> int:
        raw = (arrival * service + backlog * service / self.drain_target) * self.headroom / max(1, s.workers)
        return max(1, math.ceil(raw - 1e-9))  # the epsilon keeps float noise (2.0000000001) from adding a slot

    def _demand(self, s: MetricsSnapshot, history: Sequence[MetricsSnapshot], service: float) -> _Demand:
        # Jobs that arrived and still wait are in the backlog already; counting them again through the arrival
        # rate would double a burst. With a backlog, the flow to keep up with is what the queue completes.
        flow = s.arrival_rate if s.total_backlog == 0 else min(s.arrival_rate, s.completion_rate)
        need = self._size(flow, s.total_backlog, s, service)
        streak = _growth_streak(s, history)
        late = s.oldest_wait > (self.wait_threshold or self.drain_target)
        urgent = s.total_backlog > 0 and (streak >= self.confirm_ticks or late)
        trend = _trend(s, history)
        rising = " and rising" if streak and trend != "growing" else ""  # the wait grew while the backlog did not
        share = f" (1/{s.workers} share)" if s.workers > 1 else ""
        why = (
            f"backlog {s.total_backlog} {trend}, oldest wait {s.oldest_wait:.1f} s{rising}, "
            f"arrival {s.arrival_rate:.1f}/s, "
            f"service {_service(s, service)} → need {need}{share} to drain in {self.drain_target:g} s"
        )
        return _Demand(need, why, urgent)

    def _up(self, s: MetricsSnapshot, target: int, demand: _Demand) -> Decision:
        current, why = s.concurrency, demand.why
        if target <= current:
            return Decision(current, f"holding at {current}: {why}", demand.confidence, demand.details)
        if s.loop_lag > self.lag_threshold:  # more coroutines cannot run faster on a saturated CPU
            why = f"event loop lag {s.loop_lag * 1000:.0f} ms: CPU-bound, holding at {current} (wanted {target}); {why}"
            return Decision(current, why, demand.confidence, demand.details)
        recover_to = self._state.recover_to
        if recover_to is not None and target > current + self.recovery_step:
            target = current + self.recovery_step
            why = f"recovering after errors (+{self.recovery_step} per tick toward {recover_to}) to {target}; {why}"
        return Decision(target, why, demand.confidence, demand.details)


@dataclass(frozen=True, kw_only=True)
class AggressiveStrategy(DefaultStrategy):
    """Latency first: ``drain_target=0.5`` s, scales up on any backlog (``confirm_ticks=0``) to
    ``headroom=1.5`` times need, probes at 4x, steps down by half after ``idle_ticks=3``.

    Unlike the default it scales UP on errors (``scale_up_on_errors=True``): failing attempts return as retries,
    so it treats them as backlog and adds at least half the current concurrency. Suits CPU-light jobs whose
    failures are their own, not a shared dependency's.
    """

    name = "aggressive"

    drain_target: float = 0.5
    confirm_ticks: int = 0
    headroom: float = 1.5
    idle_ticks: int = 3
    down_fraction: float = 0.5
    scale_up_on_errors: bool = True
    probe_factor: float = 4.0


@dataclass(frozen=True, kw_only=True)
class ConservativeStrategy(DefaultStrategy):
    """Stability first: ``drain_target=15.0`` s, scales up only after ``confirm_ticks=3`` consecutive ticks of
    growth (or jobs waiting longer than the drain target), adding at most ``max_step_up=0.5`` times current per
    decision; steps down by an eighth after ``idle_ticks=10``. Errors back off as in :class:`DefaultStrategy`.
    """

    name = "conservative"

    drain_target: float = 15.0
    confirm_ticks: int = 3
    max_step_up: float | None = 0.5
    idle_ticks: int = 10
    down_fraction: float = 0.125


@dataclass(frozen=True)
class _Fit:
    slope: float
    intercept: float
    r2: float

    def at(self, t: float) -> float:
        return self.intercept + self.slope * t


def _fit(xs: Sequence[float], ys: Sequence[float]) -> _Fit:
    """Ordinary least squares ``y = intercept + slope * x``; a flat series fits exactly (r² 1)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0:  # every point at one instant: no trend can be read
        return _Fit(0.0, my, 0.0)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = my - slope * mx
    if syy == 0:
        return _Fit(slope, intercept, 1.0)
    residual = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    return _Fit(slope, intercept, max(0.0, 1.0 - residual / syy))


@dataclass(frozen=True, kw_only=True)
class PredictiveStrategy(DefaultStrategy):
    """Sizes for where demand is heading: least-squares lines through the last ``window=10`` snapshots' backlog
    and arrival rate against time, read ``horizon=5.0`` s ahead, and scale up as soon as a confident forecast rises
    above the current concurrency, before the backlog builds. ``Decision.confidence`` is the r² of the two fits,
    each weighted by its share of the predicted need; ``Decision.details`` holds the predicted figures. With fewer
    than 3 points or a confidence below ``min_confidence=0.6`` it decides as :class:`DefaultStrategy` (and says so).
    It never sizes below today's need; the other knobs and rules are the default's.
    """

    name = "predictive"

    horizon: float = 5.0
    window: int = 10
    min_confidence: float = 0.6

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.horizon <= 0 or self.window < 3 or not 0 <= self.min_confidence <= 1:
            raise ConfigurationError("PredictiveStrategy: horizon must be > 0, window >= 3, min_confidence in [0, 1]")

    def _demand(self, s: MetricsSnapshot, history: Sequence[MetricsSnapshot], service: float) -> _Demand:
        now = super()._demand(s, history, service)
        points = [*history[max(0, len(history) - self.window + 1) :], s]
        if len(points) < 3:
            return replace(now, why=f"default rule (only {len(points)} points to forecast from): {now.why}")
        ts = [p.t for p in points]
        backlog = _fit(ts, [float(p.total_backlog) for p in points])
        arrival = _fit(ts, [p.arrival_rate for p in points])
        when = s.t + self.horizon
        backlog_ahead, arrival_ahead = max(0.0, backlog.at(when)), max(0.0, arrival.at(when))
        # Each fit counts as much as its term drives the predicted need: a noisy few jobs of backlog must not void
        # a clean arrival ramp, nor a flat arrival rate vouch for a wild backlog.
        weight_a, weight_b = arrival_ahead, backlog_ahead / self.drain_target
        total = weight_a + weight_b
        confidence = (arrival.r2 * weight_a + backlog.r2 * weight_b) / total if total else min(arrival.r2, backlog.r2)
        details = {
            "predicted_backlog": backlog_ahead,
            "predicted_arrival_rate": arrival_ahead,
            "backlog_slope": backlog.slope,
            "arrival_slope": arrival.slope,
            "r2_backlog": backlog.r2,
            "r2_arrival": arrival.r2,
            "horizon": self.horizon,
        }
        if confidence < self.min_confidence:
            why = f"default rule (forecast r² {confidence:.2f} < {self.min_confidence:g}): {now.why}"
            return _Demand(now.need, why, now.urgent, confidence, details)
        predicted = self._size(arrival_ahead, backlog_ahead, s, service)
        details["predicted_need"] = float(predicted)
        rising = predicted > s.concurrency and (arrival.slope > 0 or backlog.slope > 0)
        need = max(now.need, predicted)
        why = (
            f"forecast in {self.horizon:g} s: backlog {backlog_ahead:.0f}, arrival {arrival_ahead:.1f}/s "
            f"(r² {confidence:.2f}), service {_service(s, service)} → need {need}"
        )
        return _Demand(need, why, now.urgent or rising, confidence, details)


_BUILTIN: dict[str, Callable[[], Strategy]] = {
    "default": DefaultStrategy,
    "aggressive": AggressiveStrategy,
    "conservative": ConservativeStrategy,
    "predictive": PredictiveStrategy,
}


def get_strategy(spec: str | Strategy) -> Strategy:
    """A new built-in strategy by name (``default``, ``aggressive``, ``conservative``, ``predictive``), or ``spec``
    itself when it already is a :class:`~aqueue.autoscale.scaling.Strategy`. Raises ``ConfigurationError`` otherwise.
    """
    if isinstance(spec, str):
        factory = _BUILTIN.get(spec.strip().lower())
        if factory is None:
            raise ConfigurationError(f"unknown scaling strategy {spec!r}; valid names: {', '.join(_BUILTIN)}")
        return factory()
    if isinstance(spec, Strategy):
        return spec
    raise ConfigurationError(f"strategy must be a name ({', '.join(_BUILTIN)}) or a Strategy, got {spec!r}")
