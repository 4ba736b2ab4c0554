"""A registered task (:class:`Task`): typed specs and enqueueing, options per job, argument checks; and the
periodic jobs registered with it (:class:`CronJob`)."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Concatenate, Generic, Literal, ParamSpec, Protocol, TypeVar, cast, overload

import anyio.to_thread

from aqueue._core.cron import CronSchedule
from aqueue._core.errors import ConfigurationError
from aqueue._core.job import Job
from aqueue._core.options import DedupMode, JobOptions
from aqueue._core.ratelimit import RateLimit
from aqueue._core.specs import Client, JobSpec

__all__ = ["CronJob", "Executor", "Task", "TaskDecorator", "check_executor", "seconds"]

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")


#: Where a plain-function task runs: a worker thread, or the worker's process pool.
Executor = Literal["thread", "process"]


def check_executor(fn: Callable[..., Any], executor: object) -> None:
    """Raise :class:`ConfigurationError` unless ``fn`` can run on ``executor``: a process task is a plain ``def``
    that a child process finds by name (a module-level function, not a lambda or a nested function)."""
    if executor == "thread":
        return
    if executor != "process":
        raise ConfigurationError(f"executor must be 'thread' or 'process', got {executor!r}")
    where = f"{getattr(fn, '__module__', None)}.{getattr(fn, '__qualname__', fn)}"
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        raise ConfigurationError(f"executor='process' is for plain functions: {where} is an async def")
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not inspect.isfunction(fn) or not module or "<" in qualname or module not in sys.modules:
        raise ConfigurationError(
            f"executor='process' needs a module-level function a child process can import by name; {where} is not "
            "one (a lambda, a nested function or a callable object cannot be found by name)"
        )


def seconds(value: float | timedelta | None) -> float | None:
    """``value`` in seconds: a :class:`~datetime.timedelta` converted, a number or None as it is."""
    return value.total_seconds() if isinstance(value, timedelta) else value


@dataclass(frozen=True, slots=True)
class CronJob:
    """A periodic job, as :meth:`Tasks.cron` and :meth:`Tasks.add_cron` register it: its schedule and the arguments
    each tick's job is enqueued with."""

    schedule: CronSchedule  #: when it runs, and which task
    args: tuple[Any, ...] = ()  #: positional arguments of every tick's job
    kwargs: dict[str, Any] = field(default_factory=dict)  #: keyword arguments of every tick's job


_Binder = Callable[[tuple[Any, ...] | list[Any], dict[str, Any]], None]


def _binder(fn: Callable[..., Any]) -> _Binder | None:
    """A function raising TypeError when its arguments would not bind to ``fn``'s signature."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some callables have no introspectable signature: the call will tell
        return None
    params = list(signature.parameters.values())

    def bind(args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> None:
        signature.bind(*args, **kwargs)

    if any(p.kind is not p.POSITIONAL_OR_KEYWORD for p in params):
        return bind
    most, least = len(params), sum(1 for p in params if p.default is p.empty)

    def count(args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> None:
        if kwargs or not least <= len(args) <= most:  # the usual all-positional call costs one comparison
            bind(args, kwargs)

    return count


_cached_binder = functools.lru_cache(maxsize=None)(_binder)  # task functions live as long as the process


def check_concurrency_limit(limit: object) -> None:
    """A task's ``concurrency_limit``: an int >= 1, or None. Raises :class:`ConfigurationError` otherwise."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigurationError(f"concurrency_limit must be an int >= 1 or None, got {limit!r}")


