"""``GET /ws``: the live WebSocket feed of a queue (protocol: docs/web.md).

A connection gets a ``snapshot`` (the ``/status`` figures, the newest dead letters, the newest event id), then every
event of the queue's events stream that matches its filters, each with its stream id, and a ``metrics`` message
every second. ``?since=<event id>`` resumes after a reconnect with no gap and no duplicate; ``?recent=N`` starts
with the newest N events. One :class:`~aqueue.web.fanout.Fanout` per app serves every connection from the one
events reader of the process; a client more than ``buffer`` messages behind is closed with
:data:`CLOSE_SLOW_CONSUMER`. The token, when configured, is checked before the upgrade (401).
"""

from __future__ import annotations

import asyncio

from aiohttp import WSCloseCode, web

from aqueue._core.errors import BrokerUnavailable
from aqueue.web.auth import check_token
from aqueue.web.fanout import Fanout, encode
from aqueue.web.state import CONFIG
from aqueue.web.status import build_status
from aqueue.web.ws_query import WsQuery, parse_query
from aqueue.web.ws_session import CLOSE_BAD_REQUEST, CLOSE_SLOW_CONSUMER, Session, WsOptions, error_message

__all__ = [
    "CLOSE_BAD_REQUEST",
    "CLOSE_SLOW_CONSUMER",
    "FANOUT",
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


async def _close(ws: web.WebSocketResponse, code: int, error: str) -> None:
    """Tell the client why, then close with ``code``."""
    try:
        await ws.send_str(encode(error_message(error)))
        # A close reason is at most 123 bytes: cut the UTF-8 at a character boundary.
        await ws.close(code=code, message=error.encode()[:120].decode(errors="ignore").encode())
    except (ConnectionError, RuntimeError):
        pass  # the client went away first


async def handle(request: web.Request) -> web.StreamResponse:
    """``GET /ws``: authenticate, upgrade, then serve the connection until either side closes."""
    config = request.app[CONFIG]
    options = request.app[WS_OPTIONS]
    check_token(request, config)  # before the upgrade: a refused client gets a plain 401
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
    try:
        try:
            query = parse_query(request.query)
        except ValueError as exc:
            await _close(ws, CLOSE_BAD_REQUEST, f"bad query string: {exc}")
            return ws
        try:
            await Session(request, ws, config, options, query).run(request.app[FANOUT])
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
    config = app[CONFIG]
    app[FANOUT] = Fanout(config.tasks, lambda: build_status(config), app[WS_OPTIONS].metrics_interval)


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
    fanout = app.get(FANOUT)
    if fanout is not None:  # None when the app failed before its startup hook ran
        await fanout.close()


def setup(app: web.Application) -> None:
    """Register ``GET /ws`` on ``app`` (which must hold ``app[CONFIG]`` by the time it starts)."""
    app[WS_OPTIONS] = app.get(WS_OPTIONS) or WsOptions()
    clients: set[web.WebSocketResponse] = set()
    app[_CLIENTS] = clients
    app.router.add_get("/ws", handle, name="aqueue-ws")
    app.on_startup.append(_start)
    app.on_shutdown.append(_shutdown)
    app.on_cleanup.append(_cleanup)
