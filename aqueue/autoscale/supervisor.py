"""The supervisor: a task in the worker's loop that sizes the worker from the queue's real state.

Each tick it measures (one script call for the queue, local counters for this worker, a timer for event-loop lag),
asks the strategy for a target, lets the :class:`Governor` enforce bounds and cooldown, and applies the result.
Decisions that change the target become ``scaling`` events; decisions that change nothing are not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence

import orjson

from aqueue._core.errors import BrokerUnavailable
from aqueue.autoscale.scaling import Decision, MetricsSnapshot, ScalingRecord, ScalingTarget, Strategy

__all__ = ["Governor", "ScalingRecord", "Supervisor"]

log = logging.getLogger("aqueue.autoscale.supervisor")
#: Seconds a slot-cycle measurement counts for (MetricsSnapshot.slot_cycle) without a new one.
_CYCLE_MEMORY = 10.0


class Governor:
    """Bounds and cooldown, applied to every strategy alike.

    Scale-up is immediate (backlog costs latency now); scale-down moves at most one step per ``cooldown``; and the
    direction may change at most once per ``cooldown``, so a steady load cannot make the worker flap.
    """

    def __init__(self, min_concurrency: int, max_concurrency: int, cooldown: float) -> None:
        self.min = min_concurrency
        self.max = max_concurrency
        self.cooldown = cooldown
        self._last_change = float("-inf")
        self._last_down = float("-inf")
        self._last_direction = 0

    def govern(self, current: int, wanted: int, now: float) -> tuple[int, str | None]:
        """The target to apply and, when it differs from ``wanted``, why."""
        target = max(self.min, min(self.max, wanted))
        note = None if target == wanted else f"clamped to [{self.min}, {self.max}]"
        if target == current:
            return current, note
        direction = 1 if target > current else -1
        if direction != self._last_direction and now - self._last_change < self.cooldown:
            return current, "held: direction change within the cooldown"
        if direction < 0 and now - self._last_down < self.cooldown:
            return current, "held: one scale-down step per cooldown"
        self._last_change = now
        self._last_direction = direction
        if direction < 0:
            self._last_down = now
        return target, note


class _Window:
    """Counters sampled each tick, giving rates over the last ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._samples: deque[tuple[float, int, int, int]] = deque()

    def add(self, t: float, enqueued: int, succeeded: int, failed: int) -> tuple[float, float, float]:
        """Record a sample; return (arrival rate, completion rate, error rate) over the window."""
        self._samples.append((t, enqueued, succeeded, failed))
        while len(self._samples) > 2 and t - self._samples[1][0] >= self.seconds:
            self._samples.popleft()
        t0, e0, s0, f0 = self._samples[0]
        dt = t - t0
        if dt <= 0:
            return 0.0, 0.0, 0.0
        done = (succeeded - s0) + (failed - f0)
        arrival = max(0, enqueued - e0) / dt
        completion = max(0, done) / dt
        errors = (failed - f0) / done if done > 0 else 0.0
        return arrival, completion, max(0.0, min(1.0, errors))