class Task(Generic[P, R]):
    """A registered task: ``await task.enqueue(...)`` runs it on a worker, ``task.spec(...)`` builds an unsent job.

    Made by ``@tasks.task`` (:meth:`Tasks.task`), not constructed directly. It is generic in the function's
    parameters ``P`` and result ``R``: type checkers check the arguments given to :meth:`enqueue` and :meth:`spec`
    against the function's signature, and type :meth:`Job.result` as the function's return type. ``await task(...)``
    calls the function in place, without a queue.
    """

    __slots__ = ("_options", "concurrency_limit", "executor", "fn", "is_async", "name", "rate_limit", "tasks")

    def __init__(
        self,
        tasks: Client,
        fn: Callable[P, Awaitable[R]] | Callable[P, R],
        name: str,
        options: JobOptions,
        rate_limit: RateLimit | None = None,
        executor: Executor = "thread",
        concurrency_limit: int | None = None,
    ) -> None:
        self.tasks = tasks  #: the registry (and so the queue) the task belongs to
        self.fn = fn  #: the decorated function
        self.name = name  #: the task's name: what jobs store and workers look up (``module.qualname`` by default)
        self.is_async = inspect.iscoroutinefunction(fn)  #: True for an ``async def``; a plain ``def`` runs in a thread
        self._options = options
        self.rate_limit = rate_limit  #: global limit on how often jobs of this task start
        #: Where a plain ``def`` runs: ``"thread"`` (a worker thread) or ``"process"`` (the worker's process pool).
        self.executor: Executor = executor
        #: The most jobs of this task running at once across every worker of the queue (None: no limit).
        self.concurrency_limit = concurrency_limit

    def arguments_error(self, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> str | None:
        """Why ``args`` and ``kwargs`` cannot be passed to the function, or None if they can (or if it has no
        signature to check). Cheap: a count comparison for the common signatures."""
        try:
            binder = _cached_binder(self.fn)
        except TypeError:  # an unhashable callable object
            binder = _binder(self.fn)
        if binder is None:
            return None
        try:
            binder(args, kwargs)
        except TypeError as exc:
            return f"arguments do not match task {self.name!r}{inspect.signature(self.fn)}: {exc}"
        return None

    def __repr__(self) -> str:
        return f"Task({self.name!r}, queue={self.tasks.queue!r})"

    @property
    def in_thread(self) -> bool:
        """True for a plain ``def`` that a worker runs in a thread (False for an ``async def`` or a process task)."""
        return not self.is_async and self.executor == "thread"

    @property
    def options(self) -> JobOptions:
        """The options jobs of this task get unless overridden."""
        return self._options

    def with_options(
        self,
        *,
        priority: str | None = None,
        delay: float | timedelta | None = None,
        max_attempts: int | None = None,
        timeout: float | timedelta | None = None,
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        dedup_key: str | None = None,
        dedup_ttl: float | timedelta | None = None,
        dedup_mode: DedupMode | None = None,
        ttl: float | timedelta | None = None,
        rerun_lost: bool | None = None,
        headers: Mapping[str, str] | None = None,
        job_id: str | None = None,
        keep_result: float | timedelta | None = None,
        retry_delay: float | timedelta | None = None,
        at: datetime | None = None,
        group: str | None = None,
        queue: str | None = None,
    ) -> Task[P, R]:
        """A copy of this task whose jobs get these options; the registered task is unchanged.

        ``await resize.with_options(priority="high", delay=30).enqueue("a.png", width=200)``. An option left
        ``None`` keeps the task's value. Durations are seconds or a :class:`~datetime.timedelta`: ``delay``
        postpones the job, ``timeout`` bounds one attempt, ``ttl`` is how long it may wait to start. ``headers`` are
        added to the task's (these win key by key; see ``docs/extending.md``). ``job_id`` names the job: while a
        record with that id exists, enqueueing it again returns that job (``Job.duplicate`` is True).
        ``keep_result`` is how long a succeeded job's record is kept (``0``: deleted at once; ``KEEP_FOREVER``),
        ``retry_delay`` a constant delay before every retry. ``at`` (an aware :class:`~datetime.datetime`) is when
        the job becomes due, instead of a ``delay`` (one replaces the other). ``group`` puts the job in a group that
        takes turns with the queue's other groups; ``queue`` enqueues it on another queue (whose workers have the
        task registered): see ``docs/queues.md``. Every option is described under
        :class:`~aqueue.JobOptions`. Raises :class:`ConfigurationError` for an unknown priority or an
        invalid value.
        """
        override = JobOptions(
            priority=priority,
            delay=seconds(delay) or 0.0,
            max_attempts=max_attempts,
            timeout=seconds(timeout),
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            dedup_key=dedup_key,
            dedup_ttl=seconds(dedup_ttl),
            dedup_mode=dedup_mode,
            ttl=seconds(ttl),
            rerun_lost=rerun_lost,
            headers=headers,
            job_id=job_id,
            keep_result=seconds(keep_result),
            retry_delay=seconds(retry_delay),
            at=at,  # checked with the delay: both in one call is an error
            group=group,
            queue=queue,
        )
        if priority is not None:
            self.tasks.settings.priority_index(priority)
        options = self._options.merged(override)
        if delay is not None:  # merged() cannot tell "delay=0" from "no delay given"; a delay replaces an at=
            options = dataclasses.replace(options, delay=override.delay, at=None)
        return Task(self.tasks, self.fn, self.name, options, self.rate_limit, self.executor, self.concurrency_limit)

    def spec(self, /, *args: P.args, **kwargs: P.kwargs) -> JobSpec[R]:
        """An unsent job with these arguments, for :meth:`Tasks.enqueue_many`, chains and workflows.

        The arguments are encoded now: raises :class:`SerializationError` if JSON cannot carry them. The registry's
        ``before_enqueue`` hooks run now, here (their exception is raised here).
        """
        return self.tasks._make_spec(self.name, args, kwargs, self._options)

    def spec_after(self: Task[Concatenate[Any, P2], R], /, *args: P2.args, **kwargs: P2.kwargs) -> JobSpec[R]:
        """Like :meth:`spec`, for a workflow step whose first argument the workflow supplies: its parents' result(s).

        That is a step added with ``pass_results=True``, and every step of a ``.then`` chain after the first. Give
        every argument but the first; type checkers check them against the rest of the task's signature, which
        :meth:`spec` cannot do for such a step.
        """
        return self.tasks._make_spec(self.name, args, kwargs, self._options)

    async def enqueue(self, /, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Enqueue one job with these arguments (one Redis round trip) and return its :class:`Job` handle.

        Raises :class:`SerializationError` if JSON cannot carry the arguments, :class:`BrokerUnavailable` if Redis
        does not answer (nothing is written in either case). With a ``dedup_key`` (:meth:`with_options`) held by an
        existing job, or a ``job_id`` an existing record has, that job's handle is returned instead
        (:attr:`Job.duplicate` is True).
        """
        return await self.tasks.enqueue(self.spec(*args, **kwargs))

    async def __call__(self, /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function here and now, and return its result (for tests and for composing tasks).

        No queue, worker, timeout or retry is involved, and the call is not a job of its own (inside a task,
        :func:`~aqueue.current_job` still returns the calling task's job). A plain function runs in a worker
        thread (anyio), as a worker runs it, so it does not block the event loop.
        """
        if self.is_async:
            return await cast(Callable[P, Awaitable[R]], self.fn)(*args, **kwargs)
        return await anyio.to_thread.run_sync(functools.partial(cast(Callable[P, R], self.fn), *args, **kwargs))


class TaskDecorator(Protocol):
    """What ``@tasks.task(...)`` with options returns: a decorator keeping the function's signature."""

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...
