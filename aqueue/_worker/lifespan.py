"""A worker run's lifespan: the registry's ``@tasks.lifespan`` entered before the first claim and exited after the
last settle, and what it yielded made available to :func:`aqueue.resources` for the whole run."""

from __future__ import annotations

import logging
import time
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any

from aqueue._core.context import Held, _resources
from aqueue._core.errors import LifespanError

if TYPE_CHECKING:
    from aqueue._core.tasks import Tasks

__all__ = ["Lifespan"]

log = logging.getLogger("aqueue._worker.worker")


class Lifespan:
    """``async with Lifespan(tasks, owner):`` around one worker run's serving (see :meth:`Tasks.lifespan`).

    Entering raises :class:`LifespanError` from the lifespan's own exception. Exiting resumes the generator
    normally whatever ended the run (the run's own exception is neither thrown in nor hidden) and logs an exception
    the generator raises. Sets the context variable :func:`aqueue.resources` reads, which the run's sub-tasks and
    slots inherit, and resets it at the end.
    """

    def __init__(self, tasks: Tasks, owner: str) -> None:
        self._tasks = tasks
        self._owner = owner
        self._cm: AbstractAsyncContextManager[Any] | None = None
        self._token: Token[Held | None] | None = None

    @property
    def _name(self) -> str:
        fn = self._tasks._lifespan
        return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}"

    async def __aenter__(self) -> None:
        fn = self._tasks._lifespan
        queue = self._tasks.queue
        if fn is None:
            self._token = _resources.set(Held(queue, None, present=False))
            return
        began = time.monotonic()
        cm = asynccontextmanager(fn)()
        try:
            value = await cm.__aenter__()
        except Exception as exc:
            raise LifespanError(
                f"worker {self._owner}: lifespan {self._name} of queue {queue!r} failed while starting: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self._cm = cm
        self._token = _resources.set(Held(queue, value, present=True))
        log.info("worker %s: lifespan %s entered in %.3fs", self._owner, self._name, time.monotonic() - began)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is not None:
            _resources.reset(self._token)
            self._token = None
        cm, self._cm = self._cm, None
        if cm is None:
            return
        try:
            await cm.__aexit__(None, None, None)
        except Exception:
            log.exception("worker %s: lifespan %s failed while stopping", self._owner, self._name)
        else:
            log.info("worker %s: lifespan %s exited", self._owner, self._name)
