"""The running job's context: ``aqueue.current_job()`` and ``await aqueue.progress(...)`` inside a task."""

from __future__ import annotations

import math
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aqueue.tasks import Tasks

__all__ = ["JobContext", "current_job", "progress"]


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a running task may know about its job."""

    tasks: Tasks
    job_id: str
    task: str
    attempt: int

    async def progress(self, value: float, message: str | None = None) -> bool:
        """Record progress (a percentage, 0 to 100) on the job and emit a ``progress`` event.

        Returns False if the job is no longer running (cancelled, or taken back by another worker).
        """
        if not isinstance(value, int | float) or not math.isfinite(value) or not 0 <= value <= 100:
            raise ValueError(f"progress must be a number from 0 to 100, got {value!r}")
        broker = await self.tasks.broker()
        return await broker.progress(self.job_id, value, message or "")


_current: ContextVar[JobContext | None] = ContextVar("aqueue_job", default=None)


def current_job() -> JobContext:
    """The job this task runs as; :class:`RuntimeError` outside a task run by a worker."""
    ctx = _current.get()
    if ctx is None:
        raise RuntimeError("aqueue.current_job() is only available inside a task run by a worker")
    return ctx


async def progress(value: float, message: str | None = None) -> bool:
    """Inside a task: record progress on the running job (see :meth:`JobContext.progress`)."""
    return await current_job().progress(value, message)
