"""Administration of a queue from Python: listing recent jobs, the dead-letter queue and re-running jobs.

:class:`Tasks` inherits these methods; the REST routes (``GET /jobs``, ``GET /dead-letter``, ``POST
/dead-letter/reprocess``, ``POST /jobs/{id}/retry``) and the CLI (``aqueue retry``, ``aqueue dead-letter
list|reprocess``) call them instead of talking to the broker. Re-running is one ``requeue.lua`` call per batch of
jobs: a job that ended badly (dead, cancelled, expired; :meth:`~AdminMixin.reprocess`: dead only) or that failed
and waits for its retry goes back to its stream under the same id with a fresh start, its dead-letter entries
deleted, and a ``requeued`` event (``by`` = ``retry`` or ``reprocess``, ``from`` = the status it left).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aqueue._core import listing
from aqueue._core.errors import ConfigurationError, UnknownJob
from aqueue._core.listing import JobPage
from aqueue._core.record import JobStatus, int_field

if TYPE_CHECKING:
    from aqueue._redis.broker import Broker

__all__ = ["BATCH", "RETRYABLE", "AdminMixin", "DeadLetter", "DeadLetterPage", "RequeueResult"]

#: Jobs one requeue or cancel script call handles.
BATCH = 1000
#: The statuses :meth:`AdminMixin.retry` re-runs a job from (a succeeded job is not re-run: enqueue it again).
RETRYABLE = (JobStatus.DEAD, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED)
#: The statuses :meth:`AdminMixin.reprocess` (the dead-letter queue's) puts back.
_REPROCESSABLE = (JobStatus.DEAD, JobStatus.FAILED)
_ENTRY_ID = re.compile(r"\d+(-\d+)?")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One entry of the dead-letter stream (:meth:`Tasks.dead_letters`): a job that was dead-lettered, and why.

    A job dead-lettered again after a retry has one entry per time; re-running it deletes them.
    """

    id: str  #: the entry's stream id (``<ms>-<seq>``): pass it as ``before`` to read the entries older than it
    job: str  #: the job id
    task: str  #: the task's name
    reason: str  #: why: the last attempt's error, or what made the job unrunnable
    dead_at: float  #: when it was dead-lettered, in Unix seconds (Redis clock)

    @classmethod
    def _from_entry(cls, entry_id: str, fields: dict[str, str]) -> DeadLetter:
        """Decode one stream entry; tolerant of missing fields."""
        return cls(
            id=entry_id,
            job=fields.get("job", ""),
            task=fields.get("task", ""),
            reason=fields.get("reason", ""),
            dead_at=int_field(entry_id.split("-", 1)[0]) / 1000,
        )


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    """A page of the dead-letter stream, newest first, as :meth:`Tasks.dead_letters` reads it."""

    entries: list[DeadLetter]  #: the entries, newest first
    total: int  #: entries in the whole stream


@dataclass(frozen=True, slots=True)
class RequeueResult:
    """What :meth:`Tasks.retry` or :meth:`Tasks.reprocess` put back on the streams, and what it left alone."""

    requeued: list[str]  #: ids of the jobs put back, in the order they were taken
    #: Job id → why it was not put back: it has no record any more, or its status is not one that call re-runs.
    skipped: dict[str, str]


def _positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be an integer >= 1, got {value!r}")


async def _requeue_ids(broker: Broker, job_ids: list[str]) -> RequeueResult:
    """Requeue ``job_ids`` (distinct), :data:`BATCH` per script call, with the dead-letter entries of each."""
    requeued: list[str] = []
    skipped: dict[str, str] = {}
    for i in range(0, len(job_ids), BATCH):
        batch = job_ids[i : i + BATCH]
        entries = await listing.find_dead_entries(broker, batch)
        done, why = await broker.requeue([(j, *entries.get(j, [])) for j in batch], "reprocess", _REPROCESSABLE)
        requeued += done
        skipped.update(why)
    return RequeueResult(requeued, skipped)


async def _requeue_oldest(broker: Broker, limit: int | None) -> RequeueResult:
    """Requeue the oldest ``limit`` (None: all) dead jobs in batches of :data:`BATCH`, each at most once."""
    requeued: list[str] = []
    skipped: dict[str, str] = {}
    seen: set[str] = set()
    while limit is None or len(seen) < limit:
        want = BATCH if limit is None else min(BATCH, limit - len(seen))
        found = await listing.oldest_dead(broker, want)
        fresh = [(j, *entry_ids) for j, entry_ids in found.items() if j not in seen]
        if not fresh:
            break
        seen.update(item[0] for item in fresh)
        done, why = await broker.requeue(fresh, "reprocess", _REPROCESSABLE)
        requeued += done
        skipped.update(why)
        if len(found) < want:  # that was every dead job left
            break
    return RequeueResult(requeued, skipped)


