"""Supervised sub-tasks: the long-lived loops a worker runs beside its slots (claim loop, settler, heartbeat,
scheduler, control reader, cron, supervisor, loop watch).

Each loop handles the failures it expects (Redis unavailable) itself. Anything else would end it silently and leave
the worker half alive (no heartbeat: its long jobs run again elsewhere; no settler: nothing is recorded). So each
runs under :class:`SubTasks`: an unexpected error is logged with its traceback (once per distinct error, not at
every restart), counted, and the loop restarts after a backoff (0.1 s doubling to 5 s). Streams deleted under the
worker (``FLUSHALL``, a Redis restarted without persistence) are repaired first: the consumer groups are recreated
and the loop restarts at once. A loop that has failed ``FAILING_AFTER`` times in a row is reported by
:attr:`SubTasks.failing` (the worker's registry entry and ``/health/ready`` show it) until it runs ``HEALTHY_AFTER``
seconds without failing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aqueue._core.aio import cancel_and_wait
from aqueue._core.errors import BrokerUnavailable

__all__ = ["FAILING_AFTER", "HEALTHY_AFTER", "SubTasks", "streams_gone"]

log = logging.getLogger("aqueue._worker.worker")

#: Consecutive failures after which a sub-task is reported as failing.
FAILING_AFTER = 3
#: Seconds a restarted sub-task must run without failing before its failures are forgotten.
HEALTHY_AFTER = 10.0
_MAX_BACKOFF = 5.0

#: What Redis answers a command on streams that were deleted under the worker (fakeredis: "requires the key to
#: exist"); a worker blocked on them at that moment is woken with UNBLOCKED.
_STREAMS_GONE = ("NOGROUP", "UNBLOCKED", "requires the key to exist")


def streams_gone(exc: BaseException) -> bool:
    """Whether ``exc`` says the queue's streams or consumer group no longer exist."""
    return not isinstance(exc, BrokerUnavailable) and any(sign in str(exc) for sign in _STREAMS_GONE)


@dataclass
class _Health:
    name: str
    failures: int = 0  # consecutive
    last_error: str = ""
    generation: int = 0  # bumped at each failure: a pending "healthy" timer of an older run does nothing


class SubTasks:
    """Starts and supervises the named sub-tasks of one worker run (see the module docstring).

    ``recreate`` repairs deleted streams (the worker's ``ensure_groups``); ``owner`` names the worker in logs;
    ``changed`` is called when :attr:`failing` changes (the worker then reports itself at once).
    """

    def __init__(
        self, owner: str, recreate: Callable[[], Awaitable[None]], changed: Callable[[], None] = lambda: None
    ) -> None:
        self._owner = owner
        self._recreate = recreate
        self._changed = changed
        self._health: dict[str, _Health] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}  #: the running sub-tasks by name

    @property
    def failing(self) -> dict[str, str]:
        """Sub-tasks that failed ``FAILING_AFTER`` or more times in a row, with their last error."""
        return {n: h.last_error for n, h in self._health.items() if h.failures >= FAILING_AFTER}

    def start(self, name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Run ``run()`` under supervision as the task ``aqueue-<name>``; it ends when ``run()`` returns."""
        task = asyncio.create_task(self._supervise(name, run), name=f"aqueue-{name}")
        self.tasks[name] = task
        return task

    async def stop(self, *names: str) -> None:
        """Cancel the named sub-tasks (those that were started) and wait until they have ended."""
        await cancel_and_wait(*(self.tasks[name] for name in names if name in self.tasks))

    async def _supervise(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        health = self._health.setdefault(name, _Health(name))
        loop = asyncio.get_running_loop()
        while True:
            loop.call_later(HEALTHY_AFTER, self._healthy, health, health.generation)
            try:
                await run()
                return
            except Exception as exc:
                if streams_gone(exc):
                    log.warning("worker %s: %s: the queue's streams were deleted (%s); recreating them", self._owner,
                                name, exc)  # fmt: skip
                    if await self._repair(name):
                        continue
                else:
                    self._failed(name, health, exc)
            delay = min(_MAX_BACKOFF, 0.1 * 2 ** min(health.failures, 10))
            await asyncio.sleep(delay)

    async def _repair(self, name: str) -> bool:
        try:
            await self._recreate()
            return True
        except BrokerUnavailable as exc:
            log.log(exc.log_level, "worker %s: %s: recreating the streams failed: %s", self._owner, name, exc)
        except Exception as exc:
            self._failed(name, self._health[name], exc)
        return False

    def _failed(self, name: str, health: _Health, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        health.failures += 1
        health.generation += 1
        if error != health.last_error:  # a repeat of the same error is not logged again at every restart
            log.error("worker %s: sub-task %s failed (%d in a row); restarting it", self._owner, name,
                      health.failures, exc_info=exc)  # fmt: skip
        else:
            log.debug("worker %s: sub-task %s failed again (%d in a row): %s", self._owner, name, health.failures,
                      error)  # fmt: skip
        health.last_error = error
        if health.failures >= FAILING_AFTER:
            self._changed()

    def _healthy(self, health: _Health, generation: int) -> None:
        if health.generation == generation and health.failures:
            if health.failures >= FAILING_AFTER:
                self._changed()
            health.failures = 0
            health.last_error = ""
            log.info("worker %s: sub-task %s runs again without failing", self._owner, health.name)
