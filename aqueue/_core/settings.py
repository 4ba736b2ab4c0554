"""Frozen, validated settings of a queue and of retries."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from aqueue._core.errors import ConfigurationError
from aqueue._core.options import MAX_SECONDS
from aqueue._core.ratelimit import RateLimit

__all__ = ["Priority", "QueueSettings", "RetryPolicy"]


@dataclass(frozen=True, slots=True)
class Priority:
    """One named priority level and its share of reads when levels compete (see :class:`QueueSettings`)."""

    name: str  #: the level's name: letters, digits, ``-`` and ``_``
    weight: int = 1  #: its share of free slots when several levels have jobs waiting (>= 1)

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise ConfigurationError(f"priority name {self.name!r} must be alphanumeric ('-' and '_' allowed)")
        if self.weight < 1:
            raise ConfigurationError(f"priority {self.name!r} weight must be >= 1, got {self.weight}")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how far apart a failing job is tried.

    The delay before attempt ``n + 1`` is ``min(backoff_max, backoff_base * 2 ** (n - 1))``, scaled by a random
    factor in ``[0.5, 1.0]`` (jitter) so that jobs failing together do not retry together. With ``retry_delay``
    every retry waits exactly that long instead. Tasks and single jobs may override each field. The queue's policy
    is ``QueueSettings.retry``.
    """

    max_attempts: int = 3  #: attempts before a job is dead-lettered (the first run counts)
    backoff_base: float = 1.0  #: seconds before the first retry (before jitter)
    backoff_max: float = 300.0  #: cap on the delay in seconds
    #: Seconds before every retry, exactly (no doubling, no jitter); None: the exponential backoff above.
    retry_delay: float | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.backoff_base < 0 or self.backoff_max < 0:
            raise ConfigurationError("backoff_base and backoff_max must be >= 0")
        delay = self.retry_delay
        if delay is not None and (
            isinstance(delay, bool)
            or not isinstance(delay, int | float)
            or not 0 <= delay <= MAX_SECONDS  # also false for NaN
        ):
            raise ConfigurationError(f"retry_delay must be a number of seconds from 0 to ten years, got {delay!r}")


def _default_priorities() -> tuple[Priority, ...]:
    return (Priority("high", 6), Priority("normal", 3), Priority("low", 1))


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """Settings shared by every producer and worker of one queue: give the same ones to every :class:`Tasks` of it.

    ``priorities`` are listed highest first. With ``strict_priority`` a lower level is read only when every higher
    level is empty; otherwise free slots are shared by weight (default 6:3:1) so no level starves. Invalid values
    raise :class:`ConfigurationError`.
    """

    #: The priority levels, highest first (names unique); default ``high`` (6), ``normal`` (3), ``low`` (1).
    priorities: tuple[Priority, ...] = field(default_factory=_default_priorities)
    default_priority: str = "normal"  #: the level of jobs that name none; one of ``priorities``
    strict_priority: bool = False  #: read a level only when every higher level is empty (lower levels may starve)
    retry: RetryPolicy = field(default_factory=RetryPolicy)  #: attempts and backoff of jobs that set none
    #: Seconds a claimed job may go without a heartbeat before another worker takes it back.
    lease: float = 30.0
    #: A job taken back from dead workers more often than this is dead-lettered as a poison message.
    max_reclaims: int = 3
    #: Seconds a succeeded (or cancelled or expired) job's record is kept.
    succeeded_ttl: float = 24 * 3600.0
    dead_ttl: float = 7 * 24 * 3600.0  #: Seconds a dead-lettered job's record is kept.
    events_maxlen: int = 100_000  #: Approximate cap of the events stream (entries).
    dead_maxlen: int = 100_000  #: Approximate cap of the dead-letter stream (entries).
    #: The least level of the log records a worker keeps on the job that emitted them (its record's ``logs``,
    #: capped: see ``docs/extending.md``); None keeps none. Records a logger drops (below its level) are never seen.
    job_log_level: int | None = logging.INFO
    #: The most jobs of one group (``with_options(group=...)``) running at once across every worker of the queue;
    #: None: no limit (groups still take turns). See ``docs/queues.md``.
    group_concurrency: int | None = None
    #: How often jobs of one group may start (``"10/s"`` or a :class:`RateLimit`), each group on its own; None: no
    #: limit. A job over it waits in the scheduled set for its reserved slot, as with a task's ``rate_limit``.
    group_rate_limit: RateLimit | str | None = None

    def __post_init__(self) -> None:
        self._check_groups()
        names = [p.name for p in self.priorities]
        if not names:
            raise ConfigurationError("at least one priority level is required")
        if len(set(names)) != len(names):
            raise ConfigurationError(f"priority names must be unique, got {names}")
        if self.default_priority not in names:
            raise ConfigurationError(f"default_priority {self.default_priority!r} is not one of {names}")
        if self.lease <= 0:
            raise ConfigurationError(f"lease must be > 0 seconds, got {self.lease}")
        if self.max_reclaims < 0:
            raise ConfigurationError("max_reclaims must be >= 0")
        if self.succeeded_ttl <= 0 or self.dead_ttl <= 0:
            raise ConfigurationError("succeeded_ttl and dead_ttl must be > 0")
        if self.events_maxlen < 1 or self.dead_maxlen < 1:
            raise ConfigurationError("events_maxlen and dead_maxlen must be >= 1")
        if self.job_log_level is not None and (not isinstance(self.job_log_level, int) or self.job_log_level < 0):
            raise ConfigurationError(f"job_log_level must be a logging level (an int >= 0) or None, got "
                                     f"{self.job_log_level!r}")  # fmt: skip

    def _check_groups(self) -> None:
        """``group_concurrency`` an int >= 1 or None; ``group_rate_limit`` parsed into a :class:`RateLimit`."""
        limit = self.group_concurrency
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ConfigurationError(f"group_concurrency must be an int >= 1 or None, got {limit!r}")
        if self.group_rate_limit is not None and not isinstance(self.group_rate_limit, RateLimit):
            object.__setattr__(self, "group_rate_limit", RateLimit.parse(self.group_rate_limit))

    @property
    def priority_names(self) -> tuple[str, ...]:
        """The level names, highest first."""
        return tuple(p.name for p in self.priorities)

    def priority_index(self, name: str) -> int:
        """The position of the level called ``name`` (0 is the highest); :class:`ConfigurationError` if there is
        none."""
        for i, p in enumerate(self.priorities):
            if p.name == name:
                return i
        raise ConfigurationError(f"unknown priority {name!r}; levels are {list(self.priority_names)}")
