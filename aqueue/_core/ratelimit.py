"""Rate limits: ``"100/m"`` strings parsed into the figures the claim script's GCRA uses.

A limit is global: its state lives in Redis, so it holds across every worker and process of a queue. A job over
the limit is not held in a worker's slot: the claim script reserves the next free slot in time for it and puts it
in the scheduled set until then, so throughput converges to the limit without busy loops.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aqueue._core.errors import ConfigurationError

__all__ = ["RateLimit"]

_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "h": 3600.0,
          "hour": 3600.0, "d": 86400.0, "day": 86400.0}  # fmt: skip
_PATTERN = re.compile(r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*([a-z]+)\s*$")
#: Without an explicit burst, a limit lets through at once what it allows in this many seconds (at least one job),
#: so high limits do not push every other job of a claim batch through the scheduled set.
_DEFAULT_BURST_WINDOW = 0.01


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` job starts per ``per`` seconds, with bursts of up to ``burst`` jobs.

    Usually given as a string: ``@tasks.task(rate_limit="100/m")``, ``Tasks(..., rate_limit="5000/s")``; see
    :meth:`parse`. The limit holds across every worker of the queue (its state is in Redis). A job over the limit
    is scheduled for its next free slot rather than held by a worker.
    """

    count: int  #: job starts allowed per ``per`` seconds (>= 1)
    per: float  #: the window in seconds (> 0)
    #: Starts that may run back to back before the pace applies; None: what the limit allows in 10 ms (at least 1).
    burst: int | None = None

    def __post_init__(self) -> None:
        if self.count < 1 or not self.per > 0:
            raise ConfigurationError(f"a rate limit needs count >= 1 and per > 0, got {self.count}/{self.per}s")
        if self.burst is not None and self.burst < 1:
            raise ConfigurationError(f"rate limit burst must be >= 1, got {self.burst}")

    @classmethod
    def parse(cls, value: str | RateLimit) -> RateLimit:
        """A limit from ``"COUNT/[N]UNIT"`` text: ``"100/m"``, ``"5000/s"``, ``"10/5s"``, ``"1000/h"``, ``"3/day"``
        (units ``s``, ``m``, ``h``, ``d`` or their long names); a :class:`RateLimit` is returned as is.

        Raises :class:`ConfigurationError` for anything else. The text form has no burst: construct a
        :class:`RateLimit` for one.
        """
        if isinstance(value, RateLimit):
            return value
        match = _PATTERN.match(value.lower()) if isinstance(value, str) else None
        if match is None or match.group(3) not in _UNITS:
            raise ConfigurationError(f"rate limit {value!r}: expected COUNT/[N]UNIT such as '100/m' or '10/5s' "
                                     f"(units: s, m, h, d)")  # fmt: skip
        scale = float(match.group(2)) if match.group(2) not in ("", ".") else 1.0
        return cls(int(match.group(1)), scale * _UNITS[match.group(3)])

    @property
    def interval_ms(self) -> float:
        """Milliseconds between two starts at the limit's pace (``per * 1000 / count``)."""
        return self.per * 1000 / self.count

    @property
    def tolerance_ms(self) -> float:
        """How far ahead of its slot a start may run, in milliseconds: ``(burst - 1) * interval_ms``."""
        burst = self.burst if self.burst is not None else max(1, int(self.count / self.per * _DEFAULT_BURST_WINDOW))
        return (burst - 1) * self.interval_ms

    def _wire(self) -> list[float]:
        """Internal: ``[interval_ms, tolerance_ms]`` as the claim script takes it."""
        return [round(self.interval_ms, 4), round(self.tolerance_ms, 4)]

    def __str__(self) -> str:
        return f"{self.count}/{self.per:g}s" + (f" burst {self.burst}" if self.burst is not None else "")
