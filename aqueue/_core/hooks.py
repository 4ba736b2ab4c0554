"""The registry's extension points: for its workers, the lifespan (``@tasks.lifespan``) and job middleware
(``@tasks.middleware``), which :mod:`aqueue._worker.lifespan` and :mod:`aqueue._worker.middleware` run; for its
producers, ``@tasks.before_enqueue`` hooks, which :meth:`ProducerMixin._make_spec` runs."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

from aqueue._core.context import JobContext
from aqueue._core.errors import ConfigurationError

__all__ = ["BeforeEnqueue", "HooksMixin", "LifespanFunction", "Middleware", "MiddlewareFunction"]

T = TypeVar("T")
#: What ``@tasks.before_enqueue`` decorates: a plain function given the job's headers to add to (in place).
BeforeEnqueue = Callable[[dict[str, str]], None]
B = TypeVar("B", bound=BeforeEnqueue)
M = TypeVar("M", bound="Callable[[JobContext], AsyncIterator[None]]")

#: What ``@tasks.lifespan`` decorates: an async generator function that yields once.
LifespanFunction = Callable[[], AsyncIterator[Any]]
#: What ``@tasks.middleware`` decorates: an async generator function of the job's context that yields once.
MiddlewareFunction = Callable[[JobContext], AsyncIterator[None]]
#: A registered middleware, as the worker enters it for a job.
Middleware = Callable[[JobContext], AbstractAsyncContextManager[None]]


def _check(kind: str, fn: object) -> str:
    name = getattr(fn, "__qualname__", repr(fn))
    if not inspect.isasyncgenfunction(fn):
        raise ConfigurationError(
            f"@tasks.{kind} takes an async generator function (an `async def` with one `yield`), got {name}"
        )
    return name


class HooksMixin:
    """:class:`~aqueue.Tasks`' extension points: the workers' lifespan and the middleware around every job."""

    queue: str
    _lifespan: LifespanFunction | None = None  # at most one per registry
    _middlewares: tuple[Middleware, ...] = ()  # outermost first; a tuple, so the hot path tests it for free
    _before_enqueue: tuple[BeforeEnqueue, ...] = ()  # in registration order; empty: making a spec costs nothing

    def lifespan(self, fn: Callable[[], AsyncIterator[T]], /) -> Callable[[], AsyncIterator[T]]:
        """Register the workers' lifespan: ``@tasks.lifespan`` on an async generator function with one ``yield``
        (as for :func:`contextlib.asynccontextmanager`); returns the function unchanged.

        Every worker run of this registry enters it once, before its first claim, and exits it after its last job
        settled (also on SIGINT/SIGTERM, :meth:`Worker.stop`, and when ``run()`` is cancelled). What it yields is
        what ``aqueue.resources(Kind)`` returns inside the jobs. Producers never run it. An exception while entering
        stops the run before it claims anything (:class:`LifespanError`); one while exiting is logged with its
        traceback. The run's own exception is not thrown in at the ``yield``: the generator always resumes normally,
        so put the clean-up in ``finally``/``async with`` and it runs either way.

        One lifespan per registry: raises :class:`ConfigurationError` for a second one (enter several resources in
        the one generator, e.g. with :class:`contextlib.AsyncExitStack`), or for a function that is not an async
        generator function.
        """
        name = _check("lifespan", fn)
        if self._lifespan is not None:
            raise ConfigurationError(
                f"queue {self.queue!r} already has a lifespan ({self._lifespan.__qualname__}); {name} would be a "
                "second: enter every resource in one lifespan"
            )
        self._lifespan = fn
        return fn

    def middleware(self, fn: M, /) -> M:
        """Register a middleware around every job this registry's workers run: ``@tasks.middleware`` on an async
        generator function that takes the :class:`JobContext` and yields once; returns the function unchanged.

        The job runs at the ``yield``: afterwards ``job.result`` holds what the task returned, and its exception
        (including ``TimeoutError`` of the job's timeout, which covers the task only) is raised at the ``yield``.
        A middleware may re-raise it, raise :class:`Retry` or :class:`Reject` instead, or swallow it (the attempt
        then succeeds with result None). An exception a middleware raises itself fails the attempt like one of the
        task, with its traceback. Never swallow ``asyncio.CancelledError`` (a cancelled job, or a shutdown):
        catch ``Exception``, not ``BaseException``. The first registered is the outermost. Raises
        :class:`ConfigurationError` for a function that is not an async generator function.
        """
        _check("middleware", fn)
        self._middlewares = (*self._middlewares, asynccontextmanager(fn))
        return fn

    def before_enqueue(self, fn: B, /) -> B:
        """Register a producer-side hook: ``@tasks.before_enqueue`` on a plain function ``(headers) -> None``; returns
        the function unchanged.

        It is called each time a job of this registry is made (:meth:`Task.spec`, so :meth:`Task.enqueue`, the specs
        given to :meth:`Tasks.enqueue_many`, chain and workflow steps), in the caller's context (a
        :class:`~contextvars.ContextVar` the caller set is visible), with a new ``dict`` of the job's headers so
        far (the task's and :meth:`Task.with_options`'); it adds, replaces or removes headers in place. Hooks run in
        the order registered; the result is checked against the bounds (:class:`ConfigurationError`). An exception a
        hook raises reaches the caller, and nothing is enqueued. Raises :class:`ConfigurationError` for an async
        function or a non-callable.
        """
        if not callable(fn) or inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            raise ConfigurationError(
                f"@tasks.before_enqueue takes a plain function (headers: dict[str, str]) -> None, got {fn!r}"
            )
        self._before_enqueue = (*self._before_enqueue, fn)
        return fn
