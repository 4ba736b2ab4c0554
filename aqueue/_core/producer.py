"""The producer half of :class:`~aqueue.Tasks`: making specs and enqueueing jobs, chains and workflows; handles
by id. Stage: enqueue (the write itself is the broker's ``enqueue`` script)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from aqueue._core import codec
from aqueue._core.batch import Batch, _open, note_enqueued
from aqueue._core.errors import BrokerUnavailable
from aqueue._core.job import Job, WorkflowHandle
from aqueue._core.options import KEEP_FOREVER, NO_HEADERS, JobOptions, check_headers
from aqueue._core.specs import JobSpec, Workflow, enqueue_item
from aqueue._core.wire import EnqueueItem

if TYPE_CHECKING:
    from aqueue._core.events import EventHub
    from aqueue._core.settings import QueueSettings
    from aqueue._core.task import Task
    from aqueue._redis.broker import Broker

__all__ = ["PartialEnqueue", "ProducerMixin"]

R = TypeVar("R")


class PartialEnqueue(BrokerUnavailable):
    """:meth:`Tasks.enqueue_many` wrote some of its jobs and not the others (Redis reached ``maxmemory``, or the
    connection dropped, midway). Also a :class:`BrokerUnavailable`.

    ``written`` holds the handles of the jobs that exist (a duplicate's handle is the existing job's, with
    ``duplicate`` True, as on success), ``not_written`` the specs of the jobs that do not, both in the order
    given. Retry only ``not_written``: retrying every spec would enqueue the written ones twice.
    """

    def __init__(self, message: str, written: Sequence[Job[Any]], not_written: Sequence[JobSpec[Any]]) -> None:
        super().__init__(message)
        self.written: list[Job[Any]] = list(written)  #: handles of the jobs written, in the order given
        self.not_written: list[JobSpec[Any]] = list(not_written)  #: specs of the jobs not written, in order


def _resolve_rare(resolved: dict[str, Any], options: JobOptions, queue_retry_delay: float | None) -> None:
    """Add to a spec's resolved options those that are absent unless set: the common payload does not grow."""
    retry_delay = options.retry_delay if options.retry_delay is not None else queue_retry_delay
    if retry_delay is not None:
        resolved["retry_delay"] = retry_delay
    if options.keep_result is not None:
        resolved["keep_result"] = -1 if options.keep_result == KEEP_FOREVER else options.keep_result
    if options.job_id is not None:
        resolved["named"] = True  # the id was the caller's


