"""Bounded read models of the REST API: one job's view, the recent-jobs listing, dead-letter pages.

No query ever scans the keyspace. ``GET /jobs`` walks the events stream backwards (every job state change is an
event, so the newest events name the most recently active jobs), at most :data:`SCAN_EVENTS` entries per request,
and reads the records of the jobs it meets in pipelined batches; filters apply to each record's current status.
Jobs whose last event is older than that window are not listed (their record is still there for ``GET
/jobs/{id}``, and dead ones are in the dead-letter list). Dead-letter lookups page through the dead-letter stream,
which ``dead_maxlen`` caps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aqueue.backend.broker import Broker
from aqueue.job import int_field, json_or_text, ms_field

__all__ = ["SCAN_EVENTS", "JobPage", "dead_entry_view", "find_dead_entries", "job_view", "oldest_dead", "recent_jobs"]

#: Most events one ``GET /jobs`` reads.
SCAN_EVENTS = 10_000
_PAGE = 1000
_SUMMARY = ("task", "status", "priority", "attempts", "enqueued_at", "started_at", "finished_at", "worker", "error")


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
        "result": json_or_text(h.get("result"), None),
        "traceback": h.get("traceback"),
    }


@dataclass(frozen=True, slots=True)
class JobPage:
    """What one recent-jobs query found."""

    jobs: list[dict[str, Any]]
    scanned: int  #: events read
    complete: bool  #: True when the whole events stream was read (nothing older was left out)


async def recent_jobs(broker: Broker, *, status: str | None, task: str | None, limit: int) -> JobPage:
    """Up to ``limit`` of the most recently active jobs, newest first, filtered by current status and task."""
    seen: set[str] = set()
    jobs: list[dict[str, Any]] = []
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
                jobs.append(_summary(job_id, h))
        if complete:
            break
    return JobPage(jobs, scanned, complete)


def dead_entry_view(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """One dead-letter entry: its stream id, the job, task, reason and when it was dead-lettered."""
    return {
        "id": entry_id,
        "job": fields.get("job", ""),
        "task": fields.get("task", ""),
        "reason": fields.get("reason", ""),
        "dead_at": int_field(entry_id.split("-", 1)[0]) / 1000,
    }


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
