"""A worker's heartbeat: its registry entry, the renewal of the jobs it runs, and the blocked-loop report.

Every ``min(lease/3, 10 s)`` one ``heartbeat.lua`` call writes the worker's registry entry (``worker:<id>``, listed
by :meth:`Tasks.info`) and renews the idle time of the messages it runs (``XCLAIM … JUSTID``), only for messages it
still owns: a message it lost (another worker took it back) is reported. A blocked event loop delays the heartbeat,
so the loop watch's report of a long block triggers one at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from aqueue._core import codec
from aqueue._core.errors import BrokerUnavailable
from aqueue._core.wire import Claimed
from aqueue._worker.settler import Settler
from aqueue.autoscale.scaling import Strategy

if TYPE_CHECKING:
    from aqueue._core.tasks import Tasks

__all__ = ["Described", "Heartbeat"]

log = logging.getLogger("aqueue._worker.worker")


class Described(Protocol):
    """What a worker's registry entry shows of it (a :class:`~aqueue.Worker` is one)."""

    @property
    def id(self) -> str: ...
    @property
    def tasks(self) -> Tasks: ...
    @property
    def lease(self) -> float: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def min_concurrency(self) -> int: ...
    @property
    def max_concurrency(self) -> int: ...
    @property
    def autoscaling(self) -> bool: ...
    @property
    def strategy(self) -> Strategy: ...
    @property
    def failing(self) -> dict[str, str]: ...
    @property
    def metadata(self) -> Mapping[str, str]: ...


class Heartbeat:
    """The heartbeat of ``worker``, whose jobs ``settler`` holds."""

    def __init__(self, worker: Described, settler: Settler) -> None:
        self._worker = worker
        self._settler = settler
        self.interval = min(worker.lease / 3, 10.0)  #: seconds between two heartbeats
        #: Milliseconds the registry entry lives without a heartbeat.
        self.ttl_ms = round(max(worker.lease, 3 * self.interval) * 1000)
        self.loop_blocks = 0  # times the event loop was found blocked for more than a second
        self.started_at = 0.0
        self._now = asyncio.Event()

    def open(self) -> None:
        """A run begins (in the running loop)."""
        self._now = asyncio.Event()
        self.started_at = time.time()

    def soon(self) -> None:
        """Beat now rather than at the next interval (a sub-task's health changed, the loop was blocked)."""
        self._now.set()

    def info(self) -> str:
        """The registry entry: what ``Tasks.info()``, ``/status`` and the dashboard show of this worker."""
        w, s = self._worker, self._settler
        return codec.encode(
            {
                "id": w.id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "queue": w.tasks.queue,
                "concurrency": w.concurrency,
                "min_concurrency": w.min_concurrency,
                "max_concurrency": w.max_concurrency,
                "strategy": w.strategy.name if w.autoscaling else "fixed",
                "busy": s.busy,
                "processed": s.processed,
                "failed": s.failed,
                "started_at": self.started_at,
                "heartbeat_at": time.time(),
                "failing": w.failing,
                "metadata": dict(w.metadata),
            }
        )

    async def beat(self) -> None:
        """One heartbeat: the registry entry, and the renewal of the running jobs."""
        w = self._worker
        broker = await w.tasks._broker()
        running = [(c.stream, c.msg_id) for c in self._settler.running.values()]
        lost = await broker.heartbeat(w.id, running, self.info(), self.ttl_ms)
        for msg_id in lost:
            c = self._settler.running.get(msg_id)
            if c is not None:
                log.warning("job %s (%s) is no longer this worker's while running here: another worker took it back "
                            "(this one went longer than the lease without a heartbeat), or Redis lost it", c.job_id,
                            c.task)  # fmt: skip

    async def run(self) -> None:
        """Beat every :attr:`interval`, or at once when asked (a supervised sub-task)."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._now.wait()
            self._now.clear()
            try:
                await self.beat()
            except BrokerUnavailable as exc:
                log.log(exc.log_level, "worker %s: heartbeat failed: %s", self._worker.id, exc)

    def on_loop_blocked(self, seconds: float, culprit: object | None) -> None:
        """The event loop was blocked for ``seconds``; ``culprit`` is the job that was running when it was seen
        (:class:`~aqueue._worker.loopwatch.LoopWatch` calls this)."""
        self.loop_blocks += 1
        w = self._worker
        if isinstance(culprit, Claimed):
            who = f"by job {culprit.job_id} ({culprit.task}, attempt {culprit.attempt})"
        else:
            who = self._suspects(seconds)
        log.warning("worker %s: the event loop was blocked for %.1fs %s. A task that blocks it (time.sleep, CPU work "
                    "or blocking I/O in an async def, a thread holding the GIL) stops every job, the heartbeat and "
                    "the claims of this worker; a block longer than the lease (%.1fs) lets other workers take its "
                    "jobs back", w.id, seconds, who, w.lease)  # fmt: skip
        if seconds >= self.interval / 2:
            self.soon()  # renew the running jobs now rather than at the next interval

    def _suspects(self, seconds: float) -> str:
        """No job was seen on the loop's stack: name the plain functions in threads that ran during the block (one
        holding the GIL blocks the loop too), else what was running."""
        running = list(self._settler.running.values())
        since = time.monotonic() - seconds - 1.0  # the block ended moments ago: what finished in it ran in it
        threads = [c for done, c in reversed(self._settler.threads_done) if done >= since]
        threads += [c for c in running if (t := self._worker.tasks.get(c.task)) is not None and t.in_thread]
        shown = threads or running
        who = "; running: " + (", ".join(f"{c.job_id} ({c.task})" for c in shown[:10]) or "no job")
        if threads:
            who += " (plain functions in threads: one holding the GIL blocks the loop too)"
        return who
