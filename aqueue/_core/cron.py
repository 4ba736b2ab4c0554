"""When periodic jobs are due: pure schedule arithmetic (no Redis, no asyncio).

A :class:`CronSchedule` is either a 5-field cron expression evaluated in an IANA time zone, or a fixed
interval aligned to the Unix epoch. Every instant is an integer number of milliseconds since the Unix epoch,
so every process computes exactly the same ticks::

    >>> s = CronSchedule(name="report", task="send_report", cron="*/5 * * * *")
    >>> s.next_after(0)  # 1970-01-01T00:05Z
    300000
    >>> CronSchedule(name="ping", task="ping", every=30).next_after(29_999)
    30000

Daylight-saving time is handled in the schedule's zone: a local time skipped by a spring-forward change runs
at the first instant after the gap (``30 2 * * *`` runs at 03:00 that day), and a local time repeated by a
fall-back change runs once (at its first occurrence) unless the hour field is ``*``, in which case the
expression follows real time and runs in both occurrences (``*/30 * * * *`` keeps firing every 30 minutes).
"""

from __future__ import annotations

import copy
import datetime
import functools
import math
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from aqueue._core.errors import ConfigurationError

__all__ = ["CronSchedule", "parse_every"]

_NAME_RE = re.compile(r"[^\s:,]+")
_HOUR_FIELD = 1  # index into croniter.expanded
# Any fixed instant works for the "does this expression ever match?" check done at construction.
_PROBE_MS = 946_684_800_000  # 2000-01-01T00:00Z


