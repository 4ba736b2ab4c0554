"""Serving several queues from one app: which registries and worker lanes ``create_app`` was given, and looking a
job up in each queue (the 404 of a queue the app does not serve is :func:`aqueue.web.state.config_of`'s).

``create_app([orders, emails], worker)`` serves each queue under ``/queues/{queue}/`` (a sub-app with every route
of a one-queue app) and keeps the unprefixed routes for the first queue, with overviews where a demanding client
expects one (``/status``, ``/metrics``, ``/ws``, ``GET /jobs/{id}``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aqueue._core.errors import ConfigurationError
from aqueue._core.tasks import Tasks
from aqueue._worker.worker import Worker
from aqueue.web.state import WebConfig

__all__ = ["find_job", "lanes", "registries"]


def registries(tasks: Tasks | Sequence[Tasks]) -> tuple[Tasks, ...]:
    """The registries an app serves, in order; :class:`ConfigurationError` for none, or two of one queue."""
    found = (tasks,) if isinstance(tasks, Tasks) else tuple(tasks)
    if not found:
        raise ConfigurationError("create_app needs at least one Tasks registry")
    if not all(isinstance(t, Tasks) for t in found):
        raise ConfigurationError("create_app takes a Tasks registry or a sequence of them")
    names = [t.queue for t in found]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise ConfigurationError(f"each queue may be served once; given twice: {', '.join(doubled)}")
    return found


def lanes(served: tuple[Tasks, ...], worker: Worker | None) -> tuple[Worker | None, ...]:
    """The single-queue worker of each served registry (None where this process runs none).

    ``worker`` is a one-queue :class:`~aqueue.Worker` running one of the registries, or a multi-queue worker
    (``worker.registries``, ``worker.lane(queue)``): each served queue it runs gets its lane.
    """
    if worker is None:
        return tuple(None for _ in served)
    runs = worker.registries  # a worker of one queue runs one registry and is its own lane
    if not any(r is t for r in runs for t in served):
        raise ConfigurationError("the worker must run the same Tasks the app serves (at least one of them)")
    return tuple(worker.lane(t.queue) if any(r is t for r in runs) else None for t in served)


async def find_job(served: Sequence[WebConfig], job_id: str) -> tuple[WebConfig, dict[str, Any]] | None:
    """The first queue (in the order served) holding a record of ``job_id``, with the job's view."""
    found = await asyncio.gather(*(config.tasks._job_views([job_id]) for config in served))
    for config, (view,) in zip(served, found, strict=True):
        if view is not None and view["task"]:
            return config, view
    return None