class ProducerMixin:
    """Enqueueing (see the module docstring); :class:`~aqueue.Tasks` inherits it."""

    queue: str
    settings: QueueSettings
    _registry: dict[str, Task[Any, Any]]
    _before_enqueue: tuple[Callable[[dict[str, str]], None], ...]

    if TYPE_CHECKING:

        def get(self, name: str) -> Task[Any, Any] | None: ...

        async def _broker(self) -> Broker: ...

        async def _event_hub(self) -> EventHub: ...

        def _route(self, queue: str) -> ProducerMixin: ...

    def _make_spec(
        self,
        task: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: JobOptions,
        headers: Mapping[str, str] | None = None,
    ) -> JobSpec[Any]:
        """The spec of a job; ``headers`` given (a workflow step's, merged) are final: the hooks ran already."""
        if headers is None:
            headers = options.headers
            if self._before_enqueue:  # no hook, no cost
                headers = self._run_before_enqueue(task, headers)
        retry = self.settings.retry
        resolved = {
            "max_attempts": options.max_attempts or retry.max_attempts,
            "timeout": options.timeout,
            "backoff": [
                retry.backoff_base if options.backoff_base is None else options.backoff_base,
                retry.backoff_max if options.backoff_max is None else options.backoff_max,
            ],
        }
        if options.rerun_lost:
            resolved["rerun_lost"] = True  # absent otherwise: the common payload stays as short as it was
        _resolve_rare(resolved, options, retry.retry_delay)
        body: dict[str, Any] = {"a": args, "k": kwargs, "o": resolved}
        if headers:
            headers = dict(headers)  # checked: by JobOptions, the hooks' check, or the workflow's
            body["h"] = headers  # absent without headers: the common payload does not grow
        payload = codec.encode(body, f"arguments of task {task!r}")
        return JobSpec(task, args, kwargs, options, payload, self, MappingProxyType(headers) if headers else NO_HEADERS)

    def _run_before_enqueue(self, task: str, headers: Mapping[str, str] | None) -> dict[str, str]:
        out = dict(headers or {})
        for hook in self._before_enqueue:
            hook(out)  # its exception reaches the caller: nothing is written
        return check_headers(out, f"headers of task {task!r} after the before_enqueue hooks")

    def _item(self, spec: JobSpec[Any], receives_results: bool = False) -> EnqueueItem:
        return enqueue_item(self, spec, receives_results)

    async def enqueue(self, spec: JobSpec[R]) -> Job[R]:
        """Enqueue one job made by :meth:`Task.spec` (one round trip) and return its handle.

        With a ``dedup_key`` held by an existing job, or a ``job_id`` an existing record has, that job's handle is
        returned instead, with :attr:`Job.duplicate` True (see :class:`~aqueue.JobOptions`). Raises
        :class:`ConfigurationError` if its priority is not a level of this queue, :class:`BrokerUnavailable` if
        Redis does not answer.
        """
        if spec.options.queue not in (None, self.queue):
            return await self._route(spec.options.queue).enqueue(spec)
        item = self._item(spec)
        broker = await self._broker()
        dups = await broker.enqueue([item])
        job: Job[R] = Job(self, dups.get(0, item.job_id), duplicate=0 in dups)
        if _open.get():  # inside `async with tasks.batch()`: one lookup otherwise
            note_enqueued([job])
        return job

    async def enqueue_many(self, specs: Iterable[JobSpec[Any]]) -> list[Job[Any]]:
        """Enqueue many jobs made by :meth:`Task.spec`; returns their handles in the same order.

        One script call per 500 jobs, all pipelined in one round trip. A job whose ``dedup_key`` is held, or whose
        ``job_id`` is taken (also by an earlier spec of the same call), gets the existing job's handle, with
        :attr:`Job.duplicate` True, as with :meth:`enqueue`. Each call of 500 is written whole or not at all, the
        batch is not: if Redis refuses some calls (``maxmemory`` reached midway) or the connection drops midway, raises
        :class:`PartialEnqueue` (a :class:`BrokerUnavailable`) with the handles of the jobs written and the specs
        not written; retry only those specs. :class:`BrokerUnavailable` itself means none was written, or that Redis
        stopped answering before it could tell which were.
        """
        specs = list(specs)
        if any(s.options.queue not in (None, self.queue) for s in specs):
            return await self._enqueue_routed(specs)
        items = [self._item(s) for s in specs]
        if not items:
            return []
        broker = await self._broker()
        wrote = await broker.enqueue_many(items)
        dups = wrote.duplicates
        jobs: list[Job[Any]] = [Job(self, dups.get(i, it.job_id), duplicate=i in dups) for i, it in enumerate(items)]
        if _open.get():
            missed = set(wrote.not_written)
            note_enqueued([job for i, job in enumerate(jobs) if i not in missed])
        if wrote.error is None:
            return jobs
        missed = set(wrote.not_written)
        error = PartialEnqueue(
            f"{len(items) - len(missed):,} of {len(items):,} jobs were written, {len(missed):,} were not (retry only "
            f"PartialEnqueue.not_written): {wrote.reason}",
            [job for i, job in enumerate(jobs) if i not in missed],
            [specs[i] for i in wrote.not_written],
        )
        error.quiet = wrote.error.quiet
        raise error from wrote.error

    async def _enqueue_routed(self, specs: list[JobSpec[Any]]) -> list[Job[Any]]:
        """``enqueue_many`` of specs routed to several queues: one call per queue (in the order each first
        appears). A failure raises :class:`PartialEnqueue` with every job written and every spec not written."""
        by_queue: dict[str, list[int]] = {}
        for i, s in enumerate(specs):
            by_queue.setdefault(s.options.queue or self.queue, []).append(i)
        jobs: dict[int, Job[Any]] = {}
        for queue, indexes in by_queue.items():
            target = self if queue == self.queue else self._route(queue)
            try:
                written = await target.enqueue_many([specs[i] for i in indexes])
            except BrokerUnavailable as exc:
                partial = (
                    exc if isinstance(exc, PartialEnqueue) else PartialEnqueue("", [], [specs[i] for i in indexes])
                )
                done = [jobs[i] for i in sorted(jobs)] + partial.written
                later = [specs[i] for i in range(len(specs)) if i not in jobs and i not in indexes]
                raise PartialEnqueue(
                    f"{len(done):,} of {len(specs):,} jobs were written (retry only PartialEnqueue.not_written); "
                    f"queue {queue!r}: {exc}",
                    done,
                    partial.not_written + later,
                ) from exc
            jobs.update(zip(indexes, written, strict=True))
        return [jobs[i] for i in range(len(specs))]

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[Batch]:
        """``async with tasks.batch() as batch:`` — the jobs enqueued inside stand or fall with the block.

        Every enqueue made in the block (by this or any registry, in the block's context: its own code and what it
        awaits, not tasks it spawns) is noted in ``batch.jobs``. If the block raises (``CancelledError`` too), the
        jobs it created that have not started are cancelled in one script call (they never run; a duplicate
        enqueue's existing job is left alone); jobs already running are left to finish, and jobs already finished
        stay as they are. The exception is re-raised with a note saying which (``batch.cancelled``,
        ``batch.running``, ``batch.finished``). If Redis cannot be reached to cancel them, the note says so and the
        block's exception is raised all the same. Batches nest: an outer batch undoes what inner ones enqueued.
        """
        batch = Batch()
        token = _open.set((*_open.get(), batch))
        try:
            yield batch
        except BaseException as exc:
            _open.reset(token)
            await batch._undo(await self._broker(), exc)
            raise
        _open.reset(token)

    def workflow(self, name: str = "workflow", headers: Mapping[str, str] | None = None) -> Workflow:
        """A new, empty workflow (a DAG of jobs of this queue): add steps with :meth:`Workflow.step`, then send it
        with :meth:`Workflow.enqueue`. Every step inherits ``headers`` (a step's own keys win); raises
        :class:`ConfigurationError` for headers out of bounds (see :class:`~aqueue.JobOptions`)."""
        return Workflow(self, name, headers)

    async def workflow_handle(self, workflow_id: str) -> WorkflowHandle:
        """A handle on an enqueued workflow by id; :class:`UnknownJob` if there is none (or it expired)."""
        return await WorkflowHandle.load(self, workflow_id)

    def job(self, job_id: str) -> Job[Any]:
        """A handle on the job with this id, in any process; no Redis call (an unknown id raises
        :class:`UnknownJob` only when the handle is used)."""
        return Job(self, job_id)

    async def cancel(self, job_id: str, reason: str = "cancelled") -> bool:
        """Cancel a job by id; True if it will not run (again), False if it had already finished (see
        :meth:`Job.cancel`)."""
        return await self.job(job_id).cancel(reason)
