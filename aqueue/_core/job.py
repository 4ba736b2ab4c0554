"""Jobs: the unsent :class:`JobSpec`, the :class:`Job` handle, statuses and the decoded record."""

from __future__ import annotations

import asyncio
import enum
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, get_args

from aqueue._core import codec
from aqueue._core.errors import ConfigurationError, JobCancelled, JobFailed, ResultTimeout, UnknownJob

if TYPE_CHECKING:
    from aqueue._core.tasks import Tasks
    from aqueue._core.workflow import Chain

__all__ = ["Job", "JobOptions", "JobRecord", "JobSpec", "JobStatus"]

R = TypeVar("R")


class JobStatus(enum.StrEnum):
    """Where a job is in its life (:meth:`Job.status`, :attr:`JobRecord.status`). A ``str`` enum: members equal
    their values (``JobStatus.DEAD == "dead"``)."""

    QUEUED = "queued"  #: in a ready stream, waiting for a worker
    SCHEDULED = "scheduled"  #: delayed (or rate-limited), waiting for its due time
    WAITING = "waiting"  #: a workflow step waiting for its parents
    ACTIVE = "active"  #: claimed and running
    SUCCEEDED = "succeeded"  #: finished with a result
    FAILED = "failed"  #: an attempt failed; the job will be retried after its backoff
    DEAD = "dead"  #: attempts exhausted or not runnable; in the dead-letter stream
    CANCELLED = "cancelled"  #: cancelled (or a workflow step skipped); will not run
    EXPIRED = "expired"  #: not started within its ttl; will not run

    @classmethod
    def parse(cls, text: str | None) -> JobStatus | None:
        """The status named ``text``, or None for a missing or unknown value (a damaged record); never raises."""
        try:
            return cls(text) if text else None
        except ValueError:
            return None

    @property
    def finished(self) -> bool:
        """True for the statuses a job never leaves: succeeded, dead, cancelled and expired."""
        return self in _FINISHED


_FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.DEAD, JobStatus.CANCELLED, JobStatus.EXPIRED})

#: How a duplicate is treated: ``drop`` returns the existing job; ``replace`` (debounce) gives the pending job the
#: new arguments and restarts its delay.
#: What enqueueing a job whose dedup key is held does: keep the holder (``drop``) or replace it (debounce).
DedupMode = Literal["drop", "replace"]
DEDUP_MODES: tuple[str, ...] = get_args(DedupMode)


#: The longest delay, timeout, backoff, TTL or dedup hold a job may ask for (ten years, in seconds; the web API uses
#: the same bound): far beyond any real use, and small enough that every due time stays an exact integer of
#: milliseconds in Redis.
MAX_SECONDS = 10 * 365 * 86_400
#: The most attempts a job may ask for.
MAX_ATTEMPTS = 1_000_000


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

    def __post_init__(self) -> None:
        for name in ("delay", "timeout", "backoff_base", "backoff_max", "dedup_ttl", "ttl"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigurationError(f"{name} must be a number of seconds, got {value!r}")
            if not math.isfinite(value) or abs(value) > MAX_SECONDS:
                raise ConfigurationError(f"{name} must be a finite number of seconds up to {MAX_SECONDS}, got {value}")
        if self.max_attempts is not None and (
            isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int)
        ):
            raise ConfigurationError(f"max_attempts must be an integer, got {self.max_attempts!r}")
        if self.max_attempts is not None and self.max_attempts > MAX_ATTEMPTS:
            raise ConfigurationError(f"max_attempts must be <= {MAX_ATTEMPTS}, got {self.max_attempts}")
        if self.dedup_key is not None:
            if not isinstance(self.dedup_key, str) or not 0 < len(self.dedup_key) <= 512:
                raise ConfigurationError("dedup_key must be a non-empty string of at most 512 characters")
            try:
                self.dedup_key.encode()
            except UnicodeEncodeError:
                raise ConfigurationError(f"dedup_key {self.dedup_key!r} is not valid Unicode text") from None
        if self.dedup_ttl is not None and self.dedup_ttl < 0.001:  # 0 ms would mean "hold until the job finishes"
            raise ConfigurationError(f"dedup_ttl must be at least 0.001 seconds, got {self.dedup_ttl}")
        if self.dedup_mode is not None and self.dedup_mode not in DEDUP_MODES:
            raise ConfigurationError(f"dedup_mode must be one of {', '.join(DEDUP_MODES)}, got {self.dedup_mode!r}")
        if self.ttl is not None and self.ttl < 0.001:
            raise ConfigurationError(f"ttl must be at least 0.001 seconds, got {self.ttl}")
        if self.rerun_lost is not None and not isinstance(self.rerun_lost, bool):
            raise ConfigurationError(f"rerun_lost must be True or False, got {self.rerun_lost!r}")
        if self.delay < 0:
            raise ConfigurationError(f"delay must be >= 0 seconds, got {self.delay}")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be >= 1, got {self.max_attempts}")
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


