"""``/status`` and the health checks.

Everything in a status comes from Redis (depths, counters, worker heartbeats, the scaling stream), so an app
serving no worker of its own (``aqueue web``) sees the whole queue. Only the rates and the event-loop lag are
measured in this process (:mod:`aqueue.web.live`).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from aqueue._core.cron import CronStatus
from aqueue._core.info import QueueInfo
from aqueue._core.wire import QueueSample
from aqueue.web.replies import error, reply
from aqueue.web.state import CONFIG, QUEUES, WebConfig, config_of, is_overview

__all__ = [
    "SCALING_SHOWN",
    "build_overview",
    "build_status",
    "health_live",
    "health_ready",
    "limits_view",
    "queue_summary",
    "status",
]

#: How many of the latest scaling decisions a status lists.
SCALING_SHOWN = 20
_COUNTERS = ("enqueued", "succeeded", "failed", "retried", "dead", "cancelled", "expired")
_READY_TIMEOUT = 2.0


def _registry_ttl_ms(config: WebConfig) -> int:
    if config.worker is not None:
        return config.worker._registry_ttl_ms
    lease = config.tasks.settings.lease  # what a worker with the queue's default lease uses (Worker._registry_ttl_ms)
    return round(max(lease, 3 * min(lease / 3, 10.0)) * 1000)


def _worker_view(w: dict[str, Any], seen_ms: int | None, now_ms: int) -> dict[str, Any]:
    processed, failed = int(w.get("processed", 0)), int(w.get("failed", 0))
    return {
        "id": w.get("id"),
        "host": w.get("host"),
        "pid": w.get("pid"),
        "concurrency": w.get("concurrency"),
        "min_concurrency": w.get("min_concurrency"),
        "max_concurrency": w.get("max_concurrency"),
        "strategy": w.get("strategy"),
        "busy": w.get("busy"),
        "processed": processed,
        "failed": failed,
        "success_rate": (processed - failed) / processed if processed else None,
        "started_at": w.get("started_at"),
        # Only str to str: what the worker checked, from a record any client of Redis could have written.
        "metadata": {str(k): str(v) for k, v in meta.items()} if isinstance(meta := w.get("metadata"), dict) else {},
        # Both times on the Redis clock, so a worker on a host with a skewed clock still shows a true age.
        "heartbeat_age": max(0.0, (now_ms - seen_ms) / 1000) if seen_ms is not None else None,
    }


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _scaling_view(entry_id: str, f: dict[str, str]) -> dict[str, Any]:
    try:
        inputs = orjson.loads(f.get("inputs", "{}"))
    except orjson.JSONDecodeError:
        inputs = {}
    return {
        "id": entry_id,
        "at": int(entry_id.split("-", 1)[0]) / 1000,  # the entry id's time: when the change was applied
        "worker": f.get("worker", ""),
        "from": int(_number(f.get("from")) or 0),
        "to": int(_number(f.get("to")) or 0),
        "reason": f.get("reason", ""),
        "strategy": f.get("strategy", ""),
        "confidence": _number(f.get("confidence")),
        "inputs": inputs if isinstance(inputs, dict) else {},
    }


def _seconds(at: datetime | None) -> float | None:
    return at.timestamp() if at is not None else None


def _cron_view(crons: list[CronStatus]) -> list[dict[str, Any]]:
    """The cron jobs as :meth:`Tasks.cron_jobs` gives them: those registered here and those only recorded in
    Redis by other processes' workers."""
    return [
        {
            "name": c.name,
            "task": c.task,
            "schedule": c.description,
            "next_run": _seconds(c.next_run),
            "last_run": _seconds(c.last_run),
            "last_job": c.last_job,
            "registered": c.registered,
        }
        for c in crons
    ]


def _pause_view(info: dict[str, Any] | None) -> dict[str, Any] | None:
    if info is None:
        return None
    at, by = info.get("at"), info.get("by")
    return {
        "at": float(at) if isinstance(at, int | float) and not isinstance(at, bool) else None,
        "by": str(by) if by is not None else None,
    }


def limits_view(info: QueueInfo) -> list[dict[str, Any]]:
    """The concurrency limits in use (tasks' ``concurrency_limit`` and groups), as ``/status`` and the dashboard
    show them: one object per limit with its running jobs, its limit (``None``: a group with no limit) and the
    jobs waiting for it."""
    return [
        {"kind": u.kind, "name": u.name, "running": u.running, "limit": u.limit, "waiting": u.waiting}
        for u in info.limits
    ]


async def _control_state(config: WebConfig) -> tuple[dict[str, Any] | None, list[CronStatus]]:
    """The pause record and the cron jobs, read together."""
    paused, crons = await asyncio.gather(config.tasks.paused(), config.tasks.cron_jobs())
    return paused, crons


