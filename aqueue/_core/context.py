"""The running job's context: ``aqueue.current_job()``, ``await aqueue.progress(...)`` and ``aqueue.resources(...)``
inside a task."""

from __future__ import annotations

import math
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from aqueue._core.options import NO_HEADERS

if TYPE_CHECKING:
    from aqueue._core.specs import Client

__all__ = ["JobContext", "LogBuffer", "WatchedJob", "current_job", "progress", "resources"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a running task may know about its job; inside a task, :func:`current_job` returns it."""

    tasks: Client  #: the registry of the job's queue (the :class:`~aqueue.Tasks` the worker runs)
    job_id: str  #: the job's id
    task: str  #: the task's name
    attempt: int  #: which attempt this is, from 1
    #: The job's headers, read-only (empty when it has none): set by the producer (``headers=`` of the task,
    #: :meth:`Task.with_options` or the workflow, and ``@tasks.before_enqueue`` hooks).
    headers: Mapping[str, str] = field(default_factory=lambda: NO_HEADERS)
    #: The job's log lines of this attempt, made at its first (see :mod:`aqueue._core.joblogs`).
    _logs: LogBuffer | None = field(default=None, init=False, repr=False, compare=False)

    async def progress(self, value: float, message: str | None = None) -> bool:
        """Record progress (a percentage, 0 to 100) and an optional message on the job, and emit a ``progress``
        event; the record's ``progress``/``progress_message`` and the dashboard show it.

        Returns False if the job is no longer running (cancelled, or taken back by another worker). Raises
        :class:`ValueError` for a value that is not a number from 0 to 100.
        """
        if not isinstance(value, int | float) or not math.isfinite(value) or not 0 <= value <= 100:
            raise ValueError(f"progress must be a number from 0 to 100, got {value!r}")
        broker = await self.tasks._broker()
        return await broker.progress(self.job_id, value, message or "")

    @property
    def result(self) -> Any:
        """In a middleware (``@tasks.middleware``), once its ``yield`` has returned: what the task returned (after a
        middleware further in swallowed the task's exception, None). None before, and in the task itself."""
        return None


class LogBuffer:
    """What one attempt logged so far (:class:`~aqueue._core.joblogs.LogLine` s), and how many lines it dropped."""

    __slots__ = ("dropped", "lines")

    def __init__(self) -> None:
        self.lines: list[Any] = []
        self.dropped = 0


class WatchedJob(JobContext):
    """The context of a job that middleware wraps: a :class:`JobContext` with a slot for the task's return value
    (a subclass, so that a job without middleware allocates and sets nothing more)."""

    __slots__ = ("_result",)
    _result: Any

    def __init__(
        self, tasks: Client, job_id: str, task: str, attempt: int, headers: Mapping[str, str] = NO_HEADERS
    ) -> None:
        super().__init__(tasks, job_id, task, attempt, headers)
        object.__setattr__(self, "_result", None)

    @property
    def result(self) -> Any:
        """What the task returned, once it has (see :attr:`JobContext.result`)."""
        return self._result

    def _set_result(self, value: Any) -> None:
        object.__setattr__(self, "_result", value)


_current: ContextVar[JobContext | None] = ContextVar("aqueue_job", default=None)
_unavailable: str | None = None  # set in a process-pool child: why there is no job context there


def current_job() -> JobContext:
    """Inside a task run by a worker: the :class:`JobContext` of the job it runs as.

    Raises :class:`RuntimeError` anywhere else (including a task called directly, ``await task(...)``, outside a
    worker, and a task run with ``executor="process"``, in its child process).
    """
    ctx = _current.get()
    if ctx is None:
        raise RuntimeError(_unavailable or "aqueue.current_job() is only available inside a task run by a worker")
    return ctx


async def progress(value: float, message: str | None = None) -> bool:
    """Inside a task: record progress (0 to 100) on the running job; ``await aqueue.progress(50, "half way")``.

    Shorthand for ``current_job().progress(value, message)``: see :meth:`JobContext.progress`. Raises
    :class:`RuntimeError` outside a task run by a worker. A plain-function task runs in a thread: it calls
    ``anyio.from_thread.run(aqueue.progress, 50)``.
    """
    return await current_job().progress(value, message)


class Held:
    """What a worker run holds for :func:`resources`: its queue, and what its lifespan yielded (``present`` False
    when the registry has no lifespan)."""

    __slots__ = ("present", "queue", "value")

    def __init__(self, queue: str, value: object, present: bool) -> None:
        self.queue = queue
        self.value = value
        self.present = present


#: Set by a worker run for its whole duration; its slots (and the threads of plain-function tasks) inherit it.
_resources: ContextVar[Held | None] = ContextVar("aqueue_resources", default=None)


def resources(kind: type[T]) -> T:
    """Inside a task run by a worker (or a middleware): what this worker's lifespan yielded, checked to be a
    ``kind``; ``deps = aqueue.resources(Deps)``.

    The lifespan (``@tasks.lifespan``) is entered once per worker run, before its first claim, and exited after its
    last job settled. Works in plain ``def`` tasks too (their thread inherits the context). Raises
    :class:`RuntimeError` outside a worker run (a task called directly, a producer, a task run by
    ``executor="process"``: another process has no lifespan) and when the registry has no lifespan;
    :class:`TypeError` when the lifespan yielded something that is not a ``kind``.
    """
    held = _resources.get()
    if held is None:
        raise RuntimeError(
            "aqueue.resources() is only available while a worker runs, inside a task or a middleware (not in a task "
            "called directly, a producer, or a task run in another process)"
        )
    if not held.present:
        raise RuntimeError(f"aqueue.resources(): queue {held.queue!r} has no lifespan (register one: @tasks.lifespan)")
    if not isinstance(held.value, kind):
        raise TypeError(
            f"aqueue.resources({kind.__qualname__}): the lifespan of queue {held.queue!r} yielded a "
            f"{type(held.value).__qualname__}, not a {kind.__qualname__}"
        )
    return held.value
