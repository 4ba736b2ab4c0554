"""Typed application state shared by the web modules (aiohttp ``AppKey``s)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from aqueue._core.tasks import Tasks
from aqueue._worker.worker import Worker
from aqueue.web.live import LiveFigures

__all__ = ["CONFIG", "WebConfig"]


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
