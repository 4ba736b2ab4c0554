"""A circuit breaker in front of Redis: an outage is reported once, calls fail fast, recovery is probed.

Closed (normal) → after ``threshold`` consecutive connection failures → open: calls raise
:class:`~aqueue.BrokerUnavailable` at once (``quiet``), except one probe per ``probe_interval`` (doubling from
0.1 s up to 2 s) that really tries Redis. The first call that succeeds closes it. The breaker logs one ERROR line
when it opens, one WARNING every 30 s while it stays open, and one WARNING when it closes; retry loops log quiet
failures at debug level. Its state is in ``/health/ready`` and the ``aqueue_redis_circuit_open`` metric.
"""

from __future__ import annotations

import logging
import time

from aqueue.errors import BrokerUnavailable

__all__ = ["MAX_RETRY_DELAY", "CircuitBreaker"]

#: Longest wait between two retries of a worker loop while Redis is down. Short on purpose: while the circuit is
#: open a retry costs nothing (it fails in this process without touching Redis) and the one due probe gets through.
MAX_RETRY_DELAY = 1.0

log = logging.getLogger("aqueue.redis")

_REMIND_EVERY = 30.0


class CircuitBreaker:
    """Tracks consecutive Redis connection failures of one client (see the module docstring)."""

    def __init__(self, where: str, threshold: int = 3, max_probe_interval: float = 2.0) -> None:
        self.where = where
        self.threshold = threshold
        self.max_probe_interval = max_probe_interval
        self.failures = 0  #: consecutive connection failures
        self.opened_at: float | None = None  #: wall-clock time the circuit opened, None while closed
        self.opened_total = 0  #: how many times it opened
        self.last_error = ""
        self._probe_interval = 0.1
        self._next_probe = 0.0
        self._next_reminder = 0.0

    @property
    def is_open(self) -> bool:
        """True while Redis is considered down."""
        return self.opened_at is not None

    @property
    def state(self) -> str:
        """``closed`` or ``open``."""
        return "open" if self.is_open else "closed"

    def before_call(self) -> None:
        """Let the call through, or raise a quiet :class:`BrokerUnavailable` while open and no probe is due."""
        if self.opened_at is None:
            return
        now = time.monotonic()
        if now >= self._next_probe:
            self._next_probe = now + self._probe_interval  # this call is the probe; others wait for the next slot
            self._probe_interval = min(self._probe_interval * 2, self.max_probe_interval)
            return
        exc = BrokerUnavailable(f"Redis at {self.where} is unavailable (circuit open for "
                                f"{time.time() - self.opened_at:.1f} s): {self.last_error}")  # fmt: skip
        exc.quiet = True
        raise exc

    def failed(self, error: BaseException) -> bool:
        """Record a connection failure; returns True if the failure is already reported (quiet)."""
        self.failures += 1
        self.last_error = str(error) or type(error).__name__
        now = time.monotonic()
        if self.opened_at is None:
            if self.failures < self.threshold:
                return False
            self.opened_at = time.time()
            self.opened_total += 1
            self._probe_interval = 0.1
            self._next_probe = now + self._probe_interval
            self._next_reminder = now + _REMIND_EVERY
            log.error("Redis at %s unavailable after %d failures (%s): circuit open; calls fail fast and enqueue "
                      "raises BrokerUnavailable until a probe gets through", self.where, self.failures,
                      self.last_error)  # fmt: skip
            return False
        if now >= self._next_reminder:
            self._next_reminder = now + _REMIND_EVERY
            log.warning("Redis at %s still unavailable after %.0f s (%s)", self.where, time.time() - self.opened_at,
                        self.last_error)  # fmt: skip
        return True

    def succeeded(self) -> None:
        """Record a call that reached Redis: closes an open circuit."""
        if self.opened_at is not None:
            log.warning("Redis at %s answers again after %.1f s: circuit closed", self.where,
                        time.time() - self.opened_at)  # fmt: skip
            self.opened_at = None
        self.failures = 0
