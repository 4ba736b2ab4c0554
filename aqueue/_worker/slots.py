"""A resizable pool of long-lived slot coroutines that take claimed jobs from a queue and run them.

Long-lived coroutines instead of a task per job: at tens of thousands of jobs a second, creating and scheduling a
task per job is a measurable share of the time. Shrinking never cancels a running job: an idle surplus slot is
cancelled while it waits for work (nothing is lost, the queue keeps its item), a busy one leaves after its job.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable

from aqueue._core.aio import cancel_and_wait
from aqueue._core.wire import Claimed

__all__ = ["SlotPool"]

log = logging.getLogger("aqueue._worker.worker")


class SlotPool:
    """Runs ``run(job)`` for every job put in ``queue``, on ``size`` coroutines at most."""

    def __init__(self, queue: asyncio.Queue[Claimed], run: Callable[[Claimed], Awaitable[None]]) -> None:
        self._queue = queue
        self._run = run
        self._target = 0
        self._slots: set[asyncio.Task[None]] = set()
        self._idle: set[asyncio.Task[None]] = set()
        self._spawned = 0
        # The run's context (what aqueue.resources() reads), for slots started later from another task too (a
        # scale_to() from a web handler): each slot gets its own copy, since each sets the job it runs.
        self._context = contextvars.copy_context()

    @property
    def size(self) -> int:
        """Slot coroutines alive now (above the target while surplus ones finish their jobs)."""
        return len(self._slots)

    @property
    def running(self) -> int:
        """Slots running a job now."""
        return len(self._slots) - len(self._idle)

    def resize(self, target: int) -> None:
        """Grow at once; shrink by cancelling idle slots, and let busy surplus slots leave after their job."""
        self._target = target
        while len(self._slots) < target:
            self._spawned += 1
            task = asyncio.create_task(self._slot(), name=f"aqueue-slot-{self._spawned}", context=self._context.copy())
            self._slots.add(task)
        surplus = len(self._slots) - target
        for task in list(self._idle)[: max(0, surplus)]:
            self._idle.discard(task)
            self._slots.discard(task)
            task.cancel()

    async def close(self) -> None:
        """Cancel every slot, running or not, and wait for them to end."""
        slots = list(self._slots)
        self._slots.clear()
        self._idle.clear()
        await cancel_and_wait(*slots)

    async def _slot(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            while len(self._slots) <= self._target:  # a surplus slot leaves here, between jobs
                self._idle.add(task)
                try:
                    job = await self._queue.get()
                finally:
                    self._idle.discard(task)
                try:
                    await self._run(job)
                except Exception:  # run() settles every job's errors itself: a slot must outlive a defect
                    log.exception("slot %s: running job %s failed", task.get_name(), job.job_id)
        finally:
            self._slots.discard(task)
