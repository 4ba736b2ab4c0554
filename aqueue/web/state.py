"""Typed application state shared by the web modules (aiohttp ``AppKey``s)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from aqueue._core.tasks import Tasks
from aqueue._worker.worker import Worker
from aqueue.web.live import LiveFigures
from aqueue.web.replies import error

__all__ = ["CONFIG", "QUEUES", "WebConfig", "config_of", "is_overview"]


@dataclass(frozen=True, slots=True)
class WebConfig:
    """What ``create_app`` was given."""

    tasks: Tasks
    worker: Worker | None
    token: str | None
    protect_reads: bool
    max_body: int
    #: Browser origins (``scheme://host[:port]``) besides the app's own that may call mutating routes and ``/ws``.
    allowed_origins: frozenset[str] = frozenset()
    #: Rates, event-loop lag and Redis errors measured by this app (mutable; one per app).
    live: LiveFigures = field(default_factory=LiveFigures, compare=False, repr=False)


CONFIG: web.AppKey[WebConfig] = web.AppKey("aqueue_config", WebConfig)
#: Every queue the app serves, by name, in the order given to ``create_app`` (``CONFIG`` is the first: the queue
#: the unprefixed routes act on).
QUEUES: web.AppKey[dict[str, WebConfig]] = web.AppKey("aqueue_queues", dict)


def config_of(request: web.Request) -> WebConfig:
    """The queue a request is about: the one its path names (``/queues/{queue}/…``), else the first served.

    404 (JSON, naming the queues served) for a queue the app does not serve.
    """
    name = request.match_info.get("queue")
    if name is None:
        return request.config_dict[CONFIG]
    served = request.config_dict[QUEUES]
    config = served.get(name)
    if config is None:
        raise error(web.HTTPNotFound, f"no queue {name[:200]!r} here; queues: {', '.join(served)}")
    return config


def is_overview(request: web.Request) -> bool:
    """True for an unprefixed route of an app serving several queues (``/status``: every queue's summary too)."""
    return "queue" not in request.match_info and len(request.config_dict[QUEUES]) > 1