def parse_every(value: float | datetime.timedelta) -> float:
    """Return an interval in seconds from a number of seconds or a :class:`~datetime.timedelta`.

    Raises :class:`ConfigurationError` unless the interval is a finite number of at least one millisecond.
    """
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ConfigurationError(f"every must be a number of seconds or a timedelta, not {type(value).__name__}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigurationError(f"every must be a positive, finite number of seconds, got {value!r}")
    if round(seconds * 1000) < 1:
        raise ConfigurationError(f"every must be at least 1 ms, got {value!r}")
    return seconds


@functools.lru_cache(maxsize=256)
def _parsed(expression: str) -> croniter:
    """A parsed template for ``expression``; callers copy it (parsing dominates croniter's cost)."""
    return croniter(expression, 0.0)


def _zone(key: str) -> ZoneInfo:
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ConfigurationError(f"unknown time zone {key!r}") from exc


def _seconds_to_ms(seconds: float) -> int:
    return round(seconds * 1000)


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """When a periodic job is due: a 5-field cron expression in a time zone, or a fixed interval.

    :meth:`Tasks.cron` and :meth:`Tasks.add_cron` build it; build one yourself only to compute ticks. Exactly one
    of ``cron`` and ``every`` is given. ``every`` ticks fall on multiples of the interval since the Unix epoch
    (rounded to whole milliseconds), independent of ``tz``. ``catch_up`` is how many of the most recent missed
    ticks to run after downtime (0: none). Arguments for the task are held by the :class:`CronJob`. Invalid values
    raise :class:`ConfigurationError`.

    Daylight-saving time is handled in ``tz``: a local time skipped by a spring-forward change runs at the first
    instant after the gap, and a local time repeated by a fall-back change runs once, unless the hour field is
    ``*`` (then the expression follows real time and fires in both occurrences).
    """

    name: str  #: the schedule's name, unique in the queue (no ``:``, ``,`` or whitespace)
    task: str  #: name of the task each tick enqueues
    cron: str | None = None  #: a 5-field cron expression (minute hour day month weekday), or an ``@hourly``-style alias
    every: float | None = None  #: a fixed interval in seconds (at least 1 ms)
    tz: str = "UTC"  #: IANA time zone the cron expression is read in
    catch_up: int = 0  #: how many of the latest ticks missed during downtime still run

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise ConfigurationError(f"cron job name must be non-empty without ':', ',' or whitespace: {self.name!r}")
        if not isinstance(self.task, str) or not self.task:
            raise ConfigurationError(f"cron job {self.name!r}: task must be a non-empty task name")
        if (self.cron is None) == (self.every is None):
            raise ConfigurationError(f"cron job {self.name!r}: give exactly one of cron= and every=")
        if isinstance(self.catch_up, bool) or not isinstance(self.catch_up, int) or self.catch_up < 0:
            raise ConfigurationError(f"cron job {self.name!r}: catch_up must be an int >= 0, got {self.catch_up!r}")
        if not isinstance(self.tz, str):
            raise ConfigurationError(f"cron job {self.name!r}: tz must be an IANA zone name, got {self.tz!r}")
        _zone(self.tz)
        if self.every is not None:
            object.__setattr__(self, "every", parse_every(self.every))
        else:
            object.__setattr__(self, "cron", self._checked_expression())
            self._check_it_matches()

    def _checked_expression(self) -> str:
        """The cron expression with its whitespace normalised; :class:`ConfigurationError` if it is not valid."""
        if not isinstance(self.cron, str):
            raise ConfigurationError(f"cron job {self.name!r}: cron must be a string, got {self.cron!r}")
        expression = " ".join(self.cron.split())
        fields = expression.split(" ")
        if not (len(fields) == 5 or (len(fields) == 1 and expression.startswith("@"))):
            raise ConfigurationError(
                f"cron job {self.name!r}: {self.cron!r} is not a 5-field cron expression (min hour day month weekday)"
            )
        try:
            _parsed(expression)
        except (CroniterError, ValueError, TypeError, KeyError) as exc:
            raise ConfigurationError(f"cron job {self.name!r}: invalid cron expression {self.cron!r}: {exc}") from exc
        return expression

    def _check_it_matches(self) -> None:
        try:
            self.next_after(_PROBE_MS)
        except CroniterBadDateError as exc:
            raise ConfigurationError(f"cron job {self.name!r}: cron expression {self.cron!r} never matches") from exc

    # -- public API ---------------------------------------------------------------------------------------------

    def next_after(self, ms: int) -> int:
        """The first tick strictly after ``ms`` (Unix milliseconds), as Unix milliseconds.

        ``CronSchedule("ping", "ping", every=30).next_after(29_999)`` is ``30000``.
        """
        if self.every is not None:
            period = _seconds_to_ms(self.every)
            return (ms // period + 1) * period
        # 5-field ticks fall on whole minutes, so "after the whole second containing ms" is "after ms".
        it = self._iterator(ms // 1000)
        while True:
            tick = it.get_next(float)
            if not self._skipped(tick):
                return _seconds_to_ms(tick)

    def ticks_between(self, after_ms: int, until_ms: int, limit: int) -> list[int]:
        """Ticks ``t`` with ``after_ms < t <= until_ms``: the most recent ``limit`` of them, ascending.

        Cost is proportional to ``limit``, not to the length of the gap.
        """
        if limit <= 0 or until_ms <= after_ms:
            return []
        if self.every is not None:
            period = _seconds_to_ms(self.every)
            last = until_ms // period
            first = max(after_ms // period + 1, last - limit + 1)
            return [k * period for k in range(first, last + 1)]
        # get_prev is strictly before its start: start one second past until_ms to include a tick at until_ms.
        it = self._iterator(until_ms // 1000 + 1)
        found: list[int] = []
        while len(found) < limit:
            try:
                tick = it.get_prev(float)
            except CroniterBadDateError:
                break
            tick_ms = _seconds_to_ms(tick)
            if tick_ms <= after_ms:
                break
            if not self._skipped(tick):
                found.append(tick_ms)
        found.reverse()
        return found

    def describe(self) -> str:
        """A short human description: ``cron '*/5 * * * *' (UTC)`` or ``every 30s``."""
        if self.every is not None:
            return f"every {self.every:g}s"
        return f"cron {self.cron!r} ({self.tz})"

    # -- internals ----------------------------------------------------------------------------------------------

    def _iterator(self, start_seconds: int) -> croniter:
        assert self.cron is not None
        it = copy.copy(_parsed(self.cron))  # shares the (read-only) parsed fields, owns its cursor
        it.set_current(datetime.datetime.fromtimestamp(start_seconds, _zone(self.tz)), force=True)
        return it

    def _skipped(self, tick_seconds: float) -> bool:
        """True for the second occurrence of a repeated local time when the hour field is fixed.

        croniter yields a repeated wall-clock time in both folds; like Vixie cron, an expression with a
        restricted hour (``30 2 * * *``) runs once, while ``*`` in the hour field follows real time.
        """
        assert self.cron is not None
        if _parsed(self.cron).expanded[_HOUR_FIELD] == ["*"]:
            return False
        return datetime.datetime.fromtimestamp(tick_seconds, _zone(self.tz)).fold == 1
