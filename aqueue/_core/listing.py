"""Bounded read models shared by the REST API, the CLI and :class:`~aqueue._core.admin.AdminMixin`: one job's
view, the recent-jobs listing, a workflow's view, dead-letter lookups. The job and workflow views are plain
JSON-ready dicts (what ``GET /jobs/{id}``, ``GET /workflows/{id}`` and ``aqueue job --json`` answer); the listing
is a :class:`JobPage` of typed :class:`JobSummary` (what :meth:`Tasks.jobs` returns and ``GET /jobs`` answers).

No query ever scans the keyspace. The listing walks the events stream backwards (every job state change is an
event, so the newest events name the most recently active jobs), at most :data:`SCAN_EVENTS` entries per call,
and reads the records of the jobs it meets in pipelined batches; filters apply to each record's current status.
Jobs whose last event is older than that window are not listed (their record is still there for ``GET
/jobs/{id}``, and dead ones are in the dead-letter list). Dead-letter lookups page through the dead-letter stream,
which ``dead_maxlen`` caps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aqueue._core.options import StoredOptions
from aqueue._core.record import (
    JobStatus,
    float_field,
    headers_field,
    int_field,
    json_or_text,
    lines_field,
    ms_field,
)

if TYPE_CHECKING:
    from aqueue._redis.broker import Broker

__all__ = [
    "SCAN_EVENTS",
    "JobPage",
    "JobSummary",
    "find_dead_entries",
    "job_view",
    "oldest_dead",
    "recent_jobs",
    "workflow_view",
]

#: Most events one listing (``GET /jobs``, :meth:`Tasks.jobs`) reads.
SCAN_EVENTS = 10_000
_PAGE = 1000
_SUMMARY = (
    "task", "status", "priority", "attempts", "enqueued_at", "started_at", "finished_at", "worker", "error", "progress",
)  # fmt: skip


def _progress(text: str | None) -> float | None:
    """A job's progress (percent, as the task reported it); None when absent or damaged."""
    value = float_field(text)
    return value if value is not None and math.isfinite(value) else None


def _summary(job_id: str, h: dict[str, str]) -> dict[str, Any]:
    return {
        "id": job_id,
        "task": h.get("task", ""),
        "status": h.get("status", "queued"),
        "priority": h.get("priority", ""),
        "attempts": int_field(h.get("attempts")),
        "enqueued_at": ms_field(h.get("enqueued_at")),
        "started_at": ms_field(h.get("started_at")),
        "finished_at": ms_field(h.get("finished_at")),
        "worker": h.get("worker"),
        "error": h.get("error"),
        "progress": _progress(h.get("progress")),
    }


def job_view(job_id: str, h: dict[str, str]) -> dict[str, Any]:
    """Everything about one job, from its record hash; tolerant of damaged fields."""
    spec = json_or_text(h.get("spec"), {})
    spec = spec if isinstance(spec, dict) else {}
    options = spec.get("o")
    options = options if isinstance(options, dict) else {}
    args, kwargs = spec.get("a", []), spec.get("k", {})
    return _summary(job_id, h) | {
        "args": args if isinstance(args, list) else [],
        "kwargs": kwargs if isinstance(kwargs, dict) else {},
        "max_attempts": options.get("max_attempts") if isinstance(options.get("max_attempts"), int) else None,
        "due_at": ms_field(h.get("due_at")),
        "expires_at": ms_field(h.get("expires_at")),
        "result": json_or_text(h.get("result"), None),
        "traceback": h.get("traceback"),
        "progress_message": h.get("progress_message") or None,
        "workflow": h.get("wf"),
        "step": h.get("step"),
        "dedup_key": h.get("dedup"),
        "cancel_requested": h.get("cancel") == "1",
        "headers": headers_field(spec),
        "options": StoredOptions._from_spec(spec).as_json(),
        "logs": [line._asdict() for line in lines_field(h.get("logs"))],
        "logs_dropped": int_field(h.get("logs_dropped")),
    }


