"""``create_app``: the aiohttp sub-app, its JSON error and bearer-token middlewares, and its lifecycle.

Mount it in your own app (``app.add_subapp("/aqueue", create_app(tasks))``) or let ``aqueue worker --web`` /
``aqueue web`` serve it. All live data comes from Redis, so an app without a worker sees the whole queue.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from aiohttp import hdrs, web

from aqueue._core.aio import cancel_and_wait
from aqueue._core.errors import BrokerUnavailable, ConfigurationError
from aqueue._core.tasks import Tasks
from aqueue._worker.worker import Worker
from aqueue.web import openapi, rest, status
from aqueue.web.live import run_ticker
from aqueue.web.metrics import METRICS, WebMetrics, metrics
from aqueue.web.replies import error, reply
from aqueue.web.state import CONFIG, WebConfig

__all__ = ["check_token", "create_app"]

log = logging.getLogger("aqueue.web")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_SAFE_METHODS = frozenset({hdrs.METH_GET, hdrs.METH_HEAD, hdrs.METH_OPTIONS})
#: The resources this module registers, so the token middleware knows which reads ``protect_reads`` covers.
_OWN: web.AppKey[frozenset[web.AbstractResource]] = web.AppKey("aqueue_own_resources", frozenset)


def _unauthorized() -> web.HTTPException:
    return error(web.HTTPUnauthorized, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})


def _same(given: str, token: str) -> bool:
    # Constant time, so the token cannot be guessed by timing; a header that is not text (undecodable bytes) is
    # simply a wrong token, never an error.
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8", "replace"))


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def check_token(request: web.Request, config: WebConfig) -> None:
    """Raise 401 (JSON body) unless the request carries the token: ``Authorization: Bearer`` or ``?token=``.

    Does nothing when no token is configured. For the WebSocket, which browsers cannot give headers to; the REST
    routes take the header only (a token in a URL ends up in access logs).
    """
    if config.token is None:
        return
    given = _bearer(request) or request.query.get("token")
    if given is None or not _same(given, config.token):
        raise _unauthorized()


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With a token: every mutating request needs it; reads of this module's data routes too when ``protect_reads``.

    Other reads are left open or to their handlers: the health checks, the dashboard page (it carries no queue
    data) and the WebSocket (it checks the token itself with :func:`check_token`, also from ``?token=``).
    """
    config = request.config_dict[CONFIG]
    if config.token is not None:
        if request.method in _SAFE_METHODS:
            needed = config.protect_reads and request.match_info.route.resource in request.config_dict[_OWN]
        else:
            needed = True
        if needed:
            given = _bearer(request)
            if given is None or not _same(given, config.token):
                raise _unauthorized()
    return await handler(request)


def _cross_origin(request: web.Request, allowed: frozenset[str]) -> str | None:
    """Why a browser request comes from another site (None if it does not, or is not from a browser).

    Modern browsers say where a request comes from in ``Sec-Fetch-Site``; older ones send ``Origin`` on every
    cross-origin POST and WebSocket, compared here with the ``Host`` the request was sent to. Clients that are not
    browsers (curl, SDKs, the CLI) send neither and are not concerned: for them the token is the guard.
    """
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is not None and origin in allowed:
        return None
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return None if site in ("same-origin", "none") else f"Sec-Fetch-Site: {site}, Origin: {origin}"
    if origin is None:
        return None
    host = origin.partition("://")[2]
    return None if host and host == request.host else f"Origin {origin} is not this host ({request.host})"


