"""The task registry (:class:`Tasks`), the ``@tasks.task`` decorator, and typed enqueueing."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, cast, overload

from aqueue import codec
from aqueue.backend.broker import Broker, EnqueueItem, QueueInfo
from aqueue.backend.connect import check_url, open_connection, resolve_url
from aqueue.errors import ConfigurationError
from aqueue.events import EventHub
from aqueue.job import Job, JobOptions, JobSpec
from aqueue.keys import Keys
from aqueue.settings import QueueSettings

__all__ = ["Task", "TaskDecorator", "Tasks"]

P = ParamSpec("P")
R = TypeVar("R")


def _seconds(value: float | timedelta | None) -> float | None:
    return value.total_seconds() if isinstance(value, timedelta) else value


class Task(Generic[P, R]):
    """A registered task: call ``enqueue`` to run it on a worker, ``spec`` to build a job for bulk enqueue."""

    __slots__ = ("_options", "fn", "is_async", "name", "tasks")

    def __init__(
        self, tasks: Tasks, fn: Callable[P, Awaitable[R]] | Callable[P, R], name: str, options: JobOptions
    ) -> None:
        self.tasks = tasks
        self.fn = fn
        self.name = name
        self.is_async = inspect.iscoroutinefunction(fn)
        self._options = options

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
    ) -> Task[P, R]:
        """This task with some options overridden for the jobs it enqueues (the registry is unchanged)."""
        override = JobOptions(
            priority=priority,
            delay=_seconds(delay) or 0.0,
            max_attempts=max_attempts,
            timeout=_seconds(timeout),
            backoff_base=backoff_base,
            backoff_max=backoff_max,
        )
        if priority is not None:
            self.tasks.settings.priority_index(priority)
        return Task(self.tasks, self.fn, self.name, self._options.merged(override))

    def spec(self, *args: P.args, **kwargs: P.kwargs) -> JobSpec[R]:
        """An unsent job with these arguments; raises :class:`SerializationError` if they are not JSON."""
        return self.tasks._make_spec(self.name, args, kwargs, self._options)

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Enqueue one job (one Redis round trip) and return its handle."""
        return await self.tasks.enqueue(self.spec(*args, **kwargs))

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function here, now (for tests and composition); no queue involved."""
        if self.is_async:
            return await cast(Callable[P, Awaitable[R]], self.fn)(*args, **kwargs)
        return cast(Callable[P, R], self.fn)(*args, **kwargs)


class TaskDecorator(Protocol):
    """What ``@tasks.task(...)`` with options returns: a decorator keeping the function's signature."""

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class Tasks:
    """A queue's task registry and producer API.

    ``redis_url`` ``None`` means ``$AQUEUE_REDIS_URL``, else ``redis://localhost:6379/0``; ``memory://`` runs on
    in-process fakeredis. The connection opens on first use, so a module can create its ``Tasks`` at import.
    """

    def __init__(
        self, queue: str = "default", redis_url: str | None = None, *, settings: QueueSettings | None = None
    ) -> None:
        if not queue or any(c in queue for c in "{}: \t\n"):
            raise ConfigurationError(f"queue name {queue!r} must be non-empty without braces, ':' or spaces")
        self.queue = queue
        self.settings = settings or QueueSettings()
        if redis_url is not None:
            check_url(redis_url)
        self._url = redis_url
        self._registry: dict[str, Task[Any, Any]] = {}
        self._broker: Broker | None = None
        self._hub: EventHub | None = None
        self._lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"Tasks(queue={self.queue!r}, redis_url={self.redis_url!r}, tasks={len(self._registry)})"

    @property
    def redis_url(self) -> str:
        """The URL this registry connects to."""
        return resolve_url(self._url)

    @property
    def keys(self) -> Keys:
        """Key names of this queue."""
        return Keys(self.queue, self.settings.priority_names)

    def configure(self, *, redis_url: str | None = None, queue: str | None = None) -> None:
        """Point this registry at another Redis or queue (the CLI's ``--redis``/``--queue``); before first use."""
        if self._broker is not None:
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
    ) -> Any:
        """Register a function as a task: ``@tasks.task`` or ``@tasks.task(name=…, priority=…, …)``.

        Async functions run on the worker's loop; plain functions run in a worker thread (anyio).
        """
        options = JobOptions(
            priority=priority,
            max_attempts=max_attempts,
            timeout=_seconds(timeout),
            backoff_base=backoff_base,
            backoff_max=backoff_max,
        )
        if priority is not None:
            self.settings.priority_index(priority)

        def register(f: Callable[..., Any]) -> Task[Any, Any]:
            task_name = name or f"{f.__module__}.{f.__qualname__}"
            if task_name in self._registry:
                raise ConfigurationError(f"task {task_name!r} is already registered on queue {self.queue!r}")
            t: Task[Any, Any] = Task(self, f, task_name, options)
            self._registry[task_name] = t
            return t

        return register(fn) if fn is not None else register

    def get(self, name: str) -> Task[Any, Any] | None:
        """The registered task called ``name``, or ``None``."""
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
        payload = codec.encode({"a": args, "k": kwargs, "o": resolved}, f"arguments of task {task!r}")
        return JobSpec(task, args, kwargs, options, payload)

    def _item(self, spec: JobSpec[Any]) -> EnqueueItem:
        priority = spec.options.priority or self.settings.default_priority
        self.settings.priority_index(priority)
        return EnqueueItem(uuid.uuid4().hex, spec.task, priority, round(spec.options.delay * 1000), spec.payload)

    async def enqueue(self, spec: JobSpec[R]) -> Job[R]:
        """Enqueue one prepared job (one round trip)."""
        item = self._item(spec)
        broker = await self.broker()
        await broker.enqueue([item])
        return Job(self, item.job_id)

    async def enqueue_many(self, specs: Iterable[JobSpec[Any]]) -> list[Job[Any]]:
        """Enqueue many prepared jobs, pipelined (one round trip for all); returns their handles in order."""
        items = [self._item(s) for s in specs]
        if items:
            broker = await self.broker()
            await broker.enqueue_many(items)
        return [Job(self, it.job_id) for it in items]

    def job(self, job_id: str) -> Job[Any]:
        """A handle on an existing job by id."""
        return Job(self, job_id)

    async def info(self) -> QueueInfo:
        """Depths per priority, active, scheduled, dead-letter size, live workers and counters."""
        return await (await self.broker()).info()

    # -- plumbing --------------------------------------------------------------------------------------------

    async def broker(self) -> Broker:
        """The connected broker (connects and loads scripts on first use)."""
        if self._broker is None:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self._broker is None:
                    broker = Broker(open_connection(self.redis_url), self.keys, self.settings)
                    try:
                        await broker.prepare()
                    except BaseException:
                        await broker.close()
                        raise
                    self._broker = broker
        return self._broker

    async def event_hub(self) -> EventHub:
        """This registry's events reader, started on first use."""
        if self._hub is None:
            self._hub = EventHub(await self.broker())
        await self._hub.start()
        return self._hub

    async def close(self) -> None:
        """Stop the events reader and close connections."""
        if self._hub is not None:
            await self._hub.close()
            self._hub = None
        if self._broker is not None:
            await self._broker.close()
            self._broker = None

    async def __aenter__(self) -> Tasks:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