async def build_status(config: WebConfig) -> dict[str, Any]:
    """The ``/status`` document: depths, rates, workers, scaling decisions, counters, pause and cron jobs."""
    broker = await config.tasks._broker()
    info: QueueInfo
    sample: QueueSample
    info, sample, (now_ms, seen), per_task, scaling, (paused, crons) = await asyncio.gather(
        config.tasks.info(),  # Tasks.info, not the broker's: it adds the concurrency limits
        broker.sample(_registry_ttl_ms(config)),
        broker.heartbeats(),
        broker.task_counters(),
        broker.scaling_events(SCALING_SHOWN),
        _control_state(config),
    )
    counters = {name: info.stats.get(name, 0) for name in _COUNTERS} | info.stats
    rates = config.live.add(counters["enqueued"], counters["succeeded"], counters["failed"])
    oldest = 0.0 if sample.oldest_ms is None else max(0.0, (sample.now_ms - sample.oldest_ms) / 1000)
    return {
        "queue": config.tasks.queue,
        "time": now_ms / 1000,
        "depths": info.queued,
        "queued": sum(info.queued.values()),
        "scheduled": info.scheduled,
        "due": sample.due,
        "active": info.active,
        "dead_letter": info.dead,
        "oldest_wait": oldest,
        "throughput": rates.throughput,
        "arrival_rate": rates.arrival,
        "error_rate": rates.error_rate,
        "rate_window": rates.window,
        "loop_lag": config.live.loop_lag,
        "attached_worker": config.worker.id if config.worker is not None else None,
        "paused": _pause_view(paused),
        "workers": [_worker_view(w, seen.get(str(w.get("id"))), now_ms) for w in info.workers],
        "scaling": [_scaling_view(entry_id, f) for entry_id, f in scaling],
        "counters": counters,
        "limits": limits_view(info),
        "groups": info.groups,
        "grouped": info.grouped,
        "tasks": {name: {c: per_task[name].get(c, 0) for c in _COUNTERS} for name in sorted(per_task)},
        "cron": _cron_view(crons),
    }


def queue_summary(status: dict[str, Any]) -> dict[str, Any]:
    """One queue's line of the all-queues overview: its depths, counters, workers and limits, from its status."""
    workers = status["workers"]
    return {
        "queued": status["queued"],
        "depths": status["depths"],
        "scheduled": status["scheduled"],
        "active": status["active"],
        "dead_letter": status["dead_letter"],
        "oldest_wait": status["oldest_wait"],
        "throughput": status["throughput"],
        "arrival_rate": status["arrival_rate"],
        "error_rate": status["error_rate"],
        "paused": status["paused"] is not None,
        "workers": len(workers),
        "concurrency": sum(int(w.get("concurrency") or 0) for w in workers),
        "busy": sum(int(w.get("busy") or 0) for w in workers),
        "counters": status["counters"],
        "limits": status["limits"],
        "groups": status["groups"],
        "grouped": status["grouped"],
    }


async def build_overview(queues: dict[str, WebConfig]) -> dict[str, Any]:
    """The unprefixed ``/status`` of an app serving several queues: the first queue's status, as a one-queue app
    gives it, plus ``"queues"``: every queue's summary by name (the statuses read concurrently)."""
    statuses = await asyncio.gather(*(build_status(config) for config in queues.values()))
    return statuses[0] | {"queues": {name: queue_summary(s) for name, s in zip(queues, statuses, strict=True)}}


async def status(request: web.Request) -> web.Response:
    """GET /status (with several queues, unprefixed: :func:`build_overview`)."""
    if is_overview(request):
        return reply(await build_overview(request.config_dict[QUEUES]))
    return reply(await build_status(config_of(request)))


async def health_live(request: web.Request) -> web.Response:
    """GET /health/live: the process answers."""
    return reply({"status": "alive"})


async def health_ready(request: web.Request) -> web.Response:
    """GET /health/ready: Redis answers and, when a worker is attached, it is running and none of its sub-tasks
    keeps failing; 503 with the reason if not. An app serving several queues checks each (their Redis may differ).
    """
    served: dict[str, WebConfig] = request.config_dict[QUEUES]
    for config in served.values():
        await _ready(config, config.tasks.queue if len(served) > 1 else None)
    return reply(
        {"status": "ready", "redis_circuit": (await request.config_dict[CONFIG].tasks._broker()).breaker.state}
    )


async def _ready(config: WebConfig, queue: str | None) -> None:
    """Raise 503 with the reason unless ``config``'s queue is ready (``queue``: its name, in the reason)."""
    of = f" (queue {queue})" if queue is not None else ""
    try:
        async with asyncio.timeout(_READY_TIMEOUT):
            await (await config.tasks._broker()).ping()
    except TimeoutError:
        raise error(web.HTTPServiceUnavailable, f"Redis did not answer within {_READY_TIMEOUT:g} s{of}") from None
    except Exception as exc:  # any failure to answer (refused, auth, loading…) means not ready, never a 500
        config.live.redis_errors += 1
        raise error(web.HTTPServiceUnavailable, f"Redis is not answering{of}: {exc}") from None
    worker = config.worker
    if worker is not None and not worker.is_running:
        raise error(web.HTTPServiceUnavailable, f"worker {worker.id} is not running")
    if worker is not None and (failing := worker.failing):
        what = "; ".join(f"{name}: {error}" for name, error in failing.items())
        raise error(web.HTTPServiceUnavailable, f"worker {worker.id} has sub-tasks that keep failing: {what}")
