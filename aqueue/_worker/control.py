"""The control stream as one worker follows it, and the pause it sees.

Each worker reads the queue's ``control`` stream with a plain blocking XREAD (no consumer group: every worker sees
every command). ``cancel`` ends a job running here; ``resume`` wakes a claim loop that found the queue paused (the
claim script itself checks the pause, so a worker never starts a job of a paused queue; it re-checks every second
even if no ``resume`` arrives).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from aqueue._core.errors import BrokerUnavailable
from aqueue._redis.breaker import MAX_RETRY_DELAY as _MAX_RETRY_DELAY

if TYPE_CHECKING:
    from aqueue._core.tasks import Tasks

__all__ = ["Control"]

log = logging.getLogger("aqueue._worker.worker")

_BLOCK_SECONDS = 5.0  # longest single blocking read of the control stream


class Control:
    """Follows the control stream for one worker; ``cancel(job_id)`` ends a job running there."""

    def __init__(self, owner: str, tasks: Tasks, cancel: Callable[[str], None]) -> None:
        self._owner = owner
        self._tasks = tasks
        self._cancel = cancel
        self.paused = False  # the queue is paused, as the claim loop last saw it
        self._resumed = asyncio.Event()  # a ``resume`` arrived (or a stop: the claim loop must look again)
        self._from = "0-0"  # the last command read

    async def open(self) -> None:
        """A run begins: read only commands sent from now on (before claiming: no cancel of ours is missed)."""
        self._resumed = asyncio.Event()
        self._from = await (await self._tasks._broker()).last_control_id()

    def wake(self) -> None:
        """Wake a claim loop waiting for the queue to resume (a stop request)."""
        self._resumed.set()

    async def wait_resumed(self) -> None:
        """The queue is paused: wait for a ``resume`` command (or re-check after a second)."""
        if not self.paused:
            self.paused = True
            log.info("worker %s: queue %s is paused; running jobs finish, no new ones start", self._owner,
                     self._tasks.queue)  # fmt: skip
        self._resumed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await self._resumed.wait()

    def claimed(self) -> None:
        """A claim went through: the queue is not paused (any longer)."""
        if self.paused:
            self.paused = False
            log.info("worker %s: queue %s resumed", self._owner, self._tasks.queue)

    async def run(self) -> None:
        """Follow the control stream (a supervised sub-task): cancel running jobs of this worker, wake on
        ``resume``."""
        broker = await self._tasks._broker()
        backoff = 0.1
        while True:
            try:
                commands = await broker.read_control(self._from, _BLOCK_SECONDS)
                backoff = 0.1
            except BrokerUnavailable as exc:
                log.log(exc.log_level, "worker %s: control stream: %s; retrying in %.1fs", self._owner, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_RETRY_DELAY)
                continue
            for command_id, fields in commands:
                self._from = command_id
                cmd = fields.get("cmd")
                if cmd == "cancel":
                    self._cancel(fields.get("job", ""))
                elif cmd == "resume":
                    self._resumed.set()
