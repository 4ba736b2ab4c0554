"""The task registry (:class:`Tasks`), the ``@tasks.task`` decorator, and typed enqueueing."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, cast, overload

import anyio.to_thread
import orjson

from aqueue._core import codec
from aqueue._core.admin import AdminMixin
from aqueue._core.cron import CronSchedule, parse_every
from aqueue._core.errors import ConfigurationError, InvalidArguments, PartialEnqueue
from aqueue._core.events import EventHub
from aqueue._core.info import QueueInfo
from aqueue._core.job import DedupMode, Job, JobOptions, JobSpec, JobStatus
from aqueue._core.ratelimit import RateLimit
from aqueue._core.settings import QueueSettings
from aqueue._core.wire import EnqueueItem
from aqueue._redis.broker import Broker
from aqueue._redis.connect import check_url, open_connection, resolve_url
from aqueue._redis.keys import Keys

if TYPE_CHECKING:
    from aqueue._core.workflow import Workflow, WorkflowHandle

__all__ = ["CronJob", "Task", "TaskDecorator", "Tasks"]

#: Statuses ``cleanup`` removes by default: every finished one.
FINISHED_STATUSES = ("succeeded", "dead", "cancelled", "expired")

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")


def _seconds(value: float | timedelta | None) -> float | None:
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


class Task(Generic[P, R]):
    """A registered task: ``await task.enqueue(...)`` runs it on a worker, ``task.spec(...)`` builds an unsent job.

    Made by ``@tasks.task`` (:meth:`Tasks.task`), not constructed directly. It is generic in the function's
    parameters ``P`` and result ``R``: type checkers check the arguments given to :meth:`enqueue` and :meth:`spec`
    against the function's signature, and type :meth:`Job.result` as the function's return type. ``await task(...)``
    calls the function in place, without a queue.
    """

    __slots__ = ("_options", "fn", "is_async", "name", "rate_limit", "tasks")

    def __init__(
        self,
        tasks: Tasks,
        fn: Callable[P, Awaitable[R]] | Callable[P, R],
        name: str,
        options: JobOptions,
        rate_limit: RateLimit | None = None,
    ) -> None:
        self.tasks = tasks  #: the registry (and so the queue) the task belongs to
        self.fn = fn  #: the decorated function
        self.name = name  #: the task's name: what jobs store and workers look up (``module.qualname`` by default)
        self.is_async = inspect.iscoroutinefunction(fn)  #: True for an ``async def``; a plain ``def`` runs in a thread
        self._options = options
        self.rate_limit = rate_limit  #: global limit on how often jobs of this task start

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
    ) -> Task[P, R]:
        """A copy of this task whose jobs get these options; the registered task is unchanged.

        ``await resize.with_options(priority="high", delay=30).enqueue("a.png", width=200)``. An option left
        ``None`` keeps the task's value. Durations are seconds or a :class:`~datetime.timedelta`: ``delay``
        postpones the job, ``timeout`` bounds one attempt, ``ttl`` is how long it may wait to start. Every option is
        described under :class:`~aqueue.JobOptions`. Raises :class:`ConfigurationError` for an unknown priority or an
        invalid value.
        """
        override = JobOptions(
            priority=priority,
            delay=_seconds(delay) or 0.0,
            max_attempts=max_attempts,
            timeout=_seconds(timeout),
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            dedup_key=dedup_key,
            dedup_ttl=_seconds(dedup_ttl),
            dedup_mode=dedup_mode,
            ttl=_seconds(ttl),
            rerun_lost=rerun_lost,
        )
        if priority is not None:
            self.tasks.settings.priority_index(priority)
        options = self._options.merged(override)
        if delay is not None:  # merged() cannot tell "delay=0" from "no delay given"
            options = dataclasses.replace(options, delay=override.delay)
        return Task(self.tasks, self.fn, self.name, options, self.rate_limit)

    def spec(self, /, *args: P.args, **kwargs: P.kwargs) -> JobSpec[R]:
        """An unsent job with these arguments, for :meth:`Tasks.enqueue_many`, chains and workflows.

        The arguments are encoded now: raises :class:`SerializationError` if JSON cannot carry them.
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
        existing job, that job's handle is returned instead.
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


