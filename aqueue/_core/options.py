"""Per-job options (:class:`JobOptions`): what a task's decorator and :meth:`Task.with_options` set, validated once."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal, get_args

import orjson

from aqueue._core.errors import ConfigurationError

__all__ = [
    "KEEP_FOREVER",
    "MAX_ATTEMPTS",
    "MAX_HEADERS",
    "MAX_HEADERS_BYTES",
    "MAX_HEADER_KEY",
    "MAX_JOB_ID",
    "MAX_SECONDS",
    "NO_HEADERS",
    "DedupMode",
    "JobOptions",
    "StoredOptions",
    "check_headers",
    "check_job_id",
    "parse_at",
]


#: How a duplicate is treated: ``drop`` returns the existing job; ``replace`` (debounce) gives the pending job the
#: new arguments and restarts its delay.
DedupMode = Literal["drop", "replace"]
DEDUP_MODES: tuple[str, ...] = get_args(DedupMode)


#: The longest delay, timeout, backoff, TTL or dedup hold a job may ask for (ten years, in seconds; the web API uses
#: the same bound): far beyond any real use, and small enough that every due time stays an exact integer of
#: milliseconds in Redis.
MAX_SECONDS = 10 * 365 * 86_400
#: The most attempts a job may ask for.
MAX_ATTEMPTS = 1_000_000
#: The most headers one job may carry.
MAX_HEADERS = 32
#: The longest header name, in characters.
MAX_HEADER_KEY = 128
#: The most bytes a job's headers may take, encoded as JSON (``{"k":"v",...}``, UTF-8).
MAX_HEADERS_BYTES = 8192
#: The longest job id a caller may choose, in characters.
MAX_JOB_ID = 128
#: ``keep_result=KEEP_FOREVER``: a succeeded job's record never expires (``math.inf``).
KEEP_FOREVER = math.inf
#: The headers of a job that has none: one shared, read-only, empty mapping.
NO_HEADERS: Mapping[str, str] = MappingProxyType({})


def check_headers(value: object, where: str = "headers") -> dict[str, str]:
    """``value`` as a new ``dict`` of job headers, checked: a mapping of non-empty ``str`` names of at most
    :data:`MAX_HEADER_KEY` characters to ``str`` values, at most :data:`MAX_HEADERS` of them, and at most
    :data:`MAX_HEADERS_BYTES` bytes encoded as JSON. Raises :class:`ConfigurationError` naming what is wrong."""
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{where} must be a mapping of str to str, got {type(value).__name__}")
    headers = dict(value)
    if len(headers) > MAX_HEADERS:
        raise ConfigurationError(f"{where}: at most {MAX_HEADERS} headers, got {len(headers)}")
    for key, text in headers.items():
        if not isinstance(key, str) or not 0 < len(key) <= MAX_HEADER_KEY:
            raise ConfigurationError(
                f"{where}: a header name must be a non-empty str of at most {MAX_HEADER_KEY} characters, "
                f"got {key!r:.60}"
            )
        if not isinstance(text, str):
            raise ConfigurationError(f"{where}: header {key!r} must be a str, got {type(text).__name__}")
    try:
        size = len(orjson.dumps(headers))
    except TypeError as exc:  # a lone surrogate: not valid Unicode text
        raise ConfigurationError(f"{where}: not valid Unicode text ({exc})") from None
    if size > MAX_HEADERS_BYTES:
        raise ConfigurationError(f"{where}: {size:,} bytes encoded, at most {MAX_HEADERS_BYTES:,}")
    return headers


def check_job_id(value: object, what: str = "job_id") -> str:
    """``value`` if it is a valid caller-chosen job id (or group name, ``what``): a ``str`` of 1 to
    :data:`MAX_JOB_ID` characters, none of them whitespace or a control character (``"order-42"``,
    ``"user:7/avatar"``). Raises :class:`ConfigurationError` otherwise."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_JOB_ID:
        raise ConfigurationError(
            f"{what} must be a non-empty str of at most {MAX_JOB_ID} characters, got {value!r:.60}"
        )
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ConfigurationError(f"{what} must not contain whitespace or control characters, got {value!r:.60}")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ConfigurationError(f"{what} {value!r:.60} is not valid Unicode text") from None
    return value


