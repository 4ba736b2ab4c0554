"""Fan-out of queue events to WebSocket clients: one listener per app, a bounded buffer per client.

The app registers a single listener on its :class:`~aqueue.Tasks`' :class:`~aqueue._core.events.EventHub` (the one
events-stream reader of the process) and copies each event into the buffer of every client whose filter matches.
Each event is encoded once, whoever receives it. A client whose buffer is full is marked overflowed and dropped by
its connection; the listener never waits, so a slow client cannot slow the reader, the workers or other clients.
The same fan-out carries the periodic ``metrics`` message, built once per tick for every client.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from aqueue._core.aio import cancel_and_wait
from aqueue._core.events import EVENT_TYPES, Event, EventHub
from aqueue._core.tasks import Tasks

__all__ = [
    "KNOWN_EVENT_TYPES",
    "EventFilter",
    "EventId",
    "Fanout",
    "Subscription",
    "encode",
    "event_message",
    "format_event_id",
    "parse_event_id",
    "previous_event_id",
]

log = logging.getLogger("aqueue.web")

#: Event types a ``?types=`` filter may name: every type the core writes (job, workflow, control, cron and cleanup
#: events, the worker's ``scaling``) and the worker-lifecycle types reserved for a later feature (accepted in
#: filters already, so a client written for them is not refused).
KNOWN_EVENT_TYPES = EVENT_TYPES | {"worker_up", "worker_down"}

#: A stream id as a comparable pair: ``"1700000000000-3"`` → ``(1700000000000, 3)``.
EventId = tuple[int, int]

_MAX_SEQ = 2**64 - 1


def parse_event_id(text: str) -> EventId:
    """Parse a full stream id ``<ms>-<seq>`` (or ``0``); ``ValueError`` with the reason otherwise."""
    ms, sep, seq = text.partition("-")
    if text == "0":
        return (0, 0)
    if not sep or not ms.isdigit() or not seq.isdigit() or int(ms) > _MAX_SEQ or int(seq) > _MAX_SEQ:
        raise ValueError(f"{text!r} is not an event id (expected <milliseconds>-<sequence>, e.g. 1700000000000-0)")
    return (int(ms), int(seq))


def format_event_id(event_id: EventId) -> str:
    """The stream id text of a parsed id."""
    return f"{event_id[0]}-{event_id[1]}"


def previous_event_id(event_id: EventId) -> EventId | None:
    """The largest id below ``event_id`` (reading after it returns ``event_id`` itself, if it exists)."""
    ms, seq = event_id
    if seq > 0:
        return (ms, seq - 1)
    return (ms - 1, _MAX_SEQ) if ms > 0 else None


def event_message(queue: str, event_id: str, fields: Mapping[str, str]) -> dict[str, Any]:
    """The ``event`` message of one event of ``queue``."""
    return {"type": "event", "id": event_id, "queue": queue, "event": fields}


def encode(message: Mapping[str, Any]) -> str:
    """One protocol message as JSON text."""
    return orjson.dumps(message, option=orjson.OPT_NON_STR_KEYS).decode()


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a client wants: every given criterion must match (``None`` matches anything)."""

    types: frozenset[str] | None = None
    job: str | None = None
    task: str | None = None

    def matches(self, fields: Mapping[str, str]) -> bool:
        """True if an event with these fields passes the filter."""
        return (
            (self.types is None or fields.get("type") in self.types)
            and (self.job is None or fields.get("job") == self.job)
            and (self.task is None or fields.get("task") == self.task)
        )

    def as_json(self) -> dict[str, Any]:
        """The filter as the snapshot message echoes it."""
        return {"types": sorted(self.types) if self.types is not None else None, "job": self.job, "task": self.task}