@web.middleware
async def _same_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse mutating requests and WebSocket upgrades a page on another site makes from a visitor's browser.

    Without it, any web page an operator opens could pause the queue, delete finished jobs or read the event
    stream through the operator's browser (a WebSocket is not bound by CORS), token or not.
    """
    upgrade = request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"
    if request.method not in _SAFE_METHODS or upgrade:
        why = _cross_origin(request, request.config_dict[CONFIG].allowed_origins)
        if why is not None:
            raise error(
                web.HTTPForbidden,
                f"cross-origin request refused ({why}); create_app(allowed_origins=[...]) admits an origin",
            )
    return await handler(request)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure answers JSON ``{"error": …}`` with its status; Redis down is 503, never a traceback page."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        headers = {k: v for k, v in exc.headers.items() if k not in (hdrs.CONTENT_TYPE, hdrs.CONTENT_LENGTH)}
        message = exc.reason
        if isinstance(exc, web.HTTPMethodNotAllowed):
            message = f"method {exc.method} not allowed; allowed: {', '.join(sorted(exc.allowed_methods))}"
        return reply({"error": message}, status=exc.status, headers=headers)
    except BrokerUnavailable as exc:
        request.config_dict[CONFIG].live.redis_errors += 1
        return reply({"error": str(exc)}, status=503)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return reply({"error": "internal error (logged on the server)"}, status=500)


async def _background(app: web.Application) -> AsyncIterator[None]:
    """While serving: the rates/lag ticker, and the attached worker feeding this app's histograms."""
    config, observe = app[CONFIG], app[METRICS].observe
    if config.worker is not None:
        config.worker.observers.append(observe)
    ticker = asyncio.create_task(run_ticker(config.tasks, config.live), name="aqueue-web-ticker")
    try:
        yield
    finally:
        await cancel_and_wait(ticker)
        if config.worker is not None and observe in config.worker.observers:
            config.worker.observers.remove(observe)


def create_app(
    tasks: Tasks,
    worker: Worker | None = None,
    token: str | None = None,
    *,
    protect_reads: bool = False,
    max_body: int = 1 << 20,
    allowed_origins: Iterable[str] = (),
) -> web.Application:
    """The aqueue web sub-app for ``tasks`` (and ``worker``, if this process runs one and should be controllable).

    Mount it with ``app.add_subapp("/aqueue", create_app(tasks))``. It serves ``/status``, ``/health/live``,
    ``/health/ready``, Prometheus ``/metrics``, the REST job API (``/jobs``, ``/dead-letter``, ``/scale``, ...,
    described by ``/openapi.json``), live events on the WebSocket ``/ws`` and the dashboard at ``/``. All queue
    data comes from Redis, so an app without a worker sees the whole queue; ``worker`` adds its own figures (job
    histograms, its state in ``/status``) and makes ``POST /scale`` work. Invalid arguments (a ``worker`` of another
    ``Tasks``, an empty ``token``, an origin without a scheme) raise :class:`ConfigurationError`.

    With ``token``, mutating endpoints and the WebSocket require ``Authorization: Bearer <token>`` (the WebSocket
    also takes ``?token=``, as browsers cannot set its headers); reads too
    when ``protect_reads`` (the health checks and the dashboard page stay open). Request bodies over ``max_body``
    bytes (default 1 MiB) get 413. Browsers may call mutating endpoints
    and open the WebSocket only from the app's own origin and ``allowed_origins`` (``"https://admin.example.com"``);
    other clients are not concerned.
    """
    if worker is not None and worker.tasks is not tasks:
        raise ConfigurationError("the worker must run the same Tasks the app serves")
    if token is not None and not token:
        raise ConfigurationError("token must be a non-empty string (or None for no token)")
    if max_body < 1:
        raise ConfigurationError(f"max_body must be >= 1 byte, got {max_body}")
    origins = frozenset(o.rstrip("/") for o in allowed_origins)
    if any("://" not in o for o in origins):
        raise ConfigurationError(f"allowed_origins must be like 'https://host[:port]', got {sorted(origins)}")
    app = web.Application(middlewares=[_errors, _same_origin, _auth])
    config = WebConfig(tasks, worker, token, protect_reads, max_body, origins)
    app[CONFIG] = config
    app[METRICS] = WebMetrics(config)
    # Health checks stay open even with protect_reads: probes rarely hold a token, and they carry no queue data.
    app.router.add_get("/health/live", status.health_live)
    app.router.add_get("/health/ready", status.health_ready)
    own = [
        *app.router.add_routes(rest.routes),
        app.router.add_get("/status", status.status),
        app.router.add_get("/metrics", metrics),
        app.router.add_get("/openapi.json", openapi.document),
    ]
    app[_OWN] = frozenset(r.resource for r in own if r.resource is not None)
    app.cleanup_ctx.append(_background)
    from aqueue.web import dashboard, ws  # the live half of the app; imported here, as they import this module

    ws.setup(app)
    dashboard.setup(app)
    return app
