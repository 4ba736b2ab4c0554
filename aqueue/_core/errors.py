"""Errors raised by aqueue.

Every error aqueue raises derives from :class:`AqueueError`, so ``except aqueue.AqueueError`` catches them all::

    AqueueError
    ├── ConfigurationError      bad settings, options, URL or task registration (also a ValueError)
    ├── SerializationError      arguments or a result that JSON cannot carry (also a TypeError)
    ├── InvalidArguments        arguments that do not fit the task's signature (also a TypeError)
    ├── BrokerUnavailable       Redis did not answer (connection refused, reset, timed out, cluster down, out of memory)
    │   └── PartialEnqueue      ``enqueue_many`` wrote some jobs, not all: ``.written`` handles, ``.not_written`` specs
    ├── PermissionDenied        Redis refused this client: wrong password, or an ACL user lacking a command or key
    ├── UnknownJob              no record for a job id (never existed, or retention expired it)
    ├── ResultTimeout           ``Job.result(timeout=…)`` ran out of time (also a TimeoutError)
    ├── LifespanError           a worker's lifespan (``@tasks.lifespan``) failed while entering; its cause is chained
    └── NoResult                ``Job.result()``: the job finished without a result
        ├── JobFailed           it ended dead-lettered or expired; carries the error and traceback
        └── JobCancelled        it was cancelled (or, as a workflow step, skipped)

A task raises two signals of its own. They are not errors of aqueue: they derive from :class:`TaskSignal`, not
:class:`AqueueError`, so a task's own ``except aqueue.AqueueError:`` (around an enqueue, say) never swallows them::

    TaskSignal
    ├── Retry                   retry this job after a given delay (e.g. a 429's Retry-After)
    └── Reject                  no further attempts, dead-letter now (e.g. a 400)

:class:`PartialEnqueue` is defined with the producer (``aqueue/_core/producer.py``), whose handles it carries.
"""

from __future__ import annotations

import logging

__all__ = [
    "AqueueError",
    "BrokerUnavailable",
    "ConfigurationError",
    "JobCancelled",
    "JobFailed",
    "LifespanError",
    "NoResult",
    "PermissionDenied",
    "Reject",
    "ResultTimeout",
    "Retry",
    "SerializationError",
    "TaskSignal",
    "UnknownJob",
]


class AqueueError(Exception):
    """Base class of every error aqueue raises: ``except aqueue.AqueueError`` catches them all."""


class ConfigurationError(AqueueError, ValueError):
    """A setting, option, URL, queue or task name, or task registration is invalid (also a :class:`ValueError`).

    Raised where the value is given: constructing :class:`Tasks`, :class:`Worker` or a settings object,
    ``@tasks.task``, :meth:`Task.with_options`, building a workflow.
    """


class SerializationError(AqueueError, TypeError):
    """A value cannot be encoded as JSON (also a :class:`TypeError`).

    Raised in the producer for task arguments (by :meth:`Task.spec` and :meth:`Task.enqueue`; nothing is written).
    A task's result JSON cannot carry does not raise in the producer: the job is dead-lettered with this message.
    """


class InvalidArguments(AqueueError, TypeError):
    """The arguments of a job do not fit its task's signature (also a :class:`TypeError`).

    Raised in the producer, before anything is written, by :meth:`Tasks.enqueue`, :meth:`Tasks.enqueue_many`,
    :meth:`Task.enqueue`, chains and workflows (a step that receives its parents' results is checked with that first
    argument supplied) and :meth:`Tasks.add_cron`. A worker that receives such a job anyway (from a producer with
    another version of the task) dead-letters it at once with this message instead of retrying it.
    """