class Subscription:
    """One client's bounded buffer of encoded messages, each with its event id (``None`` for metrics)."""

    def __init__(self, event_filter: EventFilter, capacity: int) -> None:
        self.filter = event_filter
        self.capacity = capacity
        self.overflowed = False  #: set when a message did not fit; the connection drops the client
        self.on_overflow: Callable[[], None] | None = None  #: called once when the buffer overflows
        self._items: deque[tuple[EventId | None, str]] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, event_id: EventId | None, text: str) -> None:
        """Buffer a message without waiting; on overflow, discard the buffer and mark the client overflowed."""
        if self.overflowed:
            return
        if len(self._items) >= self.capacity:
            self.overflowed = True
            self._items.clear()  # the client is dropped: holding its backlog would only cost memory
            if self.on_overflow is not None:
                self.on_overflow()
        else:
            self._items.append((event_id, text))
        self._ready.set()

    def first_event_id(self) -> EventId | None:
        """Id of the oldest buffered event, if any."""
        return next((eid for eid, _ in self._items if eid is not None), None)

    def restart(self) -> None:
        """Forget the buffer and the overflow (used while replaying history, which covers what was dropped)."""
        self._items.clear()
        self.overflowed = False

    async def get(self) -> tuple[EventId | None, str] | None:
        """The next buffered message, waiting for one; ``None`` once the buffer has overflowed."""
        while not self._items and not self.overflowed:
            self._ready.clear()
            await self._ready.wait()
        return None if self.overflowed else self._items.popleft()


class Fanout:
    """Dispatches the events hub's events and a periodic metrics message to every subscription.

    ``status`` builds the figures of a ``metrics`` message; it runs once per ``metrics_interval`` seconds while
    at least one client is subscribed, whatever the number of clients.
    """

    def __init__(
        self, tasks: Tasks, status: Callable[[], Awaitable[dict[str, Any]]], metrics_interval: float = 1.0
    ) -> None:
        self._tasks = tasks
        self._status = status
        self._interval = metrics_interval
        self._subs: set[Subscription] = set()
        self._hub: EventHub | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.dispatched = 0  #: events handed to at least one client
        self.latest: dict[str, Any] | None = None  #: the figures of the last ``metrics`` message

    @property
    def clients(self) -> int:
        """Subscriptions now open."""
        return len(self._subs)

    async def subscribe(self, event_filter: EventFilter, capacity: int) -> Subscription:
        """A new client's subscription: it receives every event dispatched from now on that matches.

        Raises :class:`~aqueue._core.errors.BrokerUnavailable` if the events reader cannot start.
        """
        hub = await self._tasks._event_hub()
        if hub is not self._hub:  # first client, or the registry was closed and its hub replaced
            if self._hub is not None:
                self._hub.remove_listener(self._on_event)
            hub.add_listener(self._on_event)
            self._hub = hub
        sub = Subscription(event_filter, capacity)
        self._subs.add(sub)
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._tick(), name="aqueue-web-metrics")
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering to ``sub``; the metrics ticker stops with the last client."""
        self._subs.discard(sub)
        if not self._subs and self._ticker is not None:
            ticker, self._ticker = self._ticker, None
            await cancel_and_wait(ticker)

    async def close(self) -> None:
        """Forget every subscription, leave the events reader and stop the metrics ticker (the app shuts down)."""
        self._subs.clear()
        if self._hub is not None:
            self._hub.remove_listener(self._on_event)
            self._hub = None
        if self._ticker is not None:
            ticker, self._ticker = self._ticker, None
            await cancel_and_wait(ticker)

    def _on_event(self, event: Event) -> None:
        # Called by the hub for every event, in its reader task: it must not raise or wait.
        if not self._subs:
            return
        try:
            event_id, fields = event
            text: str | None = None
            parsed: EventId = (0, 0)
            for sub in list(self._subs):
                if sub.filter.matches(fields):
                    if text is None:  # encoded once, for the first client that wants it, shared by the others
                        text = encode(event_message(self._tasks.queue, event_id, fields))
                        parsed = parse_event_id(event_id)
                    sub.offer(parsed, text)
            if text is not None:
                self.dispatched += 1
        except Exception:
            log.exception("web fan-out: event %r not dispatched", event)

    def broadcast(self, message: Mapping[str, Any]) -> None:
        """Offer a message that is not an event (no id, no filter) to every client."""
        text = encode(message)
        for sub in list(self._subs):
            sub.offer(None, text)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                status = await self._status()
            except Exception as exc:  # Redis down, or a bug in the figures: tell the clients, keep ticking
                log.warning("web metrics: status unavailable: %s", exc)
                self.broadcast({"type": "error", "error": f"status unavailable: {exc}"})
            else:
                self.latest = status
                self.broadcast({"type": "metrics", "status": status})