@dataclass(frozen=True, slots=True)
class JobSpec(Generic[R]):
    """A job ready to be enqueued: task name, encoded arguments and resolved options. Make it with
    :meth:`Task.spec`; send it with :meth:`Tasks.enqueue`, :meth:`Tasks.enqueue_many`, a chain (:meth:`then`) or a
    :class:`Workflow` step.

    Arguments are encoded when the spec is made, so a value JSON cannot carry is rejected in the producer.
    """

    task: str  #: the task's name
    args: tuple[Any, ...]  #: positional arguments
    kwargs: dict[str, Any]  #: keyword arguments
    options: JobOptions  #: the job's options (the task's, with any :meth:`Task.with_options` overrides)
    payload: str = field(repr=False)  #: the encoded spec stored in the job record
    tasks: Tasks | None = field(default=None, repr=False, compare=False)  #: the registry that made it

    def then(self, next_spec: JobSpec[Any]) -> Chain:
        """A chain: this job, then ``next_spec`` with this job's result prepended to its arguments.

        ``await a.spec(1).then(b.spec_after(2)).then(c.spec_after()).enqueue()`` returns the last job's handle. If a
        step ends without success (dead, expired, cancelled), the steps after it are cancelled.
        """
        from aqueue._core.workflow import Chain

        return Chain([self]).then(next_spec)


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job's record as read from Redis (:meth:`Job.record`): a snapshot, not updated afterwards.

    Times are Unix seconds on the Redis clock, or None when the job has not reached that point.
    """

    id: str  #: the job id
    task: str  #: the task's name
    status: JobStatus  #: where the job is in its life
    priority: str  #: its priority level
    attempts: int  #: attempts started so far (0 before the first)
    args: list[Any]  #: positional arguments, as decoded from JSON
    kwargs: dict[str, Any]  #: keyword arguments, as decoded from JSON
    enqueued_at: float | None  #: when the job was enqueued
    started_at: float | None  #: when its latest attempt started
    finished_at: float | None  #: when it finished (succeeded, dead, cancelled or expired)
    worker: str | None  #: id of the worker that ran the latest attempt
    result: Any  #: the task's return value once succeeded, else None
    error: str | None  #: the latest failure (``"ValueError: boom"``), or why the job was cancelled or expired
    traceback: str | None  #: the traceback of the latest failure, if it had one
    progress: float | None = None  #: the last value the task reported with ``aqueue.progress`` (0 to 100)
    progress_message: str | None = None  #: the message reported with it
    workflow: str | None = None  #: id of the workflow this job is a step of
    step: str | None = None  #: its step name in that workflow
    due_at: float | None = None  #: when a scheduled (delayed, retrying or rate-limited) job becomes due
    expires_at: float | None = None  #: when the job expires if it has not started (its ``ttl``)

    @classmethod
    def _from_hash(cls, job_id: str, h: dict[str, str]) -> JobRecord:
        """Internal: decode the record hash read from Redis; tolerant of damaged fields (a record may hold garbage),
        except an unknown status, which raises :class:`ValueError` (nothing sensible can be said about such a
        job)."""
        spec = json_or_text(h.get("spec"), {})
        spec = spec if isinstance(spec, dict) else {}
        args, kwargs = spec.get("a", []), spec.get("k", {})
        return cls(
            id=job_id,
            task=h.get("task", ""),
            status=JobStatus(h.get("status", "queued")),
            priority=h.get("priority", ""),
            attempts=int_field(h.get("attempts")),
            args=args if isinstance(args, list) else [],
            kwargs=kwargs if isinstance(kwargs, dict) else {},
            enqueued_at=ms_field(h.get("enqueued_at")),
            started_at=ms_field(h.get("started_at")),
            finished_at=ms_field(h.get("finished_at")),
            worker=h.get("worker"),
            result=json_or_text(h.get("result"), None),
            error=h.get("error"),
            traceback=h.get("traceback"),
            progress=float_field(h.get("progress")),
            progress_message=h.get("progress_message"),
            workflow=h.get("wf"),
            step=h.get("step"),
            due_at=ms_field(h.get("due_at")),
            expires_at=ms_field(h.get("expires_at")),
        )


# Tolerant readers of record fields, shared with the web views: a damaged field reads as absent, never raises.


def ms_field(ms: str | None) -> float | None:
    """A millisecond timestamp field as seconds, or None."""
    try:
        return int(ms) / 1000 if ms else None
    except ValueError:
        return None


def float_field(text: str | None) -> float | None:
    """A number field, None when missing or damaged."""
    try:
        return float(text) if text else None
    except ValueError:
        return None


def int_field(text: str | None) -> int:
    """An integer field, 0 when missing or damaged."""
    try:
        return int(text or 0)
    except ValueError:
        return 0


def json_or_text(text: str | None, default: Any) -> Any:
    """A JSON field decoded, ``default`` when missing, the raw text when it is not JSON."""
    if text is None:
        return default
    try:
        return codec.decode(text)
    except ValueError:
        return text


class Job(Generic[R]):
    """A handle on an enqueued job; cheap to create from an id in any process (:meth:`Tasks.job`).

    :meth:`Task.enqueue` returns one. It holds only the id: every method reads the job's current state from Redis.
    Generic in the task's result type ``R``, which :meth:`result` returns.
    """

    __slots__ = ("_tasks", "id")

    def __init__(self, tasks: Tasks, job_id: str) -> None:
        self._tasks = tasks
        self.id = job_id  #: the job id (a 32-character hex string for jobs aqueue made)

    def __repr__(self) -> str:
        return f"Job(id={self.id!r}, queue={self._tasks.queue!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.id == self.id and other._tasks is self._tasks

    def __hash__(self) -> int:
        return hash(self.id)

    async def record(self) -> JobRecord:
        """The job's full record; :class:`UnknownJob` if there is none."""
        broker = await self._tasks._broker()
        h = await broker.get_record(self.id)
        if not h:
            raise UnknownJob(f"no job {self.id!r} in queue {self._tasks.queue!r}")
        return JobRecord._from_hash(self.id, h)

    async def cancel(self, reason: str = "cancelled") -> bool:
        """Cancel the job: True if it will not run (again), False if it had already finished.

        A job that has not started (queued, scheduled, waiting, or waiting for a retry) is cancelled at once. A
        running job's worker, in any process, is told through the control stream and cancels its coroutine
        (within milliseconds; a plain function running in a thread cannot be interrupted and is only not
        retried); its status becomes ``cancelled`` when the worker settles it. :class:`UnknownJob` if there is
        no record.
        """
        (state,) = await (await self._tasks._broker()).cancel([self.id], reason)
        if state == "unknown":
            raise UnknownJob(f"no job {self.id!r} in queue {self._tasks.queue!r}")
        return state in ("cancelled", "cancelling")

    async def status(self) -> JobStatus:
        """The job's current status; :class:`UnknownJob` if there is no record."""
        return (await self.record()).status

    async def result(self, timeout: float | None = None) -> R:
        """Wait for the job to finish and return its result (the task's return value, decoded from JSON).

        Waits on the queue's events stream, without polling. Raises :class:`JobFailed` (with the error and
        traceback) if the job was dead-lettered or expired, :class:`JobCancelled` if cancelled,
        :class:`ResultTimeout` if ``timeout`` seconds pass first (the job goes on), :class:`UnknownJob` if there
        is no record.
        """
        hub = await self._tasks._event_hub()
        waiter = hub.watch(self.id)
        try:
            rec = await self.record()
            if not rec.status.finished:
                try:
                    async with asyncio.timeout(timeout):
                        await waiter
                except TimeoutError:
                    raise ResultTimeout(f"job {self.id} did not finish within {timeout} s") from None
                rec = await self.record()
        finally:
            hub.unwatch(self.id, waiter)
        if rec.status is JobStatus.SUCCEEDED:
            value: R = rec.result
            return value
        if rec.status is JobStatus.CANCELLED:
            raise JobCancelled(self.id)
        raise JobFailed(self.id, rec.error or "unknown error", rec.traceback or "")