@dataclass(frozen=True, slots=True)
class JobOptions:
    """Per-job options, as ``@tasks.task(...)`` and :meth:`Task.with_options` set them; ``None`` means "the
    task's default" (and, where the task sets none, the queue's: :class:`QueueSettings`).

    You rarely build one yourself: pass the options to ``@tasks.task`` or :meth:`Task.with_options`, which also
    accept :class:`~datetime.timedelta` durations. Durations here are seconds. Invalid values raise
    :class:`ConfigurationError` at construction.

    ``dedup_key``: while a job holding this key exists (until it finishes, or for ``dedup_ttl`` seconds from
    enqueue when given), enqueueing another job with the key does not create one: ``dedup_mode`` ``drop`` returns
    the existing job's handle, ``replace`` replaces a still-pending job's arguments and restarts its delay.
    ``ttl``: a job not started within ``ttl`` seconds of becoming due is never run (status ``expired``).
    ``job_id``: the job's id, chosen by the caller: while a record with that id exists (whatever its status), an
    enqueue with it creates nothing and returns the existing job's handle (``Job.duplicate`` is True).
    ``keep_result``: how long a succeeded job's record (and so its result) is kept; ``retry_delay``: a constant
    delay before every retry, replacing the exponential backoff.
    """

    #: Priority level name (one of the queue's ``QueueSettings.priorities``); None: the queue's default level.
    priority: str | None = None
    delay: float = 0.0  #: seconds from enqueue until the job is due
    #: Attempts before the job is dead-lettered; None: the queue's ``RetryPolicy.max_attempts``.
    max_attempts: int | None = None
    timeout: float | None = None  #: seconds one attempt may run before it fails; None: no limit
    backoff_base: float | None = None  #: first retry delay in seconds, doubled each attempt (see :class:`RetryPolicy`)
    backoff_max: float | None = None  #: cap on the retry delay in seconds
    dedup_key: str | None = None  #: at most one unfinished job holds a key at a time (see above)
    dedup_ttl: float | None = None  #: seconds from enqueue the key is held; None: until the job finishes
    dedup_mode: DedupMode | None = None  #: ``drop`` (the default) or ``replace`` (debounce)
    ttl: float | None = None  #: seconds after becoming due within which the job must start, else ``expired``
    #: True: a job whose worker died (or stalled past the lease) during its last attempt is taken back and run again
    #: anyway (still at most ``QueueSettings.max_reclaims`` times); None/False: such a job is dead-lettered instead,
    #: so a ``max_attempts=1`` job runs at most once.
    rerun_lost: bool | None = None
    #: Job headers (a ``str`` → ``str`` map carried with the job, see ``docs/extending.md``); merged key by key:
    #: :meth:`merged` keeps these and adds (or replaces) the override's. None: no headers of its own.
    headers: Mapping[str, str] | None = None
    #: The job's id, chosen by the caller (see :func:`check_job_id`); None: a fresh 32-character hex id. Set it per
    #: job (:meth:`Task.with_options`), not on a task: every job of the task would be the same job.
    job_id: str | None = None
    #: Seconds a succeeded job's record (its result) is kept: ``0`` deletes it as the job succeeds (a caller
    #: already waiting in ``Job.result()`` still gets the value), :data:`KEEP_FOREVER` keeps it until deleted;
    #: None: the queue's ``QueueSettings.succeeded_ttl``. Other final statuses keep the queue's TTLs.
    keep_result: float | None = None
    #: Seconds before every retry, exactly (no doubling, no jitter); None: the queue's ``RetryPolicy.retry_delay``,
    #: or the exponential backoff. A task's ``Retry(after=...)`` wins over both.
    retry_delay: float | None = None
    #: When the job becomes due: an aware :class:`~datetime.datetime` (instead of ``delay``; a past time is due at
    #: once). Turned into a delay on the producer's clock when the job is enqueued.
    at: datetime | None = None
    #: The job's group (a tenant, say): grouped jobs of a queue are served in turns, one group after another, so a
    #: group with many jobs waiting cannot hold back one with few (``QueueSettings.group_concurrency`` and
    #: ``group_rate_limit`` limit each group). The same rules as a ``job_id``; None: no group (served as today).
    group: str | None = None
    #: The queue to enqueue the job on instead of the task's own (its registry routes it; the queue's workers must
    #: have the task registered, e.g. with :meth:`Tasks.include`). None: the task's queue.
    queue: str | None = None

    def __post_init__(self) -> None:
        if self.headers is not None:
            object.__setattr__(self, "headers", MappingProxyType(check_headers(self.headers)) or None)
        for name in ("delay", "timeout", "backoff_base", "backoff_max", "dedup_ttl", "ttl"):
            _check_seconds(name, getattr(self, name))
        _check_attempts(self.max_attempts)
        _check_dedup(self.dedup_key, self.dedup_ttl, self.dedup_mode)
        if self.job_id is not None:
            check_job_id(self.job_id)
        _check_routing(self.group, self.queue)
        _check_seconds("retry_delay", self.retry_delay)
        _check_keep(self.keep_result)
        if self.ttl is not None and self.ttl < 0.001:
            raise ConfigurationError(f"ttl must be at least 0.001 seconds, got {self.ttl}")
        if self.rerun_lost is not None and not isinstance(self.rerun_lost, bool):
            raise ConfigurationError(f"rerun_lost must be True or False, got {self.rerun_lost!r}")
        if self.delay < 0:
            raise ConfigurationError(f"delay must be >= 0 seconds, got {self.delay}")
        _check_at(self.at, self.delay)
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigurationError(f"timeout must be > 0 seconds, got {self.timeout}")
        for name in ("backoff_base", "backoff_max", "retry_delay"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigurationError(f"{name} must be >= 0, got {value}")

    def merged(self, override: JobOptions) -> JobOptions:
        """These options with every field that ``override`` sets (not None; for ``delay``, not 0) replaced; a
        ``delay`` replaces an ``at``, and an ``at`` a ``delay``.

        :meth:`Task.with_options` also replaces the delay when it is given as 0.
        """
        kept = {
            name: getattr(self, name) if getattr(override, name) is None else getattr(override, name)
            for name in _MERGED_AS_IS
        }
        headers = (
            {**self.headers, **override.headers}
            if self.headers and override.headers
            else (override.headers or self.headers)
        )
        delay = override.delay or self.delay
        if override.delay:
            kept["at"] = None  # a delay replaces an at=, and an at= a delay
        elif override.at is not None:
            delay = 0.0
        return JobOptions(delay=delay, headers=headers, **kept)

    def _script_options(self) -> dict[str, Any] | None:
        """What the enqueue script applies (dedup, ttl, a caller's job id, result retention), in its short field
        names; None when nothing is set."""
        out: dict[str, Any] = {}
        if self.job_id is not None:
            out["id"] = 1  # the id is the caller's: the script checks that no record has it
        if self.keep_result is not None:
            out["kr"] = _keep_ms(self.keep_result)
        if self.dedup_key is not None:
            out["dk"] = self.dedup_key
            out["dm"] = self.dedup_mode or "drop"
            out["dt"] = round(self.dedup_ttl * 1000) if self.dedup_ttl is not None else 0
        if self.ttl is not None:
            out["x"] = round(self.ttl * 1000)
        if self.group is not None:
            out["g"] = self.group
        return out or None


def _check_routing(group: str | None, queue: str | None) -> None:
    """A job's ``group`` (the rules of a ``job_id``) and ``queue`` (a queue name), when given."""
    if group is not None:
        check_job_id(group, "group")
    if queue is not None and (not isinstance(queue, str) or not queue or any(c in queue for c in "{}: \t\n")):
        raise ConfigurationError(f"queue name {queue!r} must be non-empty without braces, ':' or spaces")


def _check_seconds(name: str, value: object) -> None:
    """``value`` is None or a finite number of seconds within :data:`MAX_SECONDS` either way."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or abs(value) > MAX_SECONDS:
        raise ConfigurationError(f"{name} must be a finite number of seconds up to {MAX_SECONDS}, got {value}")


#: The fields :meth:`JobOptions.merged` takes from the override unless it leaves them None (all but delay, headers).
_MERGED_AS_IS = tuple(f.name for f in fields(JobOptions) if f.name not in ("delay", "headers"))


def parse_at(text: str) -> datetime:
    """An ``at`` given as text (REST, CLI): ISO 8601 with its UTC offset (``2026-12-24T09:00:00Z``). Raises
    :class:`ValueError` with the message to show."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected an ISO 8601 time such as 2026-12-24T09:00:00Z, got {text!r}") from None
    if value.tzinfo is None:
        raise ValueError(f"expected a time with its UTC offset (e.g. {text}Z or {text}+01:00), got {text!r}")
    return value