class AdminMixin:
    """Recent jobs, dead letters and re-runs (see the module docstring)."""

    async def _broker(self) -> Broker:
        raise NotImplementedError  # provided by Tasks

    async def jobs(self, *, status: JobStatus | str | None = None, task: str | None = None, limit: int = 50) -> JobPage:
        """Up to ``limit`` of the most recently active jobs, most recent first, as :class:`JobSummary` values;
        ``status`` and ``task`` keep only the jobs whose current status, and whose task, is that one.

        Bounded, never a keyspace scan: it reads the queue's events stream backwards, at most 10,000 events
        (:data:`~aqueue._core.listing.SCAN_EVENTS`), so it sees the jobs with an event among the newest 10,000 (and
        within the stream's ``events_maxlen``); :attr:`JobPage.complete` is False when older events were left
        unread. An older job is still found by id (:meth:`job`), a dead one in :meth:`dead_letters`. What ``GET
        /jobs`` answers. :class:`ConfigurationError` for an unknown status, an empty task name or a ``limit``
        below 1.
        """
        _positive("limit", limit)
        if status is not None and JobStatus.parse(status) is None:
            names = ", ".join(JobStatus)
            raise ConfigurationError(f"status must be one of {names}, got {str(status)[:200]!r}")
        if task is not None and (not isinstance(task, str) or not task):
            raise ConfigurationError(f"task must be a task name, got {task!r}")
        status = JobStatus.parse(status) if status is not None else None
        return await listing.recent_jobs(await self._broker(), status=status, task=task, limit=limit)

    async def dead_letters(self, limit: int = 50, *, before: str | None = None) -> DeadLetterPage:
        """The newest ``limit`` entries of the dead-letter stream, newest first, and the stream's total.

        ``before`` (an entry's :attr:`DeadLetter.id`) pages back: the entries older than that one. The stream holds
        one entry per dead-lettering, trimmed to the queue's ``dead_ttl`` and capped near ``dead_maxlen``.
        :class:`ConfigurationError` for a ``limit`` below 1 or a ``before`` that is not a stream id.
        """
        _positive("limit", limit)
        if before is not None and not _ENTRY_ID.fullmatch(before):
            raise ConfigurationError(f"before must be a dead-letter entry id such as 1700000000000-0, got {before!r}")
        broker = await self._broker()
        page = await broker.dead_page(before, limit, newest_first=True)
        total = await broker.dead_length()
        return DeadLetterPage([DeadLetter._from_entry(entry_id, fields) for entry_id, fields in page], total)

    async def retry(self, job_id: str) -> RequeueResult:
        """Re-run a job that ended badly (dead, cancelled, expired) or failed and waits for its retry: put it back
        on its stream now, under the same id, with a fresh start.

        It keeps its arguments, options and headers; its attempts and reclaims start over from 0, its error,
        traceback, result, progress and ``ttl`` deadline are cleared (the ttl does not apply again), its
        dead-letter entries deleted; a ``failed`` job skips the rest of its backoff. Its status goes back to
        ``queued``, with a ``requeued`` event (``by`` = ``retry``, ``from`` = the status it left), and
        :meth:`Job.result` waits for the new run. ``requeued`` is ``[job_id]`` when it went back. Left alone, with
        ``skipped[job_id]`` saying why: a succeeded job (enqueue it again instead), one not finished (queued,
        scheduled, waiting, running), and a workflow step that was cancelled or expired (its workflow already went
        on without it). A dedup key the job held is not taken again. :class:`UnknownJob` if there is no record
        of the job (never enqueued, or its retention expired).
        """
        broker = await self._broker()
        h = await broker.get_record(job_id)
        if not h.get("task"):
            raise UnknownJob(f"no job {job_id!r} (never enqueued, or its retention expired)")
        entries: dict[str, list[str]] = {}
        if h.get("status") == JobStatus.DEAD:
            entries = await listing.find_dead_entries(broker, [job_id])
        requeued, skipped = await broker.requeue([(job_id, *entries.get(job_id, []))], "retry", RETRYABLE)
        return RequeueResult(requeued, dict(skipped))

    async def reprocess(self, ids: Iterable[str] | None = None, *, max: int | None = None) -> RequeueResult:
        """Put dead jobs back on their streams, as :meth:`retry` does: the jobs ``ids``, else the oldest ``max``
        dead jobs (every dead job when ``max`` is None), oldest first.

        It works in batches of 1,000 jobs per script call. With ``ids`` (duplicates are taken once), a job with no
        record, or that is neither dead nor failed, is left alone and reported in ``skipped``. Without, dead-letter
        entries whose record has expired, or whose job was already put back, are passed over (and kept: they are
        the only trace of those failures), and each job is taken at most once per call: one that fails again while
        this runs, and is dead-lettered again, waits for the next call. :class:`ConfigurationError` when both
        ``ids`` and ``max`` are given, for a ``max`` below 1, or for ``ids`` given as one string.
        """
        if ids is not None and max is not None:
            raise ConfigurationError("give ids or max, not both")
        if isinstance(ids, str):
            raise ConfigurationError(f"ids must be a collection of job ids, not the string {ids[:100]!r}")
        if max is not None:
            _positive("max", max)
        broker = await self._broker()
        if ids is not None:
            return await _requeue_ids(broker, list(dict.fromkeys(ids)))
        return await _requeue_oldest(broker, max)

    # -- shared by the REST API and the CLI ------------------------------------------------------------------

    async def _job_views(self, job_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """The view of each job (``GET /jobs/{id}``, ``aqueue job --json``), None where there is no record."""
        records = await (await self._broker()).get_records(job_ids)
        return [listing.job_view(job_id, h) if h else None for job_id, h in zip(job_ids, records, strict=True)]

    async def _cancel_jobs(self, job_ids: Sequence[str], reason: str) -> list[str]:
        """Cancel jobs, :data:`BATCH` per script call; one state per job: ``cancelled``, ``cancelling`` (running:
        its worker was told), ``unknown`` (no record) or ``already-<status>`` (it had finished)."""
        broker = await self._broker()
        states: list[str] = []
        for i in range(0, len(job_ids), BATCH):
            states += await broker.cancel(job_ids[i : i + BATCH], reason)
        return states