class BrokerUnavailable(AqueueError, ConnectionError):
    """Redis could not be reached, did not answer within the deadline, or refused the write (out of memory, cluster
    down); nothing was written, except by an ``enqueue_many`` cut short, which raises :class:`PartialEnqueue`.

    Also a :class:`ConnectionError`. While the connection's circuit breaker is open (Redis has failed repeatedly),
    calls fail at once with this error without trying Redis, except one probe now and then; ``quiet`` is then True:
    the breaker has already logged the outage once, so retry loops log it at debug level only (no log storm).
    """

    #: True when the outage was already reported (the circuit breaker is open): log this one at debug level.
    quiet: bool = False

    @property
    def log_level(self) -> int:
        """The level to log this error at: ``logging.WARNING`` for a fresh failure, ``logging.DEBUG`` while the
        outage is already reported (``quiet``)."""
        return logging.DEBUG if self.quiet else logging.WARNING


class PermissionDenied(AqueueError, PermissionError):
    """Redis answered, and refused: authentication failed, or the ACL user lacks a command (``NOPERM``) or a key.

    Also a :class:`PermissionError`. Retrying cannot help and it does not count as an outage: the message names the
    missing right (e.g. ``TIME``, used by the enqueue script); the ACL a queue needs is in ``docs/deployment.md``.
    """


class UnknownJob(AqueueError, LookupError):
    """No record exists for this job or workflow id (never enqueued, or deleted by retention). Also a
    :class:`LookupError`."""


class ResultTimeout(AqueueError, TimeoutError):
    """The job (or workflow) did not finish within the ``timeout`` given to :meth:`Job.result` (or
    :meth:`WorkflowHandle.wait`). Also a :class:`TimeoutError`. The job goes on; only the wait ended."""


class LifespanError(AqueueError):
    """The registry's lifespan (``@tasks.lifespan``) raised while a worker entered it: the worker stops before
    claiming anything. The lifespan's own exception is chained as ``__cause__``; ``aqueue worker`` prints this
    error's one line and exits non-zero."""


class NoResult(AqueueError):
    """Raised by :meth:`Job.result`: the job finished without a result. ``except aqueue.NoResult`` catches both
    ways that happens, :class:`JobFailed` and :class:`JobCancelled`."""

    job_id: str  #: the job's id


class JobFailed(NoResult):
    """Raised by :meth:`Job.result`: the job was dead-lettered (attempts exhausted, rejected, or not runnable) or
    expired (not started within its ``ttl``)."""

    def __init__(self, job_id: str, error: str, traceback: str = "") -> None:
        super().__init__(f"job {job_id} failed: {error}")
        self.job_id = job_id  #: the job's id
        self.error = error  #: the job's last error, e.g. ``"ValueError: boom"``
        self.traceback = traceback  #: the traceback of that error (``""`` when there is none)


class JobCancelled(NoResult):
    """Raised by :meth:`Job.result`: the job was cancelled (or, as a workflow step, skipped) and will not run
    again."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} was cancelled")
        self.job_id = job_id  #: the job's id


class TaskSignal(Exception):
    """Base of what a task raises to tell its worker what to do with its job: :class:`Retry` and :class:`Reject`.

    Not an :class:`AqueueError`: ``except aqueue.AqueueError`` inside a task does not catch them.
    """


class Retry(TaskSignal):
    """Raise inside a task to retry its job ``after`` seconds from now (``None``: the task's usual backoff).

    ``raise aqueue.Retry("rate limited", after=30)``. The attempt counts: once the job has had ``max_attempts`` it
    is dead-lettered, with this error's message. ``after`` outside 0 to a year raises :class:`ConfigurationError`.
    """

    def __init__(self, message: str = "", *, after: float | None = None) -> None:
        if after is not None and not (
            isinstance(after, int | float) and not isinstance(after, bool) and 0 <= after <= 86_400 * 366
        ):
            raise ConfigurationError(f"Retry(after=…) must be seconds from 0 to a year, got {after!r}")
        super().__init__(message or (f"retry in {after} s" if after is not None else "retry"))
        self.after = after  #: seconds until the retry (0 to a year), or None for the task's backoff


class Reject(TaskSignal):
    """Raise inside a task to dead-letter its job now, whatever attempts it has left (the input is wrong and
    retrying cannot help): ``raise aqueue.Reject("no such user")``. The message is the dead-letter reason."""
