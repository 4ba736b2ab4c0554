"""Handles on enqueued work: a :class:`Job` and a :class:`WorkflowHandle`. They hold ids only and read the
job's state from Redis through the registry that made them (a :class:`JobSource`)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import orjson

from aqueue._core.errors import JobCancelled, JobFailed, ResultTimeout, UnknownJob
from aqueue._core.record import JobRecord, JobStatus, json_or_text

if TYPE_CHECKING:
    from aqueue._core.events import EventHub
    from aqueue._redis.broker import Broker

__all__ = ["Job", "JobSource", "WorkflowHandle"]

R = TypeVar("R")


class JobSource(Protocol):
    """What a handle needs of the registry it came from (:class:`~aqueue.Tasks` is the one implementation): the
    queue's name, its broker, and this process's reader of the queue's events."""

    @property
    def queue(self) -> str: ...

    async def _broker(self) -> Broker: ...

    async def _event_hub(self) -> EventHub: ...


class Job(Generic[R]):
    """A handle on an enqueued job; cheap to create from an id in any process (:meth:`Tasks.job`).

    :meth:`Task.enqueue` returns one. It holds only the id: every method reads the job's current state from Redis.
    Generic in the task's result type ``R``, which :meth:`result` returns.
    """

    __slots__ = ("_tasks", "duplicate", "id")

    def __init__(self, tasks: JobSource, job_id: str, *, duplicate: bool = False) -> None:
        self._tasks = tasks
        self.id = job_id  #: the job id (a 32-character hex string for jobs aqueue made, else the caller's ``job_id``)
        #: True when the enqueue that returned this handle created nothing: a job with its ``job_id`` existed, or its
        #: ``dedup_key`` was held, and this is that job. False for a new job and for handles made from an id.
        self.duplicate = duplicate

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
        is no record. A job enqueued with ``keep_result=0`` has no record once it succeeded: a caller already
        waiting gets the result from the job's ``succeeded`` event; a caller coming later gets :class:`UnknownJob`.
        """
        hub = await self._tasks._event_hub()
        waiter = hub.watch(self.id)
        try:
            rec = await self.record()
            if not rec.status.finished:
                rec = await self._wait(hub, waiter, rec, timeout)
        finally:
            hub.unwatch(self.id, waiter)
        if rec.status is JobStatus.SUCCEEDED:
            value: R = rec.result
            return value
        if rec.status is JobStatus.CANCELLED:
            raise JobCancelled(self.id)
        raise JobFailed(self.id, rec.error or "unknown error", rec.traceback or "")

    async def _wait(
        self, hub: EventHub, waiter: asyncio.Future[None], rec: JobRecord, timeout: float | None
    ) -> JobRecord:
        """Wait for ``waiter`` (the job's terminal event) and read the record again; for a job whose record goes as
        it succeeds (``keep_result=0``), a record made from its ``succeeded`` event, which carries the result."""
        carried: list[str] = []

        def listen(event: tuple[str, dict[str, str]]) -> None:
            if event[1].get("job") == self.id and "result" in event[1]:
                carried.append(event[1]["result"])

        kept = rec.options.keep_result != 0
        if not kept:  # only then: each listener sees every event of the queue
            hub.add_listener(listen)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            raise ResultTimeout(f"job {self.id} did not finish within {timeout} s") from None
        finally:
            hub.remove_listener(listen)
        try:
            return await self.record()
        except UnknownJob:
            if kept:
                raise
            result = carried[0] if carried else await self._result_event()
            if result is None:
                raise
        return dataclasses.replace(rec, status=JobStatus.SUCCEEDED, result=json_or_text(result, None))

    async def _result_event(self) -> str | None:
        """The result its ``succeeded`` event carries, looked up among the newest events: for a job that finished
        between the first read of its record and the listener's start."""
        events = await (await self._tasks._broker()).events_before(None, _RESULT_LOOKBACK)
        for _, fields in events:
            if fields.get("job") == self.id and fields.get("type") == "succeeded" and "result" in fields:
                return fields["result"]
        return None


#: How many of the newest events :meth:`Job.result` looks through for the result of a job kept for 0 seconds.
_RESULT_LOOKBACK = 1000


class WorkflowHandle:
    """An enqueued workflow: its steps' jobs by name, and their states.

    :meth:`Workflow.enqueue` returns one; :meth:`Tasks.workflow_handle` (or :meth:`load`) gets one by id in any
    process.
    """

    def __init__(self, tasks: JobSource, workflow_id: str, name: str, jobs: dict[str, str]) -> None:
        self.tasks = tasks  #: the registry of the workflow's queue
        self.id = workflow_id  #: the workflow's id
        self.name = name  #: the workflow's name
        #: Step name → job handle.
        self.jobs: dict[str, Job[Any]] = {step: Job(tasks, job_id) for step, job_id in jobs.items()}

    def __repr__(self) -> str:
        return f"WorkflowHandle(id={self.id!r}, name={self.name!r}, steps={len(self.jobs)})"

    @classmethod
    async def load(cls, tasks: JobSource, workflow_id: str) -> WorkflowHandle:
        """The handle of a workflow enqueued earlier (by any process); :class:`UnknownJob` if there is none (or it
        expired)."""
        h = await (await tasks._broker()).workflow(workflow_id)
        try:
            jobs = orjson.loads(h["steps"])
        except (KeyError, ValueError):
            raise UnknownJob(f"no workflow {workflow_id!r} in queue {tasks.queue!r}") from None
        return cls(tasks, workflow_id, h.get("name", ""), jobs if isinstance(jobs, dict) else {})

    async def records(self) -> dict[str, JobRecord | None]:
        """Every step's :class:`JobRecord`, by step name (None where the record expired)."""
        broker = await self.tasks._broker()
        names = list(self.jobs)
        fields = await broker.record_fields([self.jobs[n].id for n in names], _RECORD_FIELDS)
        out: dict[str, JobRecord | None] = {}
        for n, f in zip(names, fields, strict=True):
            try:
                out[n] = JobRecord._from_hash(self.jobs[n].id, f) if f else None
            except ValueError:  # a record with an unknown status (written by something else): unreadable
                out[n] = None
        return out

    async def status(self) -> dict[str, JobStatus | None]:
        """Every step's status, by step name (None where the record expired)."""
        return {n: (r.status if r else None) for n, r in (await self.records()).items()}

    async def wait(self, timeout: float | None = None) -> dict[str, JobStatus | None]:
        """Wait until every step has finished (succeeded, dead, cancelled or expired); returns their statuses.

        Raises :class:`ResultTimeout` if ``timeout`` seconds pass first (the workflow goes on).
        """
        hub = await self.tasks._event_hub()
        waiters = {n: hub.watch(j.id) for n, j in self.jobs.items()}
        try:
            async with asyncio.timeout(timeout):
                while True:
                    states = await self.status()
                    pending = [waiters[n] for n, st in states.items() if st is not None and not st.finished]
                    if not pending:
                        return states
                    await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            raise ResultTimeout(f"workflow {self.id} did not finish within {timeout} s") from None
        finally:
            for n, fut in waiters.items():
                hub.unwatch(self.jobs[n].id, fut)


_RECORD_FIELDS = (
    "task", "spec", "status", "priority", "attempts", "enqueued_at", "started_at", "finished_at", "worker", "result",
    "error", "traceback", "wf", "step", "progress", "progress_message", "due_at", "expires_at",
)  # fmt: skip