_STEP_FIELDS = (
    "task", "status", "attempts", "started_at", "finished_at", "error", "progress", "progress_message", "next",
)  # fmt: skip


def _edges(text: str | None) -> list[tuple[str, str]]:
    """A step record's ``next`` field (``<child id>:s,<child id>:f,``) as (child id, ``s`` or ``f``) pairs."""
    out: list[tuple[str, str]] = []
    for part in (text or "").split(","):
        child, _, mode = part.rpartition(":")
        if child and mode in ("s", "f"):
            out.append((child, mode))
    return out


def _step_links(jobs: dict[str, str], records: list[dict[str, str] | None]) -> dict[str, tuple[list[str], list[str]]]:
    """For each step: the steps it runs after (success edges) and those whose failure it handles, read from the
    ``next`` fields of the parents' records (``records`` in the order of ``jobs``)."""
    step_of = {job: name for name, job in jobs.items()}
    links: dict[str, tuple[list[str], list[str]]] = {name: ([], []) for name in jobs}
    for name, rec in zip(jobs, records, strict=True):
        for child, mode in _edges(rec.get("next") if rec else None):
            if child in step_of:
                links[step_of[child]][0 if mode == "s" else 1].append(name)
    return links


def _step_view(
    name: str, job_id: str, rec: dict[str, str] | None, links: tuple[list[str], list[str]]
) -> dict[str, Any]:
    """One step of a workflow view; ``status`` null when its record has expired."""
    r = rec or {}
    status = JobStatus.parse(r.get("status")) if rec else None
    return {
        "name": name,
        "job": job_id,
        "task": r.get("task"),
        "status": status.value if status is not None else None,
        "attempts": int_field(r.get("attempts")),
        "started_at": ms_field(r.get("started_at")),
        "finished_at": ms_field(r.get("finished_at")),
        "progress": _progress(r.get("progress")),
        "progress_message": r.get("progress_message") or None,
        "error": r.get("error"),
        "after": links[0],
        "on_failure_of": links[1],
    }


async def workflow_view(broker: Broker, workflow_id: str) -> dict[str, Any] | None:
    """A workflow and its steps (in the order they were added), each with its job's state; None if unknown.

    A step whose record has expired shows ``status`` null. Each step lists the steps it runs after (its success
    dependencies) and the steps whose failure it handles, read from its parents' records.
    """
    h = await broker.workflow(workflow_id)
    steps = json_or_text(h.get("steps"), None)
    if not isinstance(steps, dict):
        return None
    jobs = {name: job for name, job in steps.items() if isinstance(job, str)}
    records = await broker.record_fields(list(jobs.values()), _STEP_FIELDS)
    links = _step_links(jobs, records)
    views = [_step_view(name, job, rec, links[name]) for (name, job), rec in zip(jobs.items(), records, strict=True)]
    counts: dict[str, int] = {}
    for view in views:
        key = view["status"] or "unknown"
        counts[key] = counts.get(key, 0) + 1
    left = h.get("left")
    return {
        "id": workflow_id,
        "name": h.get("name", ""),
        "created_at": ms_field(h.get("created_at")),
        "finished_at": ms_field(h.get("finished_at")),
        "finished": bool(h.get("finished_at")),
        "left": max(0, int_field(left)) if left is not None else None,
        "counts": counts,
        "steps": views,
    }


