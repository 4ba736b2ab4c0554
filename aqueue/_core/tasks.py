"""The task registry (:class:`Tasks`): a queue's tasks, cron jobs and rate limits, and control of the queue.

It is also the queue's client: it inherits enqueueing (:mod:`aqueue._core.producer`), the connection
(:mod:`aqueue._core.connection`), administration (:mod:`aqueue._core.admin`) and the workers' extension points
(:mod:`aqueue._core.hooks`: lifespan, middleware).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar, cast, overload

import orjson

from aqueue._core import codec
from aqueue._core.admin import AdminMixin
from aqueue._core.connection import ConnectionMixin, Stoppable
from aqueue._core.cron import CronSchedule, CronStatus, cron_statuses, parse_every
from aqueue._core.errors import ConfigurationError
from aqueue._core.events import EventHub
from aqueue._core.hooks import HooksMixin
from aqueue._core.info import QueueInfo
from aqueue._core.options import JobOptions
from aqueue._core.producer import ProducerMixin
from aqueue._core.ratelimit import RateLimit
from aqueue._core.record import JobStatus
from aqueue._core.settings import QueueSettings
from aqueue._core.task import CronJob, Executor, Task, TaskDecorator, check_concurrency_limit, check_executor, seconds
from aqueue._redis.broker import Broker
from aqueue._redis.connect import check_url, resolve_url
from aqueue._redis.keys import Keys

__all__ = ["FINISHED_STATUSES", "Tasks"]

#: Statuses ``cleanup`` removes by default: every finished one.
FINISHED_STATUSES = ("succeeded", "dead", "cancelled", "expired")

P = ParamSpec("P")
R = TypeVar("R")


class Tasks(ConnectionMixin, ProducerMixin, AdminMixin, HooksMixin):
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
        self._routes: dict[str, Tasks] = {}  # queue -> the registry that enqueues jobs routed there

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
        executor: Executor = "thread",
        headers: Mapping[str, str] | None = None,
        keep_result: float | timedelta | None = None,
        retry_delay: float | timedelta | None = None,
        concurrency_limit: int | None = None,
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
        executor: Executor = "thread",
        headers: Mapping[str, str] | None = None,
        keep_result: float | timedelta | None = None,
        retry_delay: float | timedelta | None = None,
        concurrency_limit: int | None = None,
    ) -> Any:
        """Register a function as a task: ``@tasks.task`` or ``@tasks.task(name=…, priority=…, …)``; returns the
        :class:`Task`.

        Async functions run on the worker's loop; plain functions run in a worker thread (anyio). ``name`` defaults
        to the function's ``module.qualname``; producers and workers must agree on it. ``priority``,
        ``max_attempts``, ``timeout``, ``backoff_base``, ``backoff_max``, ``retry_delay``, ``ttl``, ``keep_result``,
        ``rerun_lost`` and ``headers`` are defaults for the task's jobs (see :class:`~aqueue.JobOptions`; a job may
        override them with :meth:`Task.with_options`; its headers are merged key by key with the task's).
        ``rate_limit`` (``"100/m"``, ``"5000/s"``, or a :class:`~aqueue.RateLimit`) caps how often jobs of this
        task start, across every worker of the queue; ``concurrency_limit`` caps how many run at once, across every
        worker (jobs over it wait queued, not in a worker's slot: see ``docs/queues.md``). ``executor="process"``
        runs a plain ``def`` (a module-level function) in the worker's process pool instead of a thread: see
        ``docs/extending.md``. Raises :class:`ConfigurationError` if the name is already registered on this queue,
        or for an invalid option.
        """
        options = JobOptions(
            priority=priority,
            max_attempts=max_attempts,
            timeout=seconds(timeout),
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            ttl=seconds(ttl),
            rerun_lost=rerun_lost,
            headers=headers,
            keep_result=seconds(keep_result),
            retry_delay=seconds(retry_delay),
        )
        if priority is not None:
            self.settings.priority_index(priority)
        limit = RateLimit.parse(rate_limit) if rate_limit is not None else None
        check_concurrency_limit(concurrency_limit)

        def register(f: Callable[..., Any]) -> Task[Any, Any]:
            task_name = name or f"{f.__module__}.{f.__qualname__}"
            if task_name in self._registry:
                raise ConfigurationError(f"task {task_name!r} is already registered on queue {self.queue!r}")
            check_executor(f, executor)
            t: Task[Any, Any] = Task(self, f, task_name, options, limit, executor, concurrency_limit)
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
        run_at_startup: bool = False,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        priority: str | None = None,
        max_attempts: int | None = None,
        timeout: float | timedelta | None = None,
        ttl: float | timedelta | None = None,
    ) -> TaskDecorator:
        """Register a function as a task that workers enqueue periodically: a cron ``schedule`` (in ``tz``; 5
        fields, or 6 with seconds first) or ``every`` seconds / timedelta (aligned to the epoch).

        Exactly one job runs per tick however many workers run: the tick is claimed in Redis with the enqueue.
        Ticks missed while no worker ran are skipped, except the latest ``catch_up`` of them. ``run_at_startup``
        also enqueues one run when a worker starts, unless one was enqueued less than
        :data:`~aqueue._core.cron.STARTUP_WINDOW` (60 s) before, so workers started together run it once. The
        schedule's ``name`` defaults to the task name; ``args``/``kwargs`` are passed to every run.
        """
        inner = self.task(name=name, priority=priority, max_attempts=max_attempts, timeout=timeout, ttl=ttl)

        def register(f: Callable[..., Any]) -> Task[Any, Any]:
            t: Task[Any, Any] = inner(f)
            try:
                self.add_cron(
                    t,
                    schedule,
                    every=every,
                    tz=tz,
                    name=name,
                    catch_up=catch_up,
                    run_at_startup=run_at_startup,
                    args=args,
                    kwargs=kwargs,
                )
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
        run_at_startup: bool = False,
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
        sched = CronSchedule(
            cron_name, task.name, cron=schedule, every=interval, tz=tz, catch_up=catch_up, run_at_startup=run_at_startup
        )
        job = CronJob(sched, tuple(args), dict(kwargs or {}))
        self._item(task.spec(*job.args, **job.kwargs))  # bad arguments fail here, not at the first tick
        self._crons[cron_name] = job
        return job

    @property
    def crons(self) -> list[CronJob]:
        """Every periodic job registered on this queue."""
        return list(self._crons.values())

    async def cron_jobs(self) -> list[CronStatus]:
        """Every periodic job of the queue with its next and last run, sorted by name: those registered here and
        those only other processes' workers recorded in Redis (``schedule`` None)."""
        recorded = await (await self._broker()).cron_state()
        return cron_statuses((job.schedule for job in self._crons.values()), recorded)

    def _rate_limits_json(self) -> str:
        """Internal: the queue's and tasks' rate limits as the claim script takes them (``""`` when there are none)."""
        per_task = {t.name: t.rate_limit._wire() for t in self._registry.values() if t.rate_limit is not None}
        group_rate = self.settings.group_rate_limit
        out = {
            "t": per_task or None,
            "q": self.rate_limit._wire() if self.rate_limit is not None else None,
            "c": self.concurrency_limits or None,
            "gc": self.settings.group_concurrency,
            "g": group_rate._wire() if isinstance(group_rate, RateLimit) else None,
        }
        out = {key: value for key, value in out.items() if value is not None}  # JSON null is true in Lua
        return orjson.dumps(out).decode() if out else ""

    @property
    def concurrency_limits(self) -> dict[str, int]:
        """The ``concurrency_limit`` of every task that has one, by task name."""
        return {t.name: t.concurrency_limit for t in self._registry.values() if t.concurrency_limit is not None}

    def include(self, *others: Tasks) -> None:
        """Register every task of ``others`` here too, same names and options: for the workers of a queue that
        jobs are routed to (``task.with_options(queue="orders-eu")``). :class:`ConfigurationError` if a name is
        registered here already with another function."""
        for other in others:
            for name, t in other._registry.items():
                mine = self._registry.get(name)
                if mine is not None and mine.fn is not t.fn:
                    raise ConfigurationError(f"task {name!r} is already registered on queue {self.queue!r}")
                self._registry[name] = Task(self, t.fn, name, t.options, t.rate_limit, t.executor, t.concurrency_limit)

    def get(self, name: str) -> Task[Any, Any] | None:
        """The task registered under ``name``, or ``None``."""
        return self._registry.get(name)

    @property
    def names(self) -> list[str]:
        """Names of every registered task."""
        return list(self._registry)

    # -- control ---------------------------------------------------------------------------------------------

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
        age = seconds(older_than) or 0.0
        if age < 0:
            raise ConfigurationError(f"older_than must be >= 0 seconds, got {age}")
        wanted: list[str] = []
        for st in statuses:
            name = JobStatus.parse(str(st))
            if name is None or not name.finished:
                raise ConfigurationError(f"cleanup status must be one of {', '.join(FINISHED_STATUSES)}, got {st!r}")
            wanted.append(name.value)
        broker = await self._broker()
        total, more = 0, bool(wanted)
        while more:
            deleted, more = await broker.cleanup(round(age * 1000), wanted)
            total += deleted
        return total

    async def info(self) -> QueueInfo:
        """A :class:`QueueInfo` snapshot: jobs waiting per priority, active, scheduled, dead-lettered, the live
        workers, the lifetime counters, and the concurrency limits and groups in use."""
        return await (await self._broker()).info(self.concurrency_limits)
