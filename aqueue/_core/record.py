"""What a job's record in Redis says: its :class:`JobStatus` and the decoded :class:`JobRecord`."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from aqueue._core import codec
from aqueue._core.options import StoredOptions

__all__ = [
    "JobRecord",
    "JobStatus",
    "LogLine",
    "float_field",
    "headers_field",
    "int_field",
    "json_or_text",
    "lines_field",
    "ms_field",
]


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


class LogLine(NamedTuple):
    """One log record a job emitted: ``(timestamp, level, message)``."""

    timestamp: float  #: Unix seconds (the worker's clock)
    level: str  #: the level's name (``"INFO"``, ``"WARNING"``, …)
    message: str  #: the formatted message, then the traceback of ``logger.exception`` (cut at 8 KiB)


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
    headers: dict[str, str] = field(default_factory=dict)  #: the job's headers (empty when it has none)
    #: What the job logged while it ran, every attempt's, oldest first: ``(timestamp, level, message)`` lines
    #: (:attr:`QueueSettings.job_log_level` and above; the last 100 lines and 64 KiB of messages).
    logs: tuple[LogLine, ...] = ()
    logs_dropped: int = 0  #: earlier lines of ``logs`` dropped by those caps
    #: The options the job was enqueued with (timeout, attempts, retry delays, result retention, whether its id
    #: was the caller's), as its record stores them; its priority is :attr:`priority`.
    options: StoredOptions = field(default_factory=StoredOptions)

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
            headers=headers_field(spec),
            logs=lines_field(h.get("logs")),
            logs_dropped=int_field(h.get("logs_dropped")),
            options=StoredOptions._from_spec(spec),
        )


# Tolerant readers of record fields, shared with the web views: a damaged field reads as absent, never raises.


def headers_field(spec: dict[str, Any]) -> dict[str, str]:
    """The headers of a decoded spec; only its ``str`` → ``str`` entries (a damaged spec reads as none)."""
    h = spec.get("h")
    if not isinstance(h, dict):
        return {}
    return {k: v for k, v in h.items() if isinstance(k, str) and isinstance(v, str)}


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


def lines_field(text: str | None) -> tuple[LogLine, ...]:
    """The ``logs`` field of a record as :class:`LogLine` s; a damaged field (or an entry of it) reads as none."""
    if not text:
        return ()
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError:
        return ()
    return tuple(_line(e) for e in raw if _valid(e)) if isinstance(raw, list) else ()


def _valid(e: object) -> bool:
    return (
        isinstance(e, list)
        and len(e) == 3
        and isinstance(e[0], int | float)
        and isinstance(e[1], str)
        and isinstance(e[2], str)
    )


def _line(e: Sequence[Any]) -> LogLine:
    return LogLine(e[0] / 1000, e[1], e[2])
