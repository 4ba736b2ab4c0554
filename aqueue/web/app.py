"""``create_app``: the aiohttp sub-app, its JSON error middleware (the token and origin ones are in
:mod:`aqueue.web.auth`), and its lifecycle.

Mount it in your own app (``app.add_subapp("/aqueue", create_app(tasks))``) or let ``aqueue worker --web`` /
``aqueue web`` serve it. All live data comes from Redis, so an app without a worker sees the whole queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence

from aiohttp import hdrs, web

from aqueue._core.aio import cancel_and_wait
from aqueue._core.errors import BrokerUnavailable, ConfigurationError
from aqueue._core.tasks import Tasks
from aqueue._worker.worker import Worker
from aqueue.web import dashboard, openapi, queues, rest, status, ws
from aqueue.web.auth import OWN_RESOURCES, require_token, same_origin
from aqueue.web.live import run_ticker
from aqueue.web.metrics import METRICS, WebMetrics, metrics
from aqueue.web.replies import reply
from aqueue.web.state import CONFIG, QUEUES, WebConfig

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
        served = request.config_dict[QUEUES]
        served.get(request.match_info.get("queue", ""), request.config_dict[CONFIG]).live.redis_errors += 1
        return reply({"error": str(exc)}, status=503)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return reply({"error": "internal error (logged on the server)"}, status=500)


async def _background(app: web.Application) -> AsyncIterator[None]:
    """While serving: each queue's rates/lag ticker, and each queue's worker feeding the app's histograms."""
    app_metrics = app[METRICS]
    attached = [
        (config.worker, app_metrics.observer(config.tasks.queue))
        for config in app[QUEUES].values()
        if config.worker is not None
    ]
    for worker, observe in attached:
        worker.observers.append(observe)
    tickers = [
        asyncio.create_task(run_ticker(config.tasks, config.live), name="aqueue-web-ticker")
        for config in app[QUEUES].values()
    ]
    try:
        yield
    finally:
        for ticker in tickers:
            await cancel_and_wait(ticker)
        for worker, observe in attached:
            if observe in worker.observers:
                worker.observers.remove(observe)


def _add_routes(app: web.Application) -> None:
    """Every route, unprefixed (the first queue) and under ``/queues/{queue}`` (any queue served); the health
    checks and the dashboard are about the process and exist once."""
    # Health checks stay open even with protect_reads: probes rarely hold a token, and they carry no queue data.
    app.router.add_get("/health/live", status.health_live)
    app.router.add_get("/health/ready", status.health_ready)
    own: list[web.AbstractRoute] = []
    for prefix in ("", "/queues/{queue}"):
        for route in rest.routes:
            assert isinstance(route, web.RouteDef)
            own.append(app.router.add_route(route.method, prefix + route.path, route.handler))
        own.append(app.router.add_get(f"{prefix}/status", status.status))
        own.append(app.router.add_get(f"{prefix}/metrics", metrics))
        own.append(app.router.add_get(f"{prefix}/openapi.json", openapi.document))
    app[OWN_RESOURCES] = frozenset(r.resource for r in own if r.resource is not None)


def create_app(
    tasks: Tasks | Sequence[Tasks],
    worker: Worker | None = None,
    token: str | None = None,
    *,
    protect_reads: bool = False,
    max_body: int = 1 << 20,
    allowed_origins: Iterable[str] = (),
) -> web.Application:
    """The aqueue web sub-app for ``tasks`` — one registry, or several (one per queue) — and ``worker``, if this
    process runs one and should be controllable.

    Mount it with ``app.add_subapp("/aqueue", create_app(tasks))``. It serves ``/status``, ``/health/live``,
    ``/health/ready``, Prometheus ``/metrics``, the REST job API (``/jobs``, ``/dead-letter``, ``/scale``, ...,
    described by ``/openapi.json``), live events on the WebSocket ``/ws`` and the dashboard at ``/``. All queue
    data comes from Redis, so an app without a worker sees the whole queue; ``worker`` adds its own figures (job
    histograms, its state in ``/status``) and makes ``POST /scale`` work. Invalid arguments (a ``worker`` of another
    ``Tasks``, two registries of one queue, an empty ``token``, an origin without a scheme) raise
    :class:`ConfigurationError`.

    Every route also exists under ``/queues/{queue}/`` for each queue served. With several registries the
    unprefixed routes act on the first one, except that ``/status`` adds ``"queues"`` (every queue's summary),
    ``/metrics`` covers every queue, ``/ws`` carries every queue's events (``?queue=`` picks one) and
    ``GET /jobs/{id}`` looks in each queue (see docs/web.md). ``worker`` may run one of the queues, or all of them
    (a multi-queue worker: each queue gets its lane).

    With ``token``, mutating endpoints and the WebSocket require ``Authorization: Bearer <token>`` (the WebSocket
    also takes ``?token=``, as browsers cannot set its headers); reads too
    when ``protect_reads`` (the health checks and the dashboard page stay open). Request bodies over ``max_body``
    bytes (default 1 MiB) get 413. Browsers may call mutating endpoints
    and open the WebSocket only from the app's own origin and ``allowed_origins`` (``"https://admin.example.com"``);
    other clients are not concerned.
    """
    registries = queues.registries(tasks)
    lanes = queues.lanes(registries, worker)
    if token is not None and not token:
        raise ConfigurationError("token must be a non-empty string (or None for no token)")
    if max_body < 1:
        raise ConfigurationError(f"max_body must be >= 1 byte, got {max_body}")
    origins = frozenset(o.rstrip("/") for o in allowed_origins)
    if any("://" not in o for o in origins):
        raise ConfigurationError(f"allowed_origins must be like 'https://host[:port]', got {sorted(origins)}")
    configs = {
        t.queue: WebConfig(t, lane, token, protect_reads, max_body, origins)
        for t, lane in zip(registries, lanes, strict=True)
    }
    app = web.Application(middlewares=[_errors, same_origin, require_token])
    app[CONFIG] = configs[registries[0].queue]
    app[QUEUES] = configs
    app[METRICS] = WebMetrics(list(configs.values()))
    _add_routes(app)
    app.cleanup_ctx.append(_background)
    ws.setup(app)
    dashboard.setup(app)
    return app
