"""``GET /ws``: the live WebSocket feed of a queue (protocol: docs/web.md).

A connection gets a ``snapshot`` (the ``/status`` figures, the newest dead letters, the newest event id), then every
event of the queue's events stream that matches its filters, each with its stream id, and a ``metrics`` message
every second. ``?since=<event id>`` resumes after a reconnect with no gap and no duplicate; ``?recent=N`` starts
with the newest N events. One :class:`~aqueue.web.fanout.Fanout` per app serves every connection from the one
events reader of the process; a client more than ``buffer`` messages behind is closed with
:data:`CLOSE_SLOW_CONSUMER`. The token, when configured, is checked before the upgrade (401).

An app serving several queues serves each queue's feed at ``/queues/{queue}/ws`` and at ``/ws?queue=…``; ``/ws``
naming no queue follows them all (:mod:`aqueue.web.ws_all`).
"""

from __future__ import annotations

import asyncio
import functools

from aiohttp import WSCloseCode, web

from aqueue._core.errors import BrokerUnavailable
from aqueue.web.auth import check_token
from aqueue.web.fanout import Fanout, encode
from aqueue.web.state import CONFIG, QUEUES, WebConfig, config_of
from aqueue.web.status import build_status
from aqueue.web.ws_all import AllQueues, Lane
from aqueue.web.ws_query import WsQuery, parse_query
from aqueue.web.ws_session import CLOSE_BAD_REQUEST, CLOSE_SLOW_CONSUMER, Session, WsOptions, error_message

__all__ = [
    "CLOSE_BAD_REQUEST",
    "CLOSE_SLOW_CONSUMER",
    "FANOUT",
    "FANOUTS",
    "WS_OPTIONS",
    "WsOptions",
    "WsQuery",
    "handle",
    "parse_query",
    "setup",
]

_MAX_CLIENT_MESSAGE = 16 * 1024  # client messages are small requests; a larger one is closed with 1009

WS_OPTIONS: web.AppKey[WsOptions] = web.AppKey("aqueue_ws_options", WsOptions)
FANOUT: web.AppKey[Fanout] = web.AppKey("aqueue_ws_fanout", Fanout)
_CLIENTS = web.AppKey[set[web.WebSocketResponse]]("aqueue_ws_clients")
#: Each queue's fan-out, by queue name (``FANOUT`` is the first queue's).
FANOUTS = web.AppKey[dict[str, Fanout]]("aqueue_ws_fanouts")


async def _close(ws: web.WebSocketResponse, code: int, error: str) -> None:
    """Tell the client why, then close with ``code``."""
    try:
        await ws.send_str(encode(error_message(error)))
        # A close reason is at most 123 bytes: cut the UTF-8 at a character boundary.
        await ws.close(code=code, message=error.encode()[:120].decode(errors="ignore").encode())
    except (ConnectionError, RuntimeError):
        pass  # the client went away first


def _target(request: web.Request, query: WsQuery) -> WebConfig | None:
    """The queue the connection follows; None: every queue (``/ws`` of an app serving several, naming none).

    ``ValueError`` for a queue the app does not serve, or a ``queue=`` another than the path's.
    """
    served = request.app[QUEUES]
    named = request.match_info.get("queue")
    if named is not None and query.queue is not None and query.queue != named:
        raise ValueError(f"this endpoint serves queue {named[:200]!r} only; got queue={query.queue[:200]!r}")
    wanted = named or query.queue
    if wanted is None:
        return request.app[CONFIG] if len(served) == 1 else None
    if wanted not in served:
        raise ValueError(f"no queue {wanted[:200]!r} here; queues: {', '.join(served)}")
    return served[wanted]


async def handle(request: web.Request) -> web.StreamResponse:
    """``GET /ws`` and ``GET /queues/{queue}/ws``: authenticate, upgrade, then serve the connection until either
    side closes."""
    config = request.app[CONFIG]
    options = request.app[WS_OPTIONS]
    if not config.protect_reads:
        config_of(request)  # 404 for a queue not served, as every read route answers it
    check_token(request, config)  # before the upgrade: a refused client gets a plain 401
    config_of(request)
    ws = web.WebSocketResponse(
        heartbeat=options.heartbeat, timeout=options.close_timeout, max_msg_size=_MAX_CLIENT_MESSAGE, compress=False
    )
    if not ws.can_prepare(request).ok:
        return web.json_response(
            {"error": "GET /ws is a WebSocket endpoint: connect with Upgrade: websocket"}, status=426
        )
    await ws.prepare(request)
    clients = request.app[_CLIENTS]
    clients.add(ws)
    fanouts = request.app[FANOUTS]
    try:
        try:
            query = parse_query(request.query)
            target = _target(request, query)
            if target is not None:
                serve = Session(request, ws, target, options, query).run(fanouts[target.tasks.queue])
            else:
                lanes = [Lane(c, fanouts[name]) for name, c in request.app[QUEUES].items()]
                serve = AllQueues(ws, lanes, options, query).run()
        except ValueError as exc:
            await _close(ws, CLOSE_BAD_REQUEST, f"bad query string: {exc}")
            return ws
        try:
            await serve
        except BrokerUnavailable as exc:
            await _close(ws, WSCloseCode.INTERNAL_ERROR, str(exc))
        except ConnectionResetError:
            pass  # the client went away while we were writing
    finally:
        clients.discard(ws)
        if not ws.closed:
            await ws.close()
    return ws


async def _start(app: web.Application) -> None:
    interval = app[WS_OPTIONS].metrics_interval
    app[FANOUTS] = {
        name: Fanout(config.tasks, functools.partial(build_status, config), interval)
        for name, config in app[QUEUES].items()
    }
    app[FANOUT] = app[FANOUTS][app[CONFIG].tasks.queue]


async def _shutdown(app: web.Application) -> None:
    # Closing here, before the server waits for its handlers, lets a shutdown finish at once; all together, so
    # clients that do not answer cost one close_timeout, not one each.
    timeout = app[WS_OPTIONS].close_timeout

    async def going_away(ws: web.WebSocketResponse) -> None:
        try:
            async with asyncio.timeout(timeout):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
        except TimeoutError:
            pass

    clients = app[_CLIENTS]
    await asyncio.gather(*(going_away(ws) for ws in list(clients)))


async def _cleanup(app: web.Application) -> None:
    for fanout in app.get(FANOUTS, {}).values():  # none when the app failed before its startup hook ran
        await fanout.close()


def setup(app: web.Application) -> None:
    """Register ``GET /ws`` and ``GET /queues/{queue}/ws`` on ``app`` (which must hold ``app[CONFIG]`` and
    ``app[QUEUES]`` by the time it starts)."""
    app[WS_OPTIONS] = app.get(WS_OPTIONS) or WsOptions()
    clients: set[web.WebSocketResponse] = set()
    app[_CLIENTS] = clients
    app.router.add_get("/ws", handle, name="aqueue-ws")
    app.router.add_get("/queues/{queue}/ws", handle, name="aqueue-queue-ws")
    app.on_startup.append(_start)
    app.on_shutdown.append(_shutdown)
    app.on_cleanup.append(_cleanup)
