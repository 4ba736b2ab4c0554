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

from aqueue.errors import ConfigurationError, ResultTimeout, UnknownJob
from aqueue.job import Job, JobRecord, JobSpec, JobStatus

if TYPE_CHECKING:
    from aqueue.tasks import Tasks

__all__ = ["Chain", "Step", "Workflow", "WorkflowHandle", "workflow"]

#: Most steps one workflow may have (it is written in one script call).
MAX_STEPS = 1000


@dataclass(eq=False, slots=True)
class Step:
    """One step of a :class:`Workflow` (build it with :meth:`Workflow.step`)."""

    workflow: Workflow
    name: str
    spec: JobSpec[Any]
    after: tuple[Step, ...] = ()
    on_failure_of: tuple[Step, ...] = ()
    pass_results: bool = False
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def then(self, spec: JobSpec[Any], *, name: str | None = None, pass_results: bool = False) -> Step:
        """A step run after this one succeeds (its success branch)."""
        return self.workflow.step(spec, after=self, name=name, pass_results=pass_results)

    on_success = then

    def on_failure(self, spec: JobSpec[Any], *, name: str | None = None, pass_results: bool = False) -> Step:
        """A step run if this one ends without success (dead, expired or cancelled), skipped otherwise."""
        return self.workflow.step(spec, on_failure=self, name=name, pass_results=pass_results)


def _steps(value: Step | Iterable[Step]) -> tuple[Step, ...]:
    return (value,) if isinstance(value, Step) else tuple(value)


class Workflow:
    """A DAG of jobs of one queue, sent in one script call. See the module docstring for the rules."""

    def __init__(self, tasks: Tasks, name: str = "workflow") -> None:
        self.tasks = tasks
        self.name = name
        self.id = uuid.uuid4().hex
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
        """Add a step: a root (no ``after``/``on_failure``), a step waiting for all of ``after`` to succeed, or a
        failure handler of the steps in ``on_failure``."""
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
        """Write every step in one script call and return the workflow's handle."""
        if not self._steps:
            raise ConfigurationError("a workflow needs at least one step")
        if self._sent:
            raise ConfigurationError("this workflow was already enqueued")
        items = []
        for step in self._steps.values():
            item = self.tasks._item(step.spec)
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
        broker = await self.tasks.broker()
        await broker.enqueue(items, header)
        self._sent = True
        return WorkflowHandle(self.tasks, self.id, self.name, jobs)


def workflow(tasks: Tasks, name: str = "workflow") -> Workflow:
    """A new, empty workflow of ``tasks``' queue: add steps with :meth:`Workflow.step`, then ``await .enqueue()``."""
    return Workflow(tasks, name)


class Chain:
    """Jobs run one after another, each receiving the previous one's result as its first argument."""

    def __init__(self, specs: list[JobSpec[Any]]) -> None:
        self.specs = list(specs)

    def then(self, spec: JobSpec[Any]) -> Chain:
        """This chain, then ``spec``."""
        return Chain([*self.specs, spec])

    def workflow(self, tasks: Tasks | None = None) -> Workflow:
        """The chain as a :class:`Workflow` (to add failure handlers before enqueueing it)."""
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
    """An enqueued workflow: its steps' jobs by name, and their states."""

    def __init__(self, tasks: Tasks, workflow_id: str, name: str, jobs: dict[str, str]) -> None:
        self.tasks = tasks
        self.id = workflow_id
        self.name = name
        #: Step name → job handle.
        self.jobs: dict[str, Job[Any]] = {step: Job(tasks, job_id) for step, job_id in jobs.items()}

    def __repr__(self) -> str:
        return f"WorkflowHandle(id={self.id!r}, name={self.name!r}, steps={len(self.jobs)})"

    @classmethod
    async def load(cls, tasks: Tasks, workflow_id: str) -> WorkflowHandle:
        """The handle of a workflow enqueued earlier (by any process)."""
        h = await (await tasks.broker()).workflow(workflow_id)
        try:
            jobs = orjson.loads(h["steps"])
        except (KeyError, ValueError):
            raise UnknownJob(f"no workflow {workflow_id!r} in queue {tasks.queue!r}") from None
        return cls(tasks, workflow_id, h.get("name", ""), jobs if isinstance(jobs, dict) else {})

    async def records(self) -> dict[str, JobRecord | None]:
        """Every step's record (None where it expired)."""
        broker = await self.tasks.broker()
        names = list(self.jobs)
        fields = await broker.record_fields([self.jobs[n].id for n in names], _RECORD_FIELDS)
        out: dict[str, JobRecord | None] = {}
        for n, f in zip(names, fields, strict=True):
            try:
                out[n] = JobRecord.from_hash(self.jobs[n].id, f) if f else None
            except ValueError:  # a record with an unknown status (written by something else): unreadable
                out[n] = None
        return out

    async def status(self) -> dict[str, JobStatus | None]:
        """Every step's status, by step name (None where the record expired)."""
        return {n: (r.status if r else None) for n, r in (await self.records()).items()}

    async def wait(self, timeout: float | None = None) -> dict[str, JobStatus | None]:
        """Wait until every step has finished (succeeded, dead, cancelled or expired); returns their statuses."""
        hub = await self.tasks.event_hub()
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
