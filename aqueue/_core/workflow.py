"""Workflows: jobs that wait for other jobs. A DAG of steps with success and failure branches, and chains.

A workflow is enqueued in one script call: steps without parents are queued (or scheduled), the others are written
as ``waiting`` with a count of what they wait for. Every terminal transition of a step (in the settle, claim,
promote and cancel scripts, through ``finish`` in ``_prelude.lua``) resolves its dependants atomically:

- a step ``after`` its parents (its success branch) is queued once every parent succeeded, and cancelled as soon
  as one ends otherwise (dead, expired, cancelled); the cancellation cascades down the success branches;
- a step ``on_failure`` of some steps (a failure handler, e.g. an alert) is queued the first time one of them
  ends without success, and skipped (status ``cancelled``, error ``skipped: …``) once all of them succeeded.

With ``pass_results`` a step receives, as its first argument, its parent's result (one parent) or the list of its
parents' results in the order given (fan-in); a failure handler receives ``{"job", "task", "status", "error"}``
of the step that failed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from aqueue._core.errors import ConfigurationError, ResultTimeout, UnknownJob
from aqueue._core.job import Job, JobRecord, JobSpec, JobStatus

if TYPE_CHECKING:
    from aqueue._core.tasks import Tasks

__all__ = ["Chain", "Step", "Workflow", "WorkflowHandle", "workflow"]

#: Most steps one workflow may have (it is written in one script call).
MAX_STEPS = 1000


@dataclass(eq=False, slots=True)
class Step:
    """One step of a :class:`Workflow`: build it with :meth:`Workflow.step` (or :meth:`then` / :meth:`on_failure`
    of another step), not directly."""

    workflow: Workflow  #: the workflow the step belongs to
    name: str  #: unique in the workflow; the key of :attr:`WorkflowHandle.jobs`
    spec: JobSpec[Any]  #: the job the step runs
    after: tuple[Step, ...] = ()  #: parents that must all succeed before it is queued
    on_failure_of: tuple[Step, ...] = ()  #: steps whose first failure queues it (a failure handler)
    pass_results: bool = False  #: whether it receives its parents' result(s) as its first argument
    #: The id its job will have, fixed when the step is added.
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def then(self, spec: JobSpec[Any], *, name: str | None = None, pass_results: bool = False) -> Step:
        """Add a step run after this one succeeds (its success branch) and return it; cancelled if this one ends
        without success. ``pass_results=True`` gives it this step's result as its first argument (build its spec
        with :meth:`Task.spec_after`)."""
        return self.workflow.step(spec, after=self, name=name, pass_results=pass_results)

    on_success = then

    def on_failure(self, spec: JobSpec[Any], *, name: str | None = None, pass_results: bool = False) -> Step:
        """Add a failure handler: a step run if this one ends without success (dead, expired or cancelled), skipped
        (status ``cancelled``) once it succeeded. With ``pass_results`` it receives ``{"job", "task", "status",
        "error"}`` of the failed step as its first argument."""
        return self.workflow.step(spec, on_failure=self, name=name, pass_results=pass_results)


def _steps(value: Step | Iterable[Step]) -> tuple[Step, ...]:
    return (value,) if isinstance(value, Step) else tuple(value)


class Workflow:
    """A DAG of jobs of one queue, sent in one script call: :meth:`Tasks.workflow` or :func:`workflow` makes one.

    Add steps with :meth:`step` (or :meth:`Step.then` / :meth:`Step.on_failure`), then :meth:`enqueue` it once.
    Steps without parents are queued (or scheduled) at once; the others wait. A step ``after`` its parents is queued
    once every parent succeeded, and cancelled as soon as one ends otherwise (dead, expired, cancelled), which
    cascades down its own success branches. A step ``on_failure`` of some steps is queued the first time one of
    them ends without success, and skipped (status ``cancelled``) once all of them succeeded. With
    ``pass_results`` a step receives, as its first argument, its parent's result (one parent) or the list of its
    parents' results in the order given; a failure handler receives ``{"job", "task", "status", "error"}`` of the
    step that failed. At most 1000 steps; steps cannot have a ``dedup_key``.
    """

    def __init__(self, tasks: Tasks, name: str = "workflow") -> None:
        self.tasks = tasks  #: the registry of the queue the steps run on
        self.name = name  #: a label, stored with the workflow and written in its ``workflow_started`` event
        self.id = uuid.uuid4().hex  #: the workflow's id, fixed at creation (:meth:`WorkflowHandle.load` takes it)
        self._steps: dict[str, Step] = {}
        self._sent = False

    @property
    def steps(self) -> list[Step]:
        """The steps, in the order they were added (parents always before their children)."""
        return list(self._steps.values())

    def step(
        self,
        spec: JobSpec[Any],
        *,
        after: Step | Iterable[Step] = (),
        on_failure: Step | Iterable[Step] = (),
        name: str | None = None,
        pass_results: bool = False,
    ) -> Step:
        """Add a step and return it: a root (no ``after``/``on_failure``), a step waiting for all of ``after`` to
        succeed, or a failure handler of the steps in ``on_failure`` (not both).

        ``name`` defaults to ``"<n>:<task>"`` (``"1:resize"``). Raises :class:`ConfigurationError` once the workflow
        was enqueued, for a parent of another workflow, a spec of another queue, a ``dedup_key``, a repeated name,
        or past 1000 steps.
        """
        if self._sent:
            raise ConfigurationError("this workflow was already enqueued; build a new one")
        parents, watched = _steps(after), _steps(on_failure)
        if parents and watched:
            raise ConfigurationError("a step waits either for its parents (after=) or handles failures (on_failure=)")
        for s in (*parents, *watched):
            if s.workflow is not self:
                raise ConfigurationError(f"step {s.name!r} belongs to another workflow")
        if spec.tasks is not None and spec.tasks is not self.tasks:
            raise ConfigurationError(f"every step must be a job of queue {self.tasks.queue!r}")
        if spec.options.dedup_key is not None:
            raise ConfigurationError("workflow steps cannot have a dedup_key")
        if len(self._steps) >= MAX_STEPS:
            raise ConfigurationError(f"a workflow has at most {MAX_STEPS} steps")
        step_name = name or f"{len(self._steps) + 1}:{spec.task.rpartition('.')[2]}"
        if step_name in self._steps:
            raise ConfigurationError(f"step name {step_name!r} is used twice")
        step = Step(self, step_name, spec, parents, watched, pass_results)
        self._steps[step_name] = step
        return step

    async def enqueue(self) -> WorkflowHandle:
        """Write every step in one script call and return the workflow's handle; a workflow is enqueued once.

        Raises :class:`ConfigurationError` for an empty or already enqueued workflow.
        """
        if not self._steps:
            raise ConfigurationError("a workflow needs at least one step")
        if self._sent:
            raise ConfigurationError("this workflow was already enqueued")
        items = []
        for step in self._steps.values():
            item = self.tasks._item(step.spec, receives_results=step.pass_results)
            options: dict[str, Any] = dict(item.options or {})
            options.update(wf=self.id, name=step.name)
            if step.after:
                options["after"] = [p.job_id for p in step.after]
            if step.on_failure_of:
                options["on"] = [p.job_id for p in step.on_failure_of]
            if step.pass_results:
                options["pass"] = "1" if len(step.after) == 1 or step.on_failure_of else "n"
            items.append(dataclasses.replace(item, job_id=step.job_id, options=options))
        jobs = {s.name: s.job_id for s in self._steps.values()}
        header = orjson.dumps([self.id, orjson.dumps(jobs).decode(), len(items), self.name]).decode()
        broker = await self.tasks._broker()
        await broker.enqueue(items, header)
        self._sent = True
        return WorkflowHandle(self.tasks, self.id, self.name, jobs)


def workflow(tasks: Tasks, name: str = "workflow") -> Workflow:
    """A new, empty :class:`Workflow` of ``tasks``' queue (the same as ``tasks.workflow(name)``): add steps with
    :meth:`Workflow.step`, then ``await wf.enqueue()``."""
    return Workflow(tasks, name)


class Chain:
    """Jobs run one after another, each receiving the previous one's result as its first argument.

    Build one with :meth:`JobSpec.then`: ``await a.spec(1).then(b.spec_after(2)).enqueue()``. If a job ends
    without success, the ones after it are cancelled. It is enqueued as a :class:`Workflow` named ``chain``.
    """

    def __init__(self, specs: list[JobSpec[Any]]) -> None:
        self.specs = list(specs)  #: the jobs, in order

    def then(self, spec: JobSpec[Any]) -> Chain:
        """A new chain: this one, then ``spec`` (which receives the previous job's result as its first argument)."""
        return Chain([*self.specs, spec])

    def workflow(self, tasks: Tasks | None = None) -> Workflow:
        """The chain as a :class:`Workflow` (to add failure handlers before enqueueing it); ``tasks`` defaults to the
        registry that made the first spec."""
        registry = tasks or self.specs[0].tasks
        if registry is None:
            raise ConfigurationError("this chain's jobs were not made by a Tasks registry; pass tasks=")
        wf = Workflow(registry, "chain")
        prev: Step | None = None
        for spec in self.specs:
            prev = wf.step(spec) if prev is None else prev.then(spec, pass_results=True)
        return wf

    async def enqueue(self) -> Job[Any]:
        """Enqueue the chain; returns the last job's handle (its ``result()`` is the chain's result)."""
        wf = self.workflow()
        handle = await wf.enqueue()
        return handle.jobs[wf.steps[-1].name]


class WorkflowHandle:
    """An enqueued workflow: its steps' jobs by name, and their states.

    :meth:`Workflow.enqueue` returns one; :meth:`Tasks.workflow_handle` (or :meth:`load`) gets one by id in any
    process.
    """

    def __init__(self, tasks: Tasks, workflow_id: str, name: str, jobs: dict[str, str]) -> None:
        self.tasks = tasks  #: the registry of the workflow's queue
        self.id = workflow_id  #: the workflow's id
        self.name = name  #: the workflow's name
        #: Step name → job handle.
        self.jobs: dict[str, Job[Any]] = {step: Job(tasks, job_id) for step, job_id in jobs.items()}

    def __repr__(self) -> str:
        return f"WorkflowHandle(id={self.id!r}, name={self.name!r}, steps={len(self.jobs)})"

    @classmethod
    async def load(cls, tasks: Tasks, workflow_id: str) -> WorkflowHandle:
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