def _check_at(at: datetime | None, delay: float) -> None:
    if at is None:
        return
    if not isinstance(at, datetime):
        raise ConfigurationError(f"at must be a datetime, got {type(at).__name__}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ConfigurationError(
            f"at must be an aware datetime (with a time zone), got the naive {at.isoformat()}: e.g. "
            "datetime(2026, 12, 24, 9, 0, tzinfo=UTC)"
        )
    if delay:
        raise ConfigurationError("give at= or delay=, not both")


def _keep_ms(keep: float) -> int:
    """``keep_result`` as the scripts take it: milliseconds, or -1 for :data:`KEEP_FOREVER`."""
    return -1 if keep == KEEP_FOREVER else round(keep * 1000)


def _check_keep(value: object) -> None:
    if value is None or value == KEEP_FOREVER:
        return
    _check_seconds("keep_result", value)
    if value < 0:  # type: ignore[operator]  # a number: _check_seconds said so
        raise ConfigurationError(f"keep_result must be >= 0 seconds (or KEEP_FOREVER), got {value}")


def _check_attempts(value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"max_attempts must be an integer, got {value!r}")
    if value > MAX_ATTEMPTS:
        raise ConfigurationError(f"max_attempts must be <= {MAX_ATTEMPTS}, got {value}")
    if value < 1:
        raise ConfigurationError(f"max_attempts must be >= 1, got {value}")