@dataclass(frozen=True, slots=True)
class JobSummary:
    """One job as a listing shows it (:meth:`Tasks.jobs`, ``GET /jobs``): its current state, read from its record.

    Times are Unix seconds (Redis clock), None when the job has not got there (or not since it was re-run).
    """

    id: str  #: the job id
    task: str  #: the task's name
    status: JobStatus  #: its current status
    priority: str  #: its priority level's name
    attempts: int  #: attempts started so far
    enqueued_at: float | None  #: when it was enqueued
    started_at: float | None  #: when its last attempt started
    finished_at: float | None  #: when it finished (or its last attempt failed)
    worker: str | None  #: the worker running it, or that ran its last attempt
    error: str | None  #: its last error (or the reason it was cancelled)
    progress: float | None  #: the progress (percent) it last reported

    @classmethod
    def _from_hash(cls, job_id: str, h: dict[str, str]) -> JobSummary:
        """Decode the summary fields of a record hash; tolerant of damaged fields (an unknown status reads as
        ``queued``, as a missing one does)."""
        view = _summary(job_id, h)
        return cls(**view | {"status": JobStatus.parse(view["status"]) or JobStatus.QUEUED})


@dataclass(frozen=True, slots=True)
class JobPage:
    """What one recent-jobs query (:meth:`Tasks.jobs`) found, and how far back it looked."""

    jobs: list[JobSummary]  #: the jobs, most recently active first
    scanned: int  #: events read
    complete: bool  #: True when the whole events stream was read (no older job was left out)


async def recent_jobs(broker: Broker, *, status: str | None, task: str | None, limit: int) -> JobPage:
    """Up to ``limit`` of the most recently active jobs, newest first, filtered by current status and task."""
    seen: set[str] = set()
    jobs: list[JobSummary] = []
    before: str | None = None
    scanned = 0
    complete = False
    while len(jobs) < limit and scanned < SCAN_EVENTS:
        want = min(_PAGE, SCAN_EVENTS - scanned)
        page = await broker.events_before(before, want)
        scanned += len(page)
        complete = len(page) < want
        if page:
            before = page[-1][0]
        ids: list[str] = []
        for _, fields in page:
            job_id = fields.get("job")
            if job_id and job_id not in seen and (task is None or fields.get("task") == task):
                seen.add(job_id)
                ids.append(job_id)
        for job_id, h in zip(ids, await broker.record_fields(ids, _SUMMARY), strict=True):
            if h is not None and (status is None or h.get("status") == status) and len(jobs) < limit:
                jobs.append(JobSummary._from_hash(job_id, h))
        if complete:
            break
    return JobPage(jobs, scanned, complete)


async def find_dead_entries(broker: Broker, job_ids: Iterable[str]) -> dict[str, list[str]]:
    """The dead-letter entry ids of each of ``job_ids`` (newest first), paging until all are found."""
    wanted = set(job_ids)
    found: dict[str, list[str]] = {}
    after: str | None = None
    while wanted - found.keys():
        page = await broker.dead_page(after, _PAGE, newest_first=True)
        for entry_id, fields in page:
            job_id = fields.get("job", "")
            if job_id in wanted:
                found.setdefault(job_id, []).append(entry_id)
        if len(page) < _PAGE:
            break
        after = page[-1][0]
    return found


async def oldest_dead(broker: Broker, count: int) -> dict[str, list[str]]:
    """Up to ``count`` of the oldest dead-lettered jobs that are still dead, with their entry ids, oldest first.

    Entries whose record has expired, or whose job was already put back, are passed over (and kept: they are
    the only trace of those failures), so they never block the jobs behind them.
    """
    found: dict[str, list[str]] = {}
    after: str | None = None
    while len(found) < count:
        page = await broker.dead_page(after, _PAGE, newest_first=False)
        ids = list(dict.fromkeys(f.get("job", "") for _, f in page if f.get("job")))
        records = await broker.record_fields(ids, ("task", "status"))
        dead = {job_id for job_id, h in zip(ids, records, strict=True) if h is not None and h.get("status") == "dead"}
        for entry_id, fields in page:
            job_id = fields.get("job", "")
            if job_id in dead and (job_id in found or len(found) < count):
                found.setdefault(job_id, []).append(entry_id)
        if len(page) < _PAGE:
            break
        after = page[-1][0]
    return found
