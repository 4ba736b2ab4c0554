"""What is enqueued: one job (:class:`JobSpec`), a :class:`Chain` of them, or a :class:`Workflow` DAG of them.

Workflows are jobs that wait for other jobs: A DAG of steps with success and failure branches, and chains.

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

import dataclasses
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import orjson

from aqueue._core.batch import _open, note_enqueued
from aqueue._core.errors import ConfigurationError, InvalidArguments
from aqueue._core.job import Job, JobSource, WorkflowHandle
from aqueue._core.options import NO_HEADERS, JobOptions, check_headers
from aqueue._core.wire import EnqueueItem

if TYPE_CHECKING:
    from aqueue._core.settings import QueueSettings

__all__ = ["MAX_STEPS", "Chain", "Client", "JobSpec", "Step", "Workflow", "enqueue_item"]

R = TypeVar("R")


class _Checks(Protocol):
    def arguments_error(self, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> str | None: ...


class Client(JobSource, Protocol):
    """What specs, chains, workflows and tasks need of their registry (:class:`~aqueue.Tasks` is the one
    implementation): its settings, its tasks' argument checks, making and enqueueing a spec."""

    @property
    def settings(self) -> QueueSettings: ...

    def get(self, name: str) -> _Checks | None: ...

    def _make_spec(
        self,
        task: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: JobOptions,
        headers: Mapping[str, str] | None = None,
    ) -> JobSpec[Any]: ...

    async def enqueue(self, spec: JobSpec[R]) -> Job[R]: ...


def _delay_ms(options: JobOptions) -> int:
    """Milliseconds until the job is due, from now: its ``delay``, or its ``at`` on this process's clock."""
    if options.at is None:
        return round(options.delay * 1000)
    return max(0, round((options.at.timestamp() - time.time()) * 1000))


