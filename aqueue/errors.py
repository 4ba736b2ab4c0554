"""Errors raised by aqueue.

Every error derives from :class:`AqueueError`, so ``except aqueue.AqueueError`` catches them all::

    AqueueError
    ├── ConfigurationError      bad settings, options, URL or task registration
    ├── SerializationError      arguments or a result that JSON cannot carry
    ├── BrokerUnavailable       Redis did not answer (connection refused, reset, timed out, cluster down, out of memory)
    ├── UnknownJob              no record for a job id (never existed, or retention expired it)
    ├── ResultTimeout           ``Job.result(timeout=…)`` ran out of time (also a ``TimeoutError``)
    ├── JobFailed               the job ended dead-lettered; carries the error and traceback
    ├── JobCancelled            the job was cancelled before it could finish
    ├── Retry                   raised by a task: retry this job after a given delay (e.g. a 429's Retry-After)
    └── Reject                  raised by a task: no further attempts, dead-letter now (e.g. a 400)
"""

from __future__ import annotations

import logging

__all__ = [
    "AqueueError",
    "BrokerUnavailable",
    "ConfigurationError",
    "JobCancelled",
    "JobFailed",
    "Reject",
    "ResultTimeout",
    "Retry",
    "SerializationError",
    "UnknownJob",
]


class AqueueError(Exception):
    """Base class of every error aqueue raises."""


class ConfigurationError(AqueueError, ValueError):
    """A setting, option, URL or task registration is invalid."""


class SerializationError(AqueueError, TypeError):
    """A value cannot be encoded as JSON (task arguments at enqueue time, or a task's result)."""


class BrokerUnavailable(AqueueError, ConnectionError):
    """Redis could not be reached, or refused the write (out of memory, cluster down); nothing was written.

    While the connection's circuit breaker is open (Redis has failed repeatedly), calls fail at once with this error
    without trying Redis, except one probe now and then; ``quiet`` is then True: the breaker has already logged the
    outage once, so retry loops log it at debug level only (no log storm).
    """

    quiet: bool = False

    @property
    def log_level(self) -> int:
        """WARNING for a fresh failure, DEBUG while the outage is already reported."""
        return logging.DEBUG if self.quiet else logging.WARNING


class UnknownJob(AqueueError, LookupError):
    """No record exists for this job id (never enqueued, or expired by retention)."""


class ResultTimeout(AqueueError, TimeoutError):
    """The job did not finish within the time ``Job.result`` was given."""


class JobFailed(AqueueError):
    """The job exhausted its attempts (or could not run) and was dead-lettered."""

    def __init__(self, job_id: str, error: str, traceback: str = "") -> None:
        super().__init__(f"job {job_id} failed: {error}")
        self.job_id = job_id
        self.error = error
        self.traceback = traceback


class JobCancelled(AqueueError):
    """The job was cancelled and will not run again."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} was cancelled")
        self.job_id = job_id


class Retry(AqueueError):
    """Raise inside a task to retry its job ``after`` seconds from now (``None``: the task's usual backoff).

    The attempt counts: once the job has had ``max_attempts`` it is dead-lettered, with this error's message.
    """

    def __init__(self, message: str = "", *, after: float | None = None) -> None:
        if after is not None and not (
            isinstance(after, int | float) and not isinstance(after, bool) and 0 <= after <= 86_400 * 366
        ):
            raise ConfigurationError(f"Retry(after=…) must be seconds from 0 to a year, got {after!r}")
        super().__init__(message or (f"retry in {after} s" if after is not None else "retry"))
        self.after = after


class Reject(AqueueError):
    """Raise inside a task to dead-letter its job now, whatever attempts it has left (the input is wrong and
    retrying cannot help). The message is the dead-letter reason."""
