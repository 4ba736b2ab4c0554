"""``GET /ws`` of an app serving several queues, when the client names no queue: every queue's events at once.

Each queue keeps its own events stream and its own :class:`~aqueue.web.fanout.Fanout` (one ``EventHub`` listener
per registry); this connection subscribes to all of them and interleaves their events, each ``event`` message
carrying its ``queue``. Event ids belong to one queue's stream and cannot order events across queues, so this
feed does not resume: ``since=`` is refused (name a queue with ``?queue=`` to resume one queue's feed), and
``recent=N`` gives the newest N events of each queue. Its ``metrics`` message is the all-queues overview of
``GET /status``, put together from the figures each queue's fan-out already reads, so watching all queues costs
Redis no more than watching each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from aqueue._core.aio import cancel_and_wait
from aqueue.web.fanout import EventId, Fanout, Subscription, encode, event_message, parse_event_id
from aqueue.web.state import WebConfig
from aqueue.web.status import build_overview, queue_summary
from aqueue.web.ws_query import WsQuery
from aqueue.web.ws_session import CLOSE_SLOW_CONSUMER, WsOptions, answer, error_message

__all__ = ["AllQueues", "Lane"]


@dataclass(frozen=True, slots=True)
class Lane:
    """One queue of the connection: what it serves and the fan-out of its events."""

    config: WebConfig
    fanout: Fanout


class AllQueues:
    """One client following every queue: snapshot, the newest events if asked, then the live feed."""

    def __init__(self, ws: web.WebSocketResponse, lanes: Sequence[Lane], options: WsOptions, query: WsQuery) -> None:
        if query.since is not None:
            raise ValueError("since= resumes one queue's feed: name it with queue= (event ids are per queue)")
        self._ws = ws
        self._lanes = tuple(lanes)
        self._options = options
        self._query = query
        self._send_lock = asyncio.Lock()
        self._floors: dict[str, EventId] = {}  # per queue: events at or below were sent with the snapshot

    async def run(self) -> None:
        """Serve the client until it closes, or falls behind (closed with ``CLOSE_SLOW_CONSUMER``)."""
        subs: list[Subscription] = []
        tasks: list[asyncio.Task[None]] = []
        try:
            for lane in self._lanes:
                subs.append(await lane.fanout.subscribe(self._query.filter, self._options.buffer))
            await self._snapshot()
            for lane, sub in zip(self._lanes, subs, strict=True):
                tasks.append(asyncio.create_task(self._pump(lane, sub), name="aqueue-ws-pump"))
            tasks.append(asyncio.create_task(self._tick(), name="aqueue-ws-overview"))
            await self._serve_requests()
        finally:
            for task in tasks:
                await cancel_and_wait(task)
            for lane, sub in zip(self._lanes, subs, strict=False):
                await lane.fanout.unsubscribe(sub)

    async def _send(self, message: dict[str, Any] | str) -> None:
        async with self._send_lock:
            await self._ws.send_str(message if isinstance(message, str) else encode(message))

    async def _snapshot(self) -> None:
        configs = {lane.config.tasks.queue: lane.config for lane in self._lanes}
        brokers = [await c.tasks._broker() for c in configs.values()]
        last_ids = await asyncio.gather(*(b.last_event_id() for b in brokers))
        wanted = self._options.dead_letters
        status, *dead = await asyncio.gather(build_overview(configs), *(b.dead_letters(wanted) for b in brokers))
        dead_letter = [
            {"id": eid, "queue": queue, **fields}
            for queue, entries in zip(configs, dead, strict=True)
            for eid, fields in entries
        ]
        dead_letter.sort(key=lambda e: parse_event_id(str(e["id"])), reverse=True)
        await self._send({
            "type": "snapshot",
            "last_id": None,  # ids are per queue: see last_ids
            "last_ids": dict(zip(configs, last_ids, strict=True)),
            "status": status,
            "dead_letter": dead_letter[:wanted],
            "filters": self._query.filter.as_json(),
            "buffer": self._options.buffer,
            "queues": list(configs),
        })  # fmt: skip
        self._floors = {q: parse_event_id(i) for q, i in zip(configs, last_ids, strict=True)}
        if self._query.recent:
            await self._send_recent(brokers, list(configs))

    async def _send_recent(self, brokers: list[Any], queues: list[str]) -> None:
        """The newest ``recent`` events of each queue, oldest first (by their time on each queue's clock)."""
        newest = await asyncio.gather(*(b.events_before(None, self._query.recent) for b in brokers))
        events = [
            (parse_event_id(event_id), queue, event_id, fields)
            for queue, batch in zip(queues, newest, strict=True)
            for event_id, fields in batch
            if parse_event_id(event_id) <= self._floors[queue] and self._query.filter.matches(fields)
        ]
        for _, queue, event_id, fields in sorted(events, key=lambda e: e[0]):
            await self._send(event_message(queue, event_id, fields))

    async def _pump(self, lane: Lane, sub: Subscription) -> None:
        """Forward one queue's live events; the per-queue ``metrics`` messages are left out (see :meth:`_tick`)."""
        floor = self._floors.get(lane.config.tasks.queue)
        try:
            while (item := await sub.get()) is not None:
                event_id, text = item
                if event_id is not None and (floor is None or event_id > floor):
                    await self._send(text)
        except ConnectionResetError:
            return
        reason = f"slow consumer: more than {self._options.buffer} messages behind".encode()
        try:
            async with asyncio.timeout(self._options.close_timeout):  # a peer that does not read must not hold us
                await self._ws.close(code=CLOSE_SLOW_CONSUMER, message=reason, drain=False)
        except TimeoutError:
            pass

    async def _tick(self) -> None:
        """Every ``metrics_interval``: the overview, from the figures each queue's fan-out read last."""
        while True:
            await asyncio.sleep(self._options.metrics_interval)
            latest = [lane.fanout.latest for lane in self._lanes]
            if any(s is None for s in latest):
                continue  # a fan-out has not read its queue yet (or Redis is down: it says so itself)
            statuses = [s for s in latest if s is not None]
            queues = {lane.config.tasks.queue: queue_summary(s) for lane, s in zip(self._lanes, statuses, strict=True)}
            await self._send({"type": "metrics", "status": statuses[0] | {"queues": queues}})

    async def _serve_requests(self) -> None:
        configs = [lane.config for lane in self._lanes]
        async for msg in self._ws:
            if msg.type is WSMsgType.TEXT:
                await self._send(await answer(msg.data, configs))
            elif msg.type is WSMsgType.BINARY:
                await self._send(error_message("binary messages are not understood; send JSON text"))
