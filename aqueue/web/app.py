"""``create_app``: the aiohttp sub-app, its JSON error middleware (the token and origin ones are in
:mod:`aqueue.web.auth`), and its lifecycle.

Mount it in your own app (``app.add_subapp("/aqueue", create_app(tasks))``) or let ``aqueue worker --web`` /
``aqueue web`` serve it. All live data comes from Redis, so an app without a worker sees the whole queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

from aiohttp import hdrs, web

from aqueue._core.aio import cancel_and_wait
from aqueue._core.errors import BrokerUnavailable, ConfigurationError
from aqueue._core.tasks import Tasks
from aqueue._worker.worker import Worker
from aqueue.web import dashboard, openapi, rest, status, ws
from aqueue.web.auth import OWN_RESOURCES, require_token, same_origin
from aqueue.web.live import run_ticker
from aqueue.web.metrics import METRICS, WebMetrics, metrics
from aqueue.web.replies import reply
from aqueue.web.state import CONFIG, WebConfig

__all__ = ["create_app"]

log = logging.getLogger("aqueue.web")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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
    app = web.Application(middlewares=[_errors, same_origin, require_token])
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
    app[OWN_RESOURCES] = frozenset(r.resource for r in own if r.resource is not None)
    app.cleanup_ctx.append(_background)
    ws.setup(app)
    dashboard.setup(app)
    return app