class Supervisor:
    """Runs one worker's scaling loop (see the module docstring); ``target`` is the worker, as a
    :class:`~aqueue.autoscale.scaling.ScalingTarget`."""

    def __init__(
        self, target: ScalingTarget, strategy: Strategy, interval: float, cooldown: float, window: float = 5.0
    ) -> None:
        self.target = target
        self.strategy = strategy
        self.interval = interval
        self.governor = Governor(target.min_concurrency, target.max_concurrency, cooldown)
        self._window = _Window(window)
        self._history: deque[MetricsSnapshot] = deque(maxlen=max(3, round(60 / interval)))
        self.loop_lag = 0.0
        self.last_decision: Decision | None = None
        self._last_error_log = float("-inf")
        # (time, jobs this worker had finished, saturated, concurrency) at the previous measurement: slot_cycle.
        self._previous: tuple[float, int, bool, int] | None = None
        self._cycle: tuple[float, float] | None = None  # (slot cycle estimate, when last measured)

    @property
    def history(self) -> Sequence[MetricsSnapshot]:
        """Recent snapshots, oldest first."""
        return tuple(self._history)

    async def run(self) -> None:
        """Tick until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self.interval)
            # How late the sleep woke is how long ready callbacks waited: the event loop's lag.
            self.loop_lag = max(0.0, loop.time() - started - self.interval)
            try:
                await self.tick()
            except BrokerUnavailable as exc:
                log.log(exc.log_level, "worker %s: supervisor: %s", self.target.id, exc)
            except Exception:
                # A faulty (custom) strategy must not end autoscaling silently: report it and keep ticking.
                if loop.time() - self._last_error_log >= 60.0:
                    self._last_error_log = loop.time()
                    log.exception("worker %s: supervisor tick failed (%s strategy)", self.target.id, self.strategy.name)

    async def measure(self) -> MetricsSnapshot:
        """One snapshot of the queue and this worker."""
        w = self.target
        s = await w._sample_queue()
        t = time.monotonic()
        arrival, completion, errors = self._window.add(t, s.enqueued, s.succeeded, s.failed)
        # Saturated: at least one waiting job per slot, so no slot lacked work but for claiming it.
        saturated = sum(s.waiting.values()) + s.due >= w.concurrency
        slot_cycle = self._slot_cycle(t, w.processed, saturated, w.concurrency)
        return MetricsSnapshot(
            t=t,
            backlog=s.waiting,
            due=s.due,
            pending=s.pending,
            oldest_wait=0.0 if s.oldest_ms is None else max(0.0, (s.now_ms - s.oldest_ms) / 1000),
            arrival_rate=arrival,
            completion_rate=completion,
            error_rate=errors,
            concurrency=w.concurrency,
            busy=w.running_jobs,
            service_time=w.service_time,
            loop_lag=self.loop_lag,
            workers=max(1, s.workers),
            min_concurrency=w.min_concurrency,
            max_concurrency=w.max_concurrency,
            slot_cycle=slot_cycle,
        )

    def _slot_cycle(self, t: float, processed: int, saturated: bool, concurrency: int) -> float | None:
        """Seconds per job per slot over the last tick, when at least one job per slot waited at both ends of it
        (so only claiming and settling kept a slot idle; with fewer waiting, arrivals bound the throughput and
        the figure would grow with the concurrency itself) and the concurrency did not change (new slots start
        empty); weighted over such ticks, forgotten after 10 s."""
        previous, self._previous = self._previous, (t, processed, saturated, concurrency)
        if (
            previous is not None
            and previous[2:] == (True, concurrency)
            and saturated
            and t > previous[0]
            and processed > previous[1]
        ):
            sample = concurrency * (t - previous[0]) / (processed - previous[1])
            cycle = sample if self._cycle is None else 0.7 * self._cycle[0] + 0.3 * sample
            self._cycle = (cycle, t)
        if self._cycle is None or t - self._cycle[1] > _CYCLE_MEMORY:
            self._cycle = None
            return None
        return self._cycle[0]

    async def tick(self) -> ScalingRecord | None:
        """Measure, decide, govern and apply once; returns the change made, if any."""
        snapshot = await self.measure()
        history = tuple(self._history)
        self._history.append(snapshot)
        if self.target.scale_override is not None:
            return None  # a manual target holds until released
        if self.target.paused:
            return None  # the backlog grows while paused, but no slot could start a job: hold
        decision = self.strategy.decide(snapshot, history)
        self.last_decision = decision
        target, note = self.governor.govern(snapshot.concurrency, decision.target, snapshot.t)
        if target == snapshot.concurrency:
            return None
        reason = decision.reason if note is None else f"{decision.reason} ({note})"
        return await self.target._apply_scale(
            target, reason, self.strategy.name, decision.confidence, _inputs(snapshot, decision)
        )


def _inputs(s: MetricsSnapshot, d: Decision) -> str:
    figures: dict[str, float] = {
        "backlog": s.total_backlog,
        "pending": s.pending,
        "oldest_wait": round(s.oldest_wait, 3),
        "arrival_rate": round(s.arrival_rate, 2),
        "completion_rate": round(s.completion_rate, 2),
        "error_rate": round(s.error_rate, 3),
        "busy": s.busy,
        "service_time": round(s.service_time, 4) if s.service_time is not None else -1,
        "slot_cycle": round(s.slot_cycle, 4) if s.slot_cycle is not None else -1,
        "loop_lag": round(s.loop_lag, 4),
        "workers": s.workers,
    }
    figures.update(d.details)
    return orjson.dumps(figures).decode()  # not codec: a NaN figure is written as null, not refused