def _check_dedup(key: object, ttl: float | None, mode: object) -> None:
    if key is not None:
        if not isinstance(key, str) or not 0 < len(key) <= 512:
            raise ConfigurationError("dedup_key must be a non-empty string of at most 512 characters")
        try:
            key.encode()
        except UnicodeEncodeError:
            raise ConfigurationError(f"dedup_key {key!r} is not valid Unicode text") from None
    if ttl is not None and ttl < 0.001:  # 0 ms would mean "hold until the job finishes"
        raise ConfigurationError(f"dedup_ttl must be at least 0.001 seconds, got {ttl}")
    if mode is not None and mode not in DEDUP_MODES:
        raise ConfigurationError(f"dedup_mode must be one of {', '.join(DEDUP_MODES)}, got {mode!r}")


@dataclass(frozen=True, slots=True)
class StoredOptions:
    """A job's options as its record stores them (:attr:`JobRecord.options`): resolved when it was enqueued, the
    queue's defaults filled in. A value the record lacks or holds damaged reads as None (False for the flags)."""

    max_attempts: int | None = None  #: attempts before the job is dead-lettered
    timeout: float | None = None  #: seconds one attempt may run; None: no limit
    backoff_base: float | None = None  #: first retry delay of the exponential backoff, in seconds
    backoff_max: float | None = None  #: cap on that delay, in seconds
    retry_delay: float | None = None  #: the constant delay before every retry, when the job has one
    #: Seconds its record is kept once succeeded (:data:`KEEP_FOREVER`: never expires); None: the queue's TTL.
    keep_result: float | None = None
    rerun_lost: bool = False  #: a job lost with its worker runs again even on its last attempt
    chosen_id: bool = False  #: the job's id was the caller's ``job_id``

    def as_json(self) -> dict[str, Any]:
        """The options as a JSON-ready ``dict`` (for the REST job view): the field names as keys, ``keep_result``
        ``"forever"`` for :data:`KEEP_FOREVER` (JSON has no infinity)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.keep_result == KEEP_FOREVER:
            out["keep_result"] = "forever"
        return out

    @classmethod
    def _from_spec(cls, spec: Mapping[str, Any]) -> StoredOptions:
        """Decode the ``"o"`` of a decoded spec; tolerant of old and damaged records."""
        o = spec.get("o")
        if not isinstance(o, Mapping):
            return cls()
        backoff = o.get("backoff")
        base, cap = backoff if isinstance(backoff, list) and len(backoff) == 2 else (None, None)
        keep = _seconds_or_none(o.get("keep_result"))
        attempts = o.get("max_attempts")
        return cls(
            max_attempts=attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else None,
            timeout=_seconds_or_none(o.get("timeout")),
            backoff_base=_seconds_or_none(base),
            backoff_max=_seconds_or_none(cap),
            retry_delay=_seconds_or_none(o.get("retry_delay")),
            keep_result=KEEP_FOREVER if keep == -1 else keep,
            rerun_lost=o.get("rerun_lost") is True,
            chosen_id=o.get("named") is True,
        )


def _seconds_or_none(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)
