"""Events: the types written to a queue's events stream, and one reader per process that fans them out.

Events are written by the broker's Lua scripts in the same call as the state change they describe, so a reader
never sees a state without its event or an event without its state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from aqueue._core.aio import cancel_and_wait
from aqueue._core.errors import BrokerUnavailable
from aqueue._redis.breaker import MAX_RETRY_DELAY as _MAX_RETRY_DELAY

if TYPE_CHECKING:
    from aqueue._redis.broker import Broker

__all__ = ["EVENT_TYPES", "TERMINAL_EVENTS", "Event", "EventHub"]

log = logging.getLogger("aqueue._core.events")

#: Every event type the core writes to a queue's events stream (the ``type`` field of each entry). Follow them live
#: over the web app's WebSocket (``/ws``, with a ``types=`` filter), or read the stream with ``XREAD``.
EVENT_TYPES = frozenset(
    {"enqueued", "scheduled", "queued", "started", "succeeded", "failed", "retrying", "dead", "cancelled",
     "requeued", "scaling", "duplicate", "expired", "throttled", "progress", "cancelling", "paused", "resumed",
     "waiting", "workflow_started", "workflow_finished", "cron", "cleanup"}
)  # fmt: skip
#: Event types after which a job never changes again.
TERMINAL_EVENTS = frozenset({"succeeded", "dead", "cancelled", "expired"})

#: An event: its stream id and its fields (always ``type``; ``job`` and ``task`` for job events).
Event = tuple[str, dict[str, str]]


class EventHub:
    """Reads the events stream with plain XREAD (every reader sees every event) and dispatches to listeners.

    Started lazily by the first listener; one per :class:`~aqueue.Tasks`.
    """

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._watchers: dict[str, set[asyncio.Future[None]]] = {}
        self._listeners: list[Callable[[Event], None]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start reading after the newest event (idempotent); raises :class:`BrokerUnavailable` if Redis is down."""
        if self._task is None or self._task.done():
            last_id = await self._broker.last_event_id()
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._run(last_id), name="aqueue-events")

    def watch(self, job_id: str) -> asyncio.Future[None]:
        """A future resolved when ``job_id`` reaches a terminal event."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watchers.setdefault(job_id, set()).add(fut)
        return fut

    def unwatch(self, job_id: str, fut: asyncio.Future[None]) -> None:
        """Forget a watcher (after it fired or its waiter gave up)."""
        futs = self._watchers.get(job_id)
        if futs is not None:
            futs.discard(fut)
            if not futs:
                del self._watchers[job_id]

    def add_listener(self, fn: Callable[[Event], None]) -> None:
        """Call ``fn`` with every event read from now on."""
        self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[Event], None]) -> None:
        """Stop calling ``fn`` (no error if it was not listening)."""
        if fn in self._listeners:
            self._listeners.remove(fn)

    async def _run(self, last_id: str) -> None:
        backoff = 0.1
        while True:
            try:
                for event_id, fields in await self._broker.read_events(last_id, 1000, 5.0):
                    last_id = event_id
                    self._dispatch((event_id, fields))
                backoff = 0.1
            except BrokerUnavailable as exc:
                log.log(exc.log_level, "event reader: %s; retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_RETRY_DELAY)

    def _dispatch(self, event: Event) -> None:
        fields = event[1]
        if fields.get("type") in TERMINAL_EVENTS:
            for fut in self._watchers.pop(fields.get("job", ""), ()):
                if not fut.done():
                    fut.set_result(None)
        for fn in self._listeners:
            fn(event)

    async def close(self) -> None:
        """Stop reading."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