def enqueue_item(client: Client, spec: JobSpec[Any], receives_results: bool = False) -> EnqueueItem:
    """What the broker writes for ``spec`` on ``client``'s queue, with a new job id (or the caller's ``job_id``).
    Checks the arguments against the task's signature when the task is known here (:class:`InvalidArguments`) and
    the priority level (:class:`ConfigurationError`)."""
    task = client.get(spec.task) or (spec.tasks.get(spec.task) if spec.tasks is not None else None)
    if task is not None:  # a spec made by another registry for a task this one lacks: the worker will check
        args = (None, *spec.args) if receives_results else spec.args
        why = task.arguments_error(args, spec.kwargs)
        if why is not None:
            raise InvalidArguments(why)
    settings = client.settings
    priority = spec.options.priority or settings.default_priority
    settings.priority_index(priority)
    return EnqueueItem(
        spec.options.job_id or uuid.uuid4().hex,
        spec.task,
        priority,
        _delay_ms(spec.options),
        spec.payload,
        spec.options._script_options(),
    )


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
    tasks: Client | None = field(default=None, repr=False, compare=False)  #: the registry that made it
    #: The job's headers (read-only; empty when none): its options' headers, then what ``before_enqueue`` hooks
    #: added (and, for a workflow step, its workflow's; see ``docs/extending.md``).
    headers: Mapping[str, str] = field(default_factory=lambda: NO_HEADERS)

    def then(self, next_spec: JobSpec[Any]) -> Chain:
        """A chain: this job, then ``next_spec`` with this job's result prepended to its arguments.

        ``await a.spec(1).then(b.spec_after(2)).then(c.spec_after()).enqueue()`` returns the last job's handle. If a
        step ends without success (dead, expired, cancelled), the steps after it are cancelled.
        """
        return Chain([self]).then(next_spec)


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
    """A DAG of jobs of one queue, sent in one script call: :meth:`Tasks.workflow` makes one.

    Add steps with :meth:`step` (or :meth:`Step.then` / :meth:`Step.on_failure`), then :meth:`enqueue` it once.
    Steps without parents are queued (or scheduled) at once; the others wait. A step ``after`` its parents is queued
    once every parent succeeded, and cancelled as soon as one ends otherwise (dead, expired, cancelled), which
    cascades down its own success branches. A step ``on_failure`` of some steps is queued the first time one of
    them ends without success, and skipped (status ``cancelled``) once all of them succeeded. With
    ``pass_results`` a step receives, as its first argument, its parent's result (one parent) or the list of its
    parents' results in the order given; a failure handler receives ``{"job", "task", "status", "error"}`` of the
    step that failed. At most 1000 steps; steps cannot have a ``dedup_key`` or a ``job_id``.
    """

    def __init__(self, tasks: Client, name: str = "workflow", headers: Mapping[str, str] | None = None) -> None:
        self.tasks = tasks  #: the registry of the queue the steps run on
        self.name = name  #: a label, stored with the workflow and written in its ``workflow_started`` event
        #: Headers every step inherits; a step's own headers (its spec's) win key by key.
        self.headers: Mapping[str, str] = NO_HEADERS if not headers else check_headers(headers, "workflow headers")
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
        was enqueued, for a parent of another workflow, a spec of another queue, a ``dedup_key`` or ``job_id``, a
        repeated name, or past 1000 steps.
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
        if spec.options.queue not in (None, self.tasks.queue):
            # A step's end resolves its dependants in the same script (one queue's keys, one hash slot): a step on
            # another queue could not be linked atomically. See docs/queues.md.
            raise ConfigurationError(
                f"workflow and chain steps run on the workflow's queue {self.tasks.queue!r}, not {spec.options.queue!r}"
            )
        if spec.options.dedup_key is not None:
            raise ConfigurationError("workflow steps cannot have a dedup_key")
        if spec.options.job_id is not None:  # a step's id is fixed when it is added, and its parents link to it
            raise ConfigurationError("workflow and chain steps cannot have a job_id; their ids are Step.job_id")
        if len(self._steps) >= MAX_STEPS:
            raise ConfigurationError(f"a workflow has at most {MAX_STEPS} steps")
        step_name = name or f"{len(self._steps) + 1}:{spec.task.rpartition('.')[2]}"
        if step_name in self._steps:
            raise ConfigurationError(f"step name {step_name!r} is used twice")
        step = Step(self, step_name, self._inherit(spec, step_name), parents, watched, pass_results)
        self._steps[step_name] = step
        return step

    def _inherit(self, spec: JobSpec[Any], step: str) -> JobSpec[Any]:
        """``spec`` with the workflow's headers under its own (its own names win), re-encoded only if that adds
        anything; the ``before_enqueue`` hooks ran when it was made and do not run again."""
        if not self.headers or all(spec.headers.get(k) == v for k, v in self.headers.items()):
            return spec
        merged = check_headers({**self.headers, **spec.headers}, f"headers of step {step!r}")
        return self.tasks._make_spec(spec.task, spec.args, spec.kwargs, spec.options, merged)

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
            item = enqueue_item(self.tasks, step.spec, receives_results=step.pass_results)
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
        handle = WorkflowHandle(self.tasks, self.id, self.name, jobs)
        if _open.get():  # inside `async with tasks.batch()`: its steps stand or fall with the block
            note_enqueued(list(handle.jobs.values()))
        return handle


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

    def workflow(self, tasks: Client | None = None) -> Workflow:
        """The chain as a :class:`Workflow` (to add failure handlers before enqueueing it); ``tasks`` defaults to the
        registry that made the first spec."""
        registry = tasks or self.specs[0].tasks
        if registry is None:
            raise ConfigurationError("this chain's jobs were not made by a Tasks registry; pass tasks=")
        wf = Workflow(registry, "chain", self.specs[0].headers)  # every step inherits the first one's headers
        prev: Step | None = None
        for spec in self.specs:
            prev = wf.step(spec) if prev is None else prev.then(spec, pass_results=True)
        return wf

    async def enqueue(self) -> Job[Any]:
        """Enqueue the chain; returns the last job's handle (its ``result()`` is the chain's result)."""
        wf = self.workflow()
        handle = await wf.enqueue()
        return handle.jobs[wf.steps[-1].name]
