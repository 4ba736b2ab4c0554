"""The events stream, read and written outside the scripts: the readers that follow it, and scaling decisions.

Stage: events. Every script writes its own state-change events; this is how they are read (the ``EventHub`` of
each ``Tasks``, the web app's live feed and its listings), and how the events that are no job's state change
(``scaling``, or any other :meth:`Events.emit`) are written.
"""

from __future__ import annotations

from aqueue._redis.base import BrokerBase
from aqueue._redis.guard import unavailable

__all__ = ["SCALING_MAXLEN", "Events"]

#: Approximate cap of the stream that keeps scaling decisions apart from the (much busier) events stream.
SCALING_MAXLEN = 1000


class Events(BrokerBase):
    """Read the events stream (blocking, or paging backwards), write events that are not job state changes."""

    @unavailable
    async def emit(self, fields: dict[str, str | int | float]) -> str:
        """Append an event that is not a job state change (e.g. ``scaling``) to the events stream."""
        event_id: str = await self.redis.xadd(
            self.keys.events, fields, maxlen=self.settings.events_maxlen, approximate=True
        )
        self._bump()
        return event_id

    @unavailable
    async def last_event_id(self) -> str:
        """Id of the newest event, or ``0-0``."""
        last = await self.redis.xrevrange(self.keys.events, count=1)
        return str(last[0][0]) if last else "0-0"

    @unavailable
    async def read_events(self, last_id: str, count: int, timeout: float) -> list[tuple[str, dict[str, str]]]:
        """Events after ``last_id``, waiting up to ``timeout`` seconds for the first one."""
        if self._local is not None:
            reply = await self.redis.xread({self.keys.events: last_id}, count=count)
            if not reply:
                await self._local.wait(timeout)
                reply = await self.redis.xread({self.keys.events: last_id}, count=count)
        else:
            reply = await self.redis.xread({self.keys.events: last_id}, count=count, block=max(1, int(timeout * 1000)))
        return [(eid, fields) for _, entries in reply or () for eid, fields in entries]

    @unavailable
    async def events_before(self, before: str | None, count: int) -> list[tuple[str, dict[str, str]]]:
        """Up to ``count`` events older than the id ``before`` (the newest when None), newest first."""
        top = "+" if before is None else f"({before}"
        entries: list[tuple[str, dict[str, str]]] = await self.redis.xrevrange(
            self.keys.events, max=top, min="-", count=count
        )
        return entries

    @unavailable
    async def record_scaling(self, fields: dict[str, str | int | float]) -> str:
        """Write a ``scaling`` event, and the same entry to the short scaling stream, in one transaction."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.keys.events, fields, maxlen=self.settings.events_maxlen, approximate=True)
            pipe.xadd(self.keys.scaling, fields, maxlen=SCALING_MAXLEN, approximate=True)
            event_id, _ = await pipe.execute()
        self._bump()
        return str(event_id)

    @unavailable
    async def scaling_events(self, count: int) -> list[tuple[str, dict[str, str]]]:
        """The newest scaling decisions, newest first."""
        entries: list[tuple[str, dict[str, str]]] = await self.redis.xrevrange(self.keys.scaling, count=count)
        return entries
