"""Figures the web layer measures itself: counter rates over a sliding window, event-loop lag, Redis errors.

Redis holds lifetime counters only; a rate needs two readings some time apart. Every reading the web layer takes
(each ``/status`` build and a once-a-second ticker) goes into one :class:`LiveFigures` per app, so a single
``/status`` request already answers with rates over the last few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass

from aqueue._core.errors import BrokerUnavailable
from aqueue._core.tasks import Tasks

__all__ = ["LiveFigures", "Rates", "run_ticker"]

log = logging.getLogger("aqueue.web")


@dataclass(frozen=True, slots=True)
class Rates:
    """Rates over the last ``window`` seconds (0 when fewer than two readings exist)."""

    arrival: float  #: jobs enqueued per second
    throughput: float  #: attempts finished (succeeded, retried or dead) per second
    error_rate: float  #: share of finished attempts that failed, 0..1
    window: float  #: seconds the rates cover


class LiveFigures:
    """Mutable, process-local figures of one web app (kept in its :class:`~aqueue.web.state.WebConfig`)."""

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self.loop_lag = 0.0  #: how late the ticker's last sleep woke, seconds
        self.redis_errors = 0  #: Redis failures seen by the web layer
        self._samples: deque[tuple[float, int, int, int]] = deque()

    def add(self, enqueued: int, succeeded: int, failed: int, now: float | None = None) -> Rates:
        """Record a reading of the lifetime counters; return the rates it gives."""
        t = time.monotonic() if now is None else now
        if not self._samples or t - self._samples[-1][0] >= 0.25:  # readings closer than that add only noise
            self._samples.append((t, enqueued, succeeded, failed))
        while len(self._samples) > 2 and t - self._samples[1][0] >= self.window:
            self._samples.popleft()
        return self.rates()

    def rates(self) -> Rates:
        """Rates between the oldest and newest reading in the window."""
        if len(self._samples) < 2:
            return Rates(0.0, 0.0, 0.0, 0.0)
        t0, e0, s0, f0 = self._samples[0]
        t1, e1, s1, f1 = self._samples[-1]
        dt = t1 - t0
        done = max(0, s1 - s0) + max(0, f1 - f0)
        errors = max(0, f1 - f0) / done if done else 0.0
        return Rates(max(0, e1 - e0) / dt, done / dt, min(1.0, errors), dt)


async def run_ticker(tasks: Tasks, live: LiveFigures, interval: float = 1.0) -> None:
    """Until cancelled: measure event-loop lag and read the counters every ``interval`` seconds."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(interval)
        # How late the sleep woke is how long ready callbacks waited: the event loop's lag.
        live.loop_lag = max(0.0, loop.time() - started - interval)
        try:
            stats = await (await tasks._broker()).counters()
        except BrokerUnavailable as exc:
            live.redis_errors += 1
            log.debug("web ticker: %s", exc)
            continue
        live.add(stats.get("enqueued", 0), stats.get("succeeded", 0), stats.get("failed", 0))
