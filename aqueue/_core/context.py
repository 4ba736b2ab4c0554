"""The running job's context: ``aqueue.current_job()`` and ``await aqueue.progress(...)`` inside a task."""

from __future__ import annotations

import math
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aqueue._core.specs import Client

__all__ = ["JobContext", "current_job", "progress"]


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a running task may know about its job; inside a task, :func:`current_job` returns it."""

    tasks: Client  #: the registry of the job's queue (the :class:`~aqueue.Tasks` the worker runs)
    job_id: str  #: the job's id
    task: str  #: the task's name
    attempt: int  #: which attempt this is, from 1

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


_current: ContextVar[JobContext | None] = ContextVar("aqueue_job", default=None)


def current_job() -> JobContext:
    """Inside a task run by a worker: the :class:`JobContext` of the job it runs as.

    Raises :class:`RuntimeError` anywhere else (including a task called directly, ``await task(...)``, outside a
    worker).
    """
    ctx = _current.get()
    if ctx is None:
        raise RuntimeError("aqueue.current_job() is only available inside a task run by a worker")
    return ctx


async def progress(value: float, message: str | None = None) -> bool:
    """Inside a task: record progress (0 to 100) on the running job; ``await aqueue.progress(50, "half way")``.

    Shorthand for ``current_job().progress(value, message)``: see :meth:`JobContext.progress`. Raises
    :class:`RuntimeError` outside a task run by a worker. A plain-function task runs in a thread: it calls
    ``anyio.from_thread.run(aqueue.progress, 50)``.
    """
    return await current_job().progress(value, message)
