"""Per-job options (:class:`JobOptions`): what a task's decorator and :meth:`Task.with_options` set, validated once."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, get_args

import orjson

from aqueue._core.errors import ConfigurationError

__all__ = [
    "MAX_ATTEMPTS",
    "MAX_HEADERS",
    "MAX_HEADERS_BYTES",
    "MAX_HEADER_KEY",
    "MAX_SECONDS",
    "NO_HEADERS",
    "DedupMode",
    "JobOptions",
    "check_headers",
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

    def __post_init__(self) -> None:
        if self.headers is not None:
            object.__setattr__(self, "headers", MappingProxyType(check_headers(self.headers)) or None)
        for name in ("delay", "timeout", "backoff_base", "backoff_max", "dedup_ttl", "ttl"):
            _check_seconds(name, getattr(self, name))
        _check_attempts(self.max_attempts)
        _check_dedup(self.dedup_key, self.dedup_ttl, self.dedup_mode)
        if self.ttl is not None and self.ttl < 0.001:
            raise ConfigurationError(f"ttl must be at least 0.001 seconds, got {self.ttl}")
        if self.rerun_lost is not None and not isinstance(self.rerun_lost, bool):
            raise ConfigurationError(f"rerun_lost must be True or False, got {self.rerun_lost!r}")
        if self.delay < 0:
            raise ConfigurationError(f"delay must be >= 0 seconds, got {self.delay}")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigurationError(f"timeout must be > 0 seconds, got {self.timeout}")
        for name in ("backoff_base", "backoff_max"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigurationError(f"{name} must be >= 0, got {value}")

    def merged(self, override: JobOptions) -> JobOptions:
        """These options with every field that ``override`` sets (not None; for ``delay``, not 0) replaced.

        :meth:`Task.with_options` also replaces the delay when it is given as 0.
        """
        return JobOptions(
            priority=override.priority if override.priority is not None else self.priority,
            delay=override.delay or self.delay,
            max_attempts=override.max_attempts if override.max_attempts is not None else self.max_attempts,
            timeout=override.timeout if override.timeout is not None else self.timeout,
            backoff_base=override.backoff_base if override.backoff_base is not None else self.backoff_base,
            backoff_max=override.backoff_max if override.backoff_max is not None else self.backoff_max,
            dedup_key=override.dedup_key if override.dedup_key is not None else self.dedup_key,
            dedup_ttl=override.dedup_ttl if override.dedup_ttl is not None else self.dedup_ttl,
            dedup_mode=override.dedup_mode if override.dedup_mode is not None else self.dedup_mode,
            ttl=override.ttl if override.ttl is not None else self.ttl,
            rerun_lost=override.rerun_lost if override.rerun_lost is not None else self.rerun_lost,
            headers={**self.headers, **override.headers}
            if self.headers and override.headers
            else (override.headers or self.headers),
        )

    def _script_options(self) -> dict[str, Any] | None:
        """Internal: what the enqueue script applies (dedup, ttl), in its short field names; None when nothing is
        set."""
        out: dict[str, Any] = {}
        if self.dedup_key is not None:
            out["dk"] = self.dedup_key
            out["dm"] = self.dedup_mode or "drop"
            out["dt"] = round(self.dedup_ttl * 1000) if self.dedup_ttl is not None else 0
        if self.ttl is not None:
            out["x"] = round(self.ttl * 1000)
        return out or None


def _check_seconds(name: str, value: object) -> None:
    """``value`` is None or a finite number of seconds within :data:`MAX_SECONDS` either way."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or abs(value) > MAX_SECONDS:
        raise ConfigurationError(f"{name} must be a finite number of seconds up to {MAX_SECONDS}, got {value}")


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
