"""One ``/ws`` connection: its snapshot, the catch-up from history, then the live feed and client requests.

Every connection catches up the same way, from ``since`` or from the snapshot's newest id, while the fan-out
already buffers live events for it: history covers whatever the live buffer lacks, and live events at or below
the last id history read are skipped, so each event is delivered once and none is missed. While catching up, an
overflow of the live buffer only restarts it (history holds those events too); once live, it drops the client.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from aqueue._core.aio import cancel_and_wait
from aqueue._core.errors import BrokerUnavailable, ConfigurationError
from aqueue._core.record import JobRecord
from aqueue.web.fanout import (
    EventId,
    Fanout,
    Subscription,
    encode,
    event_message,
    format_event_id,
    parse_event_id,
    previous_event_id,
)
from aqueue.web.state import QUEUES, WebConfig
from aqueue.web.status import build_status
from aqueue.web.ws_query import MAX_TEXT, WsQuery

__all__ = ["CLOSE_BAD_REQUEST", "CLOSE_SLOW_CONSUMER", "Session", "WsOptions", "answer", "error_message"]

log = logging.getLogger("aqueue.web")

#: Close code for a malformed query string (an ``error`` message with the reason is sent first).
CLOSE_BAD_REQUEST = 4400
#: Close code for a client that fell more than ``buffer`` messages behind.
CLOSE_SLOW_CONSUMER = 4008


@dataclass(frozen=True, slots=True)
class WsOptions:
    """Tuning of ``/ws``; replace ``app[WS_OPTIONS]`` before the app starts to change it."""

    buffer: int = 1000  #: messages a client may fall behind before it is dropped
    metrics_interval: float = 1.0  #: seconds between ``metrics`` messages
    heartbeat: float = 20.0  #: seconds between pings; a client that does not answer within half of it is closed
    close_timeout: float = 2.0  #: seconds to wait for a client's close reply before cutting the connection
    history_batch: int = 500  #: events read per call while catching up
    dead_letters: int = 50  #: newest dead-letter entries in the snapshot

    def __post_init__(self) -> None:
        if self.buffer < 1 or self.history_batch < 1 or self.dead_letters < 0:
            raise ConfigurationError("buffer and history_batch must be >= 1 and dead_letters >= 0")
        if self.metrics_interval <= 0 or self.heartbeat <= 0 or self.close_timeout <= 0:
            raise ConfigurationError("metrics_interval, heartbeat and close_timeout must be > 0 seconds")


class Session:
    """One client: snapshot, catch-up, then the live pump and the request loop."""

    def __init__(
        self, request: web.Request, ws: web.WebSocketResponse, config: WebConfig, options: WsOptions, query: WsQuery
    ) -> None:
        self._request = request
        self._ws = ws
        self._config = config
        self._options = options
        self._query = query
        self._live = False
        self._floor: EventId | None = None  # events at or below this id were sent while catching up
        self._send_lock = asyncio.Lock()
        self._dropping: asyncio.Task[None] | None = None
        self._pump: asyncio.Task[None] | None = None

    async def run(self, fanout: Fanout) -> None:
        """Serve the client until it closes, is dropped, or the server shuts down."""
        sub = await fanout.subscribe(self._query.filter, self._options.buffer)
        sub.on_overflow = self._on_overflow
        try:
            await self._catch_up(sub)
            self._live = True
            if sub.overflowed:  # while catching up an overflow only restarts the buffer; from now on it drops
                self._on_overflow()
            self._pump = asyncio.create_task(self._send_live(sub), name="aqueue-ws-pump")
            await self._serve_requests()
        finally:
            await fanout.unsubscribe(sub)
            if self._dropping is not None:
                await self._dropping
            if self._pump is not None:
                await cancel_and_wait(self._pump)

    async def _send(self, message: dict[str, object] | str) -> None:
        async with self._send_lock:
            await self._ws.send_str(message if isinstance(message, str) else encode(message))

    async def _catch_up(self, sub: Subscription) -> None:
        broker = await self._config.tasks._broker()
        last_id = await broker.last_event_id()  # first: every event after it reaches the client
        wanted = self._options.dead_letters
        status, dead = await asyncio.gather(
            build_status(self._config), broker.dead_letters(wanted) if wanted else _none()
        )
        served: dict[str, WebConfig] = self._request.app[QUEUES]
        await self._send({
            "type": "snapshot",
            "last_id": last_id,
            "status": status,
            "dead_letter": [{"id": eid, **fields} for eid, fields in dead],
            "filters": self._query.filter.as_json(),
            "buffer": self._options.buffer,
            "queues": list(served),  # every queue the app serves (the dashboard's selector)
        })  # fmt: skip
        if self._query.since is not None:
            self._floor = await self._replay(sub, self._query.since, check_gap=True)
            return
        since = parse_event_id(last_id)
        if self._query.recent:
            newest_first = await broker.events_before(None, self._query.recent)
            for event_id, fields in reversed(newest_first):
                if self._query.filter.matches(fields):
                    await self._send(event_message(self._config.tasks.queue, event_id, fields))
            if newest_first:
                since = max(since, parse_event_id(newest_first[0][0]))
        self._floor = await self._replay(sub, since, check_gap=False)

    async def _replay(self, sub: Subscription, since: EventId, check_gap: bool) -> EventId:
        """Send the matching events after ``since`` until the live buffer holds the rest; returns the last id read.

        With ``check_gap`` it reads from just before ``since``: if ``since`` itself is gone (trimmed away with
        ``events_maxlen``, or never written here) events after it may be lost, which a ``gap`` message says.
        """
        broker = await self._config.tasks._broker()
        start = previous_event_id(since) if check_gap and since != (0, 0) else None
        cursor = start or since
        first_read = start is not None
        while True:
            batch = await broker.read_events(format_event_id(cursor), self._options.history_batch, 0.0)
            if first_read:
                first_read = False
                await self._report_gap(since, batch)
            last = await self._send_history(batch, since)
            cursor = max(cursor if last is None else last, since)
            if sub.overflowed:
                sub.restart()  # live events were dropped: keep reading history, which holds them too
                continue
            first_live = sub.first_event_id()
            if not batch or (first_live is not None and first_live <= cursor):
                return cursor

    async def _report_gap(self, since: EventId, batch: list[tuple[str, dict[str, str]]]) -> None:
        """A ``gap`` message unless ``batch`` (read from just before ``since``) starts with ``since`` itself."""
        if not batch or parse_event_id(batch[0][0]) != since:
            first = batch[0][0] if batch else None
            await self._send({"type": "gap", "since": format_event_id(since), "first": first})

    async def _send_history(self, batch: list[tuple[str, dict[str, str]]], since: EventId) -> EventId | None:
        """Send the events of ``batch`` after ``since`` that match the filters; the id of the last one read (None
        for an empty batch)."""
        last: EventId | None = None
        for event_id, fields in batch:
            last = parse_event_id(event_id)
            if last > since and self._query.filter.matches(fields):
                await self._send(event_message(self._config.tasks.queue, event_id, fields))
        return last

    def _on_overflow(self) -> None:
        if self._live and self._dropping is None:
            self._dropping = asyncio.create_task(self._drop(), name="aqueue-ws-drop")

    async def _drop(self) -> None:
        """Close a client that fell behind, without waiting on it for longer than ``close_timeout``."""
        if self._pump is not None:
            self._pump.cancel()  # it may be stuck writing to a client that does not read
        peer = self._request.remote
        log.warning("web: dropping slow WebSocket client %s (more than %d messages behind)", peer, self._options.buffer)
        reason = f"slow consumer: more than {self._options.buffer} messages behind".encode()
        try:
            async with asyncio.timeout(self._options.close_timeout):
                await self._ws.close(code=CLOSE_SLOW_CONSUMER, message=reason, drain=False)
        except TimeoutError:
            pass
        transport = self._request.transport
        if transport is not None and not transport.is_closing():
            transport.abort()  # a peer that does not read would keep the socket and its buffer forever

    async def _send_live(self, sub: Subscription) -> None:
        try:
            while (item := await sub.get()) is not None:
                event_id, text = item
                if event_id is not None and self._floor is not None and event_id <= self._floor:
                    continue
                await self._send(text)
        except ConnectionResetError:
            pass  # the client went away; the request loop ends with its connection

    async def _serve_requests(self) -> None:
        async for msg in self._ws:
            if msg.type is WSMsgType.TEXT:
                await self._send(await self._answer(msg.data))
            elif msg.type is WSMsgType.BINARY:
                await self._send(error_message("binary messages are not understood; send JSON text"))

    async def _answer(self, text: str) -> dict[str, object]:
        return await answer(text, [self._config])


async def answer(text: str, served: Sequence[WebConfig]) -> dict[str, object]:
    """The reply to a client's message: ``ping`` → ``pong``; ``job`` → the job's record, looked up in each queue
    ``served`` (in order) when the connection covers several."""
    try:
        request = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return error_message(f"message is not JSON: {exc}")
    if not isinstance(request, dict):
        return error_message('a message must be a JSON object such as {"op": "job", "id": "<job id>"}')
    op = request.get("op")
    if op == "ping":
        return {"type": "pong"}
    if op != "job":
        return error_message(f"unknown op {op!r}; expected 'job' or 'ping'")
    job_id = request.get("id")
    if not isinstance(job_id, str) or not 0 < len(job_id) <= MAX_TEXT:
        return error_message(f'"id" must be a job id (a string of 1 to {MAX_TEXT} characters)')
    for config in served:
        try:
            record = await (await config.tasks._broker()).get_record(job_id)
            job = _job(JobRecord._from_hash(job_id, record)) if record else None
        except BrokerUnavailable as exc:
            return error_message(str(exc))
        except ValueError as exc:  # a record written by something else than aqueue: say so, keep serving
            return error_message(f"job {job_id!r} has an unreadable record: {exc}")
        if job is not None:
            found: dict[str, object] = {"type": "job", "id": job_id, "job": job}
            if len(served) > 1:
                found["queue"] = config.tasks.queue
            return found
    return {"type": "job", "id": job_id, "job": None}


async def _none() -> list[tuple[str, dict[str, str]]]:
    return []


def error_message(text: str) -> dict[str, object]:
    """An ``error`` message."""
    return {"type": "error", "error": text}


def _job(record: JobRecord) -> dict[str, Any]:
    """A job's record as the dashboard reads it; its log lines as objects, as in ``GET /jobs/{id}``."""
    return dataclasses.asdict(record) | {"logs": [line._asdict() for line in record.logs]}
