"""When periodic jobs are due: pure schedule arithmetic (no Redis, no asyncio).

A :class:`CronSchedule` is either a cron expression (5 fields, or 6 with seconds first) evaluated in an IANA time
zone, or a fixed interval aligned to the Unix epoch. Every instant is an integer number of milliseconds since the
Unix epoch, so every process computes exactly the same ticks::

    >>> s = CronSchedule(name="report", task="send_report", cron="*/5 * * * *")
    >>> s.next_after(0)  # 1970-01-01T00:05Z
    300000
    >>> CronSchedule(name="ping", task="ping", every=30).next_after(29_999)
    30000
    >>> CronSchedule(name="fast", task="poll", cron="*/2 * * * * *").next_after(2_500)  # seconds first
    4000

Daylight-saving time is handled in the schedule's zone: a local time skipped by a spring-forward change runs
at the first instant after the gap (``30 2 * * *`` runs at 03:00 that day), and a local time repeated by a
fall-back change runs once (at its first occurrence) unless the hour field is ``*``, in which case the
expression follows real time and runs in both occurrences (``*/30 * * * *`` keeps firing every 30 minutes).

:class:`CronStatus` is what the queue knows of one schedule at a moment: its next and last run, read from the
state the workers record in Redis (:meth:`Tasks.cron_jobs`).
"""

from __future__ import annotations

import copy
import datetime
import functools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from aqueue._core.errors import ConfigurationError

__all__ = ["STARTUP_WINDOW", "CronSchedule", "CronStatus", "cron_statuses", "parse_every"]

#: Seconds during which a schedule's startup run (``run_at_startup``) is not repeated: workers that start within
#: this long of the last startup run (Redis clock) do not enqueue another one.
STARTUP_WINDOW = 60.0

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
    """A parsed template for ``expression``; callers copy it (parsing dominates croniter's cost).

    croniter reads a 6th field as seconds at the end unless told otherwise; ours come first, as in Quartz and
    most 6-field cron dialects.
    """
    return croniter(expression, 0.0, second_at_beginning=len(expression.split(" ")) == 6)


def _zone(key: str) -> ZoneInfo:
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ConfigurationError(f"unknown time zone {key!r}") from exc


def _seconds_to_ms(seconds: float) -> int:
    return round(seconds * 1000)


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """When a periodic job is due: a cron expression in a time zone, or a fixed interval.

    :meth:`Tasks.cron` and :meth:`Tasks.add_cron` build it; build one yourself only to compute ticks. Exactly one
    of ``cron`` and ``every`` is given. ``cron`` has 5 fields (minute hour day month weekday), or 6 with seconds
    first (``*/2 * * * * *``: every 2 seconds), or is an ``@hourly``-style alias. ``every`` ticks fall on
    multiples of the interval since the Unix epoch (rounded to whole milliseconds), independent of ``tz``.
    ``catch_up`` is how many of the most recent missed ticks to run after downtime (0: none). ``run_at_startup``
    also enqueues one run when a worker starts, unless one was enqueued less than :data:`STARTUP_WINDOW` seconds
    before (so workers started together run it once). Arguments for the task are held by the :class:`CronJob`.
    Invalid values raise :class:`ConfigurationError`.

    Daylight-saving time is handled in ``tz``: a local time skipped by a spring-forward change runs at the first
    instant after the gap, and a local time repeated by a fall-back change runs once, unless the hour field is
    ``*`` (then the expression follows real time and fires in both occurrences).
    """

    name: str  #: the schedule's name, unique in the queue (no ``:``, ``,`` or whitespace)
    task: str  #: name of the task each tick enqueues
    cron: str | None = None  #: a cron expression: 5 fields, 6 with seconds first, or an ``@hourly``-style alias
    every: float | None = None  #: a fixed interval in seconds (at least 1 ms)
    tz: str = "UTC"  #: IANA time zone the cron expression is read in
    catch_up: int = 0  #: how many of the latest ticks missed during downtime still run
    run_at_startup: bool = False  #: also run once when workers start (once per :data:`STARTUP_WINDOW`)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise ConfigurationError(f"cron job name must be non-empty without ':', ',' or whitespace: {self.name!r}")
        if not isinstance(self.task, str) or not self.task:
            raise ConfigurationError(f"cron job {self.name!r}: task must be a non-empty task name")
        if (self.cron is None) == (self.every is None):
            raise ConfigurationError(f"cron job {self.name!r}: give exactly one of cron= and every=")
        if isinstance(self.catch_up, bool) or not isinstance(self.catch_up, int) or self.catch_up < 0:
            raise ConfigurationError(f"cron job {self.name!r}: catch_up must be an int >= 0, got {self.catch_up!r}")
        if not isinstance(self.run_at_startup, bool):
            raise ConfigurationError(
                f"cron job {self.name!r}: run_at_startup must be a bool, got {self.run_at_startup!r}"
            )
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
        if not (len(fields) in (5, 6) or (len(fields) == 1 and expression.startswith("@"))):
            raise ConfigurationError(
                f"cron job {self.name!r}: {self.cron!r} is not a cron expression of 5 fields (minute hour day month "
                "weekday) or 6 (second minute hour day month weekday)"
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
        # Ticks fall on whole seconds, so "after the whole second containing ms" is "after ms".
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


def _instant(ms_text: str | None) -> datetime.datetime | None:
    """A recorded Unix-ms field as an aware UTC datetime; None when absent, zero or unreadable."""
    try:
        ms = int(ms_text or 0)
    except ValueError:
        return None
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC) if ms > 0 else None


@dataclass(frozen=True, slots=True)
class CronStatus:
    """One periodic job as the queue knows it: its schedule and when it last ran and runs next.

    ``schedule`` is None for a schedule only other processes register (its workers recorded it in Redis); then
    ``description`` is what they recorded. Times are aware UTC datetimes on the clocks of the workers that
    computed them (``startup_run``: the Redis clock); None before any worker recorded one.
    """

    name: str  #: the schedule's name
    task: str  #: the task each run enqueues
    description: str  #: ``cron '*/5 * * * *' (UTC)`` or ``every 30s``
    schedule: CronSchedule | None  #: the schedule when this registry declares it, else None
    next_run: datetime.datetime | None  #: the next tick the workers computed
    last_run: datetime.datetime | None  #: the latest tick whose job was enqueued
    last_job: str | None  #: id of the job most recently enqueued by a tick or a startup run
    startup_run: datetime.datetime | None  #: when the latest startup run was enqueued (``run_at_startup``)

    @property
    def registered(self) -> bool:
        """Whether the registry that read this declares the schedule."""
        return self.schedule is not None


def cron_statuses(local: Iterable[CronSchedule], recorded: Mapping[str, Mapping[str, str]]) -> list[CronStatus]:
    """The schedules declared here merged by name with the state workers recorded (``Broker.cron_state()``), which
    also holds schedules declared only elsewhere; sorted by name."""
    mine = {s.name: s for s in local}
    out = []
    for name in sorted(mine.keys() | recorded.keys()):
        state, schedule = recorded.get(name, {}), mine.get(name)
        out.append(
            CronStatus(
                name=name,
                task=schedule.task if schedule is not None else state.get("task", ""),
                description=schedule.describe() if schedule is not None else state.get("schedule", ""),
                schedule=schedule,
                next_run=_instant(state.get("next")),
                last_run=_instant(state.get("last")),
                last_job=state.get("job") or None,
                startup_run=_instant(state.get("startup")),
            )
        )
    return out