class Stoppable(Protocol):
    """What runs on a registry and :meth:`Tasks.close` stops first: a :class:`~aqueue.Worker`. It attaches itself
    with ``_attach`` while it runs; the registry never needs to know more of it than this."""

    def _runs(self, task: asyncio.Task[Any] | None) -> bool:
        """``task`` is one of the jobs it runs (stopping it from there would wait for that very job)."""
        ...

    def request_stop(self, *, cancel_running: bool = False) -> None: ...

    async def stop(self) -> None: ...


class TaskDecorator(Protocol):
    """What ``@tasks.task(...)`` with options returns: a decorator keeping the function's signature."""

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class Tasks(AdminMixin):
    """A queue's task registry and producer API: register tasks on it, enqueue jobs, follow and control them.

    ``queue`` names the queue (non-empty, without ``{``, ``}``, ``:``, spaces, tabs or newlines). ``redis_url``
    ``None`` means ``$AQUEUE_REDIS_URL``, else ``redis://localhost:6379/0``; ``memory://`` runs on in-process
    fakeredis. ``settings`` (:class:`QueueSettings`: priority levels, retries, lease, retention) must be the same
    in every producer and worker of the queue. ``rate_limit`` (``"100/s"`` or a :class:`RateLimit`) caps how often
    jobs of the whole queue start. ``redis_timeout`` bounds each call to Redis in seconds (default: the URL's
    ``socket_timeout`` option, else 5): a call Redis does not answer in time raises :class:`BrokerUnavailable`, and
    three in a row open the circuit breaker; a blocking wait gets its block time on top.

    The connection opens on first use, so a module can create its ``Tasks`` at import time. Close it with
    :meth:`close`, or use it as ``async with tasks: ...``. It belongs to the event loop that first uses it: after
    that loop is closed (each ``asyncio.run()``, each test of pytest-asyncio) it reconnects in the next one; using
    it in another loop while the first one is still open raises :class:`ConfigurationError`.
    """

    def __init__(
        self,
        queue: str = "default",
        redis_url: str | None = None,
        *,
        settings: QueueSettings | None = None,
        rate_limit: str | RateLimit | None = None,
        redis_timeout: float | None = None,
    ) -> None:
        if not queue or any(c in queue for c in "{}: \t\n"):
            raise ConfigurationError(f"queue name {queue!r} must be non-empty without braces, ':' or spaces")
        self.queue = queue  #: the queue's name
        self.settings = settings or QueueSettings()  #: the queue's settings
        if redis_url is not None:
            check_url(redis_url)
        self._url = redis_url
        if redis_timeout is not None and not (
            isinstance(redis_timeout, int | float) and not isinstance(redis_timeout, bool) and 0 < redis_timeout < 1e9
        ):
            raise ConfigurationError(f"redis_timeout must be seconds > 0, got {redis_timeout!r}")
        #: Seconds a call may wait for Redis (None: the URL's ``socket_timeout``, else 5).
        self.redis_timeout = redis_timeout
        self._registry: dict[str, Task[Any, Any]] = {}
        self._crons: dict[str, CronJob] = {}
        #: Global cap on how often jobs of this queue start (every task together), across all workers.
        self.rate_limit = RateLimit.parse(rate_limit) if rate_limit is not None else None
        self._broker_instance: Broker | None = None
        self._hub: EventHub | None = None
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the connection belongs to
        self._workers: set[Stoppable] = set()  # running on this registry: close() stops them first

    def __repr__(self) -> str:
        return f"Tasks(queue={self.queue!r}, redis_url={self.redis_url!r}, tasks={len(self._registry)})"

    @property
    def redis_url(self) -> str:
        """The Redis URL this registry connects to (the one given, else ``$AQUEUE_REDIS_URL``, else the default)."""
        return resolve_url(self._url)

    @property
    def _keys(self) -> Keys:
        """The Redis key names of this queue (for tools that inspect Redis directly)."""
        return Keys(self.queue, self.settings.priority_names)

    def configure(self, *, redis_url: str | None = None, queue: str | None = None) -> None:
        """Point this registry at another Redis or queue (what the CLI's ``--redis``/``--queue`` do).

        Only before the first connection: raises :class:`ConfigurationError` after it, or for an invalid URL or
        queue name.
        """
        if self._broker_instance is not None:
            raise ConfigurationError("configure() must be called before the first connection")
        if redis_url is not None:
            check_url(redis_url)
            self._url = redis_url
        if queue is not None:
            Tasks(queue)  # validates the name
            self.queue = queue

    # -- registration ----------------------------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...
    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        priority: str | None = None,
        max_attempts: int | None = None,
        timeout: float | timedelta | None = None,
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        ttl: float | timedelta | None = None,
        rate_limit: str | RateLimit | None = None,
        rerun_lost: bool | None = None,
    ) -> TaskDecorator: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        priority: str | None = None,
        max_attempts: int | None = None,
        timeout: float | timedelta | None = None,
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        ttl: float | timedelta | None = None,
        rate_limit: str | RateLimit | None = None,
        rerun_lost: bool | None = None,
    ) -> Any:
        """Register a function as a task: ``@tasks.task`` or ``@tasks.task(name=…, priority=…, …)``; returns the
        :class:`Task`.

        Async functions run on the worker's loop; plain functions run in a worker thread (anyio). ``name`` defaults
        to the function's ``module.qualname``; producers and workers must agree on it. ``priority``,
        ``max_attempts``, ``timeout``, ``backoff_base``, ``backoff_max``, ``ttl`` and ``rerun_lost`` are defaults
        for the task's jobs (see :class:`~aqueue.JobOptions`; a job may override them with
        :meth:`Task.with_options`).
        ``rate_limit`` (``"100/m"``, ``"5000/s"``, or a :class:`~aqueue.RateLimit`) caps how often jobs of this
        task start, across every worker of the queue. Raises :class:`ConfigurationError` if the name is already
        registered on this queue, or for an invalid option.
        """
        options = JobOptions(
            priority=priority,
            max_attempts=max_attempts,
            timeout=_seconds(timeout),
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            ttl=_seconds(ttl),
            rerun_lost=rerun_lost,
        )
        if priority is not None:
            self.settings.priority_index(priority)
        limit = RateLimit.parse(rate_limit) if rate_limit is not None else None

        def register(f: Callable[..., Any]) -> Task[Any, Any]:
            task_name = name or f"{f.__module__}.{f.__qualname__}"
            if task_name in self._registry:
                raise ConfigurationError(f"task {task_name!r} is already registered on queue {self.queue!r}")
            t: Task[Any, Any] = Task(self, f, task_name, options, limit)
            self._registry[task_name] = t
            return t

        return register(fn) if fn is not None else register

    def cron(
        self,
        schedule: str | None = None,
        /,
        *,
        every: float | timedelta | None = None,
        tz: str = "UTC",
        name: str | None = None,
        catch_up: int = 0,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        priority: str | None = None,
        max_attempts: int | None = None,
        timeout: float | timedelta | None = None,
        ttl: float | timedelta | None = None,
    ) -> TaskDecorator:
        """Register a function as a task that workers enqueue periodically: a 5-field cron ``schedule`` (in
        ``tz``) or ``every`` seconds / timedelta (aligned to the epoch).

        Exactly one job runs per tick however many workers run: the tick is claimed in Redis with the enqueue.
        Ticks missed while no worker ran are skipped, except the latest ``catch_up`` of them. The schedule's
        ``name`` defaults to the task name; ``args``/``kwargs`` are passed to every run.
        """
        inner = self.task(name=name, priority=priority, max_attempts=max_attempts, timeout=timeout, ttl=ttl)

        def register(f: Callable[..., Any]) -> Task[Any, Any]:
            t: Task[Any, Any] = inner(f)
            try:
                self.add_cron(t, schedule, every=every, tz=tz, name=name, catch_up=catch_up, args=args, kwargs=kwargs)
            except Exception:
                del self._registry[t.name]  # a bad schedule leaves no half-registered task behind
                raise
            return t

        return cast(TaskDecorator, register)

    def add_cron(
        self,
        task: Task[Any, Any],
        schedule: str | None = None,
        /,
        *,
        every: float | timedelta | None = None,
        tz: str = "UTC",
        name: str | None = None,
        catch_up: int = 0,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> CronJob:
        """Run an already registered task periodically, as :meth:`cron` does, and return its :class:`CronJob`.

        Raises :class:`ConfigurationError` if ``task`` is not registered on this registry, a cron job of that name
        exists, or the schedule is invalid; :class:`SerializationError` if JSON cannot carry ``args``/``kwargs``,
        :class:`InvalidArguments` if they do not fit the task's signature.
        """
        if self._registry.get(task.name) is None or task.tasks is not self:
            raise ConfigurationError(f"task {task.name!r} is not registered on queue {self.queue!r}")
        cron_name = name or task.name
        if cron_name in self._crons:
            raise ConfigurationError(f"a cron job named {cron_name!r} already exists on queue {self.queue!r}")
        interval = parse_every(every) if every is not None else None
        sched = CronSchedule(cron_name, task.name, cron=schedule, every=interval, tz=tz, catch_up=catch_up)
        job = CronJob(sched, tuple(args), dict(kwargs or {}))
        self._item(task.spec(*job.args, **job.kwargs))  # bad arguments fail here, not at the first tick
        self._crons[cron_name] = job
        return job

    @property
    def crons(self) -> list[CronJob]:
        """Every periodic job registered on this queue."""
        return list(self._crons.values())

    def _rate_limits_json(self) -> str:
        """Internal: the queue's and tasks' rate limits as the claim script takes them (``""`` when there are none)."""
        per_task = {t.name: t.rate_limit._wire() for t in self._registry.values() if t.rate_limit is not None}
        if self.rate_limit is None and not per_task:
            return ""
        out: dict[str, Any] = {"t": per_task} if per_task else {}
        if self.rate_limit is not None:
            out["q"] = self.rate_limit._wire()
        return orjson.dumps(out).decode()

    def get(self, name: str) -> Task[Any, Any] | None:
        """The task registered under ``name``, or ``None``."""
        return self._registry.get(name)

    @property
    def names(self) -> list[str]:
        """Names of every registered task."""
        return list(self._registry)

    # -- producing -------------------------------------------------------------------------------------------

    def _make_spec(self, task: str, args: tuple[Any, ...], kwargs: dict[str, Any], options: JobOptions) -> JobSpec[Any]:
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
        payload = codec.encode({"a": args, "k": kwargs, "o": resolved}, f"arguments of task {task!r}")
        return JobSpec(task, args, kwargs, options, payload, self)

    def _item(self, spec: JobSpec[Any], receives_results: bool = False) -> EnqueueItem:
        task = self._registry.get(spec.task) or (spec.tasks.get(spec.task) if spec.tasks is not None else None)
        if task is not None:  # a spec made by another registry for a task this one lacks: the worker will check
            args = (None, *spec.args) if receives_results else spec.args
            why = task.arguments_error(args, spec.kwargs)
            if why is not None:
                raise InvalidArguments(why)
        priority = spec.options.priority or self.settings.default_priority
        self.settings.priority_index(priority)
        return EnqueueItem(
            uuid.uuid4().hex,
            spec.task,
            priority,
            round(spec.options.delay * 1000),
            spec.payload,
            spec.options._script_options(),
        )

    async def enqueue(self, spec: JobSpec[R]) -> Job[R]:
        """Enqueue one job made by :meth:`Task.spec` (one round trip) and return its handle.

        With a ``dedup_key`` held by an existing job, that job's handle is returned instead (see
        :class:`~aqueue.JobOptions`). Raises :class:`ConfigurationError` if its priority is not a level of this
        queue, :class:`BrokerUnavailable` if Redis does not answer.
        """
        item = self._item(spec)
        broker = await self._broker()
        dups = await broker.enqueue([item])
        return Job(self, dups.get(0, item.job_id))

    async def enqueue_many(self, specs: Iterable[JobSpec[Any]]) -> list[Job[Any]]:
        """Enqueue many jobs made by :meth:`Task.spec`; returns their handles in the same order.

        One script call per 500 jobs, all pipelined in one round trip. A job whose ``dedup_key`` is held gets the
        existing job's handle, as with :meth:`enqueue`. Each call of 500 is written whole or not at all, the batch
        is not: if Redis refuses some calls (``maxmemory`` reached midway) or the connection drops midway, raises
        :class:`PartialEnqueue` (a :class:`BrokerUnavailable`) with the handles of the jobs written and the specs
        not written; retry only those specs. :class:`BrokerUnavailable` itself means none was written, or that Redis
        stopped answering before it could tell which were.
        """
        specs = list(specs)
        items = [self._item(s) for s in specs]
        if not items:
            return []
        broker = await self._broker()
        wrote = await broker.enqueue_many(items)
        jobs: list[Job[Any]] = [Job(self, wrote.duplicates.get(i, it.job_id)) for i, it in enumerate(items)]
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

    def workflow(self, name: str = "workflow") -> Workflow:
        """A new, empty workflow (a DAG of jobs of this queue): add steps with :meth:`Workflow.step`, then send it
        with :meth:`Workflow.enqueue`."""
        from aqueue._core.workflow import Workflow

        return Workflow(self, name)

    async def workflow_handle(self, workflow_id: str) -> WorkflowHandle:
        """A handle on an enqueued workflow by id; :class:`UnknownJob` if there is none (or it expired)."""
        from aqueue._core.workflow import WorkflowHandle

        return await WorkflowHandle.load(self, workflow_id)

    # -- control ---------------------------------------------------------------------------------------------

    async def cancel(self, job_id: str, reason: str = "cancelled") -> bool:
        """Cancel a job by id; True if it will not run (again), False if it had already finished (see
        :meth:`Job.cancel`)."""
        return await self.job(job_id).cancel(reason)

    async def pause(self, by: str = "api") -> bool:
        """Pause the queue: no worker starts a job until :meth:`resume` (running jobs finish). False if it was
        already paused.

        Workers see it at their next claim, which reads the pause flag atomically. ``by`` is recorded as who paused
        it (see :meth:`paused`). Enqueueing goes on while the queue is paused.
        """
        return await (await self._broker()).set_paused(True, by)

    async def resume(self) -> bool:
        """Resume a paused queue; False if it was not paused."""
        return await (await self._broker()).set_paused(False, "")

    async def paused(self) -> dict[str, Any] | None:
        """``{"at": Unix seconds (Redis clock), "by": who}`` while the queue is paused, else None."""
        raw = await (await self._broker()).paused()
        if raw is None:
            return None
        try:
            info = codec.decode(raw)
        except ValueError:
            return {"at": None, "by": raw}
        return info if isinstance(info, dict) else {"at": None, "by": raw}

    async def cleanup(
        self, older_than: float | timedelta = 0.0, statuses: Iterable[str | JobStatus] = FINISHED_STATUSES
    ) -> int:
        """Delete finished job records that ended at least ``older_than`` ago; returns how many.

        Reads the per-status cleanup index (never scans the keyspace), in batches of 1,000. With ``dead``, the
        dead-letter entries older than that go too. Records also expire on their own after the queue's
        ``succeeded_ttl`` / ``dead_ttl``.
        """
        seconds = _seconds(older_than) or 0.0
        if seconds < 0:
            raise ConfigurationError(f"older_than must be >= 0 seconds, got {seconds}")
        wanted: list[str] = []
        for st in statuses:
            name = JobStatus.parse(str(st))
            if name is None or not name.finished:
                raise ConfigurationError(f"cleanup status must be one of {', '.join(FINISHED_STATUSES)}, got {st!r}")
            wanted.append(name.value)
        broker = await self._broker()
        total, more = 0, bool(wanted)
        while more:
            deleted, more = await broker.cleanup(round(seconds * 1000), wanted)
            total += deleted
        return total

    def job(self, job_id: str) -> Job[Any]:
        """A handle on the job with this id, in any process; no Redis call (an unknown id raises
        :class:`UnknownJob` only when the handle is used)."""
        return Job(self, job_id)

    async def info(self) -> QueueInfo:
        """A :class:`QueueInfo` snapshot: jobs waiting per priority, active, scheduled, dead-lettered, the live
        workers and the lifetime counters."""
        return await (await self._broker()).info()

    # -- plumbing --------------------------------------------------------------------------------------------

    async def _broker(self) -> Broker:
        """Internal: the connected broker, the only code that talks to Redis (connects and loads the scripts on first
        use; :class:`BrokerUnavailable` if Redis does not answer)."""
        if self._loop is not asyncio.get_running_loop():
            self._bind()
        if self._broker_instance is None:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self._broker_instance is None:
                    broker = Broker(open_connection(self.redis_url, self.redis_timeout), self._keys, self.settings)
                    try:
                        await broker.prepare()
                    except BaseException:
                        await broker.close()
                        raise
                    self._broker_instance = broker
        return self._broker_instance

    def _bind(self) -> None:
        """Adopt the running loop: forget a connection, reader and lock left by a closed loop (they cannot be used,
        nor closed, from this one); :class:`ConfigurationError` while the loop that made them is still open."""
        old = self._loop
        if old is not None and not old.is_closed() and (self._broker_instance is not None or self._hub is not None):
            raise ConfigurationError(f"{self!r} is connected in another event loop that is still open: await "
                                     "tasks.close() in that loop first, or use one Tasks per event loop")  # fmt: skip
        self._broker_instance, self._hub, self._lock = None, None, None
        if old is not None and old.is_closed():
            self._workers.clear()  # they ran in the closed loop
        self._loop = asyncio.get_running_loop()

    async def _event_hub(self) -> EventHub:
        """Internal: this process's reader of the queue's events stream (what :meth:`Job.result` waits with),
        started on first use."""
        broker = await self._broker()  # first: a reader left by a closed event loop is dropped there
        if self._hub is None:
            self._hub = EventHub(broker)
        await self._hub.start()
        return self._hub

    def _attach(self, worker: Stoppable) -> None:
        """``worker`` runs on this registry from now on: :meth:`close` stops it first."""
        self._workers.add(worker)

    def _detach(self, worker: Stoppable) -> None:
        self._workers.discard(worker)

    async def close(self, *, cancel_running: bool = False) -> None:
        """Stop the workers running on this registry, then the events reader, and close the Redis connections.
        Using the registry again reconnects.

        A worker still running here is stopped first, as :meth:`Worker.stop` does: it lets its running jobs finish
        (up to its ``shutdown_timeout``) and puts its prefetched ones back, while it can still reach Redis. With
        ``cancel_running`` (what leaving ``async with tasks:`` on an exception does) it cancels its running jobs at
        once and puts them back in the queue for another run.
        """
        if self._loop is not asyncio.get_running_loop():
            self._bind()  # what a closed loop left cannot be closed from this one: it is dropped
        current = asyncio.current_task()
        # Not a worker whose job is closing the registry: stopping it would wait for this very call.
        workers = [w for w in self._workers if not w._runs(current)]
        if workers:
            if cancel_running:
                for worker in workers:
                    worker.request_stop(cancel_running=True)
            await asyncio.gather(*(worker.stop() for worker in workers))
        if self._hub is not None:
            await self._hub.close()
            self._hub = None
        if self._broker_instance is not None:
            await self._broker_instance.close()
            self._broker_instance = None
        self._lock = None  # an asyncio.Lock binds to the loop that first waits on it
        self._loop = None

    async def __aenter__(self) -> Tasks:
        """``async with tasks:`` returns the registry itself (nothing connects until first use)."""
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """Leaving ``async with tasks:`` closes the registry (:meth:`close`); on an exception, a worker still running
        on it cancels its running jobs and puts them back instead of waiting for them."""
        await self.close(cancel_running=exc_type is not None)
