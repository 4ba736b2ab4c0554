"""The REST job API: enqueue, inspect, list, re-run, cancel; workflows; the dead-letter list and reprocess; manual
scaling; pausing and resuming the queue; deleting old finished records.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from aiohttp import web

from aqueue._core import listing
from aqueue._core.errors import ConfigurationError, SerializationError, UnknownJob
from aqueue._core.options import KEEP_FOREVER, MAX_JOB_ID, parse_at
from aqueue._core.record import JobStatus
from aqueue._core.task import Task
from aqueue._core.tasks import FINISHED_STATUSES
from aqueue.web.bodies import (
    MAX_SECONDS,
    int_field,
    invalid,
    number_field,
    query_int,
    read_object,
    reject_unknown,
    str_field,
)
from aqueue.web.queues import find_job
from aqueue.web.replies import error, reply
from aqueue.web.state import QUEUES, config_of, is_overview

__all__ = ["routes"]

routes = web.RouteTableDef()

_MAX_BATCH = 1000  # job ids or jobs one reprocess call may move
_MAX_ID = 200
_MAX_TEXT = 500  # a cancellation reason, who paused
_OPTIONS = (
    "priority", "delay", "max_attempts", "timeout", "backoff_base", "backoff_max", "retry_delay", "keep_result",
    "job_id", "at", "group",
)  # fmt: skip


def _unknown(job_id: str) -> str:
    return f"no job {job_id!r} (never enqueued, or its retention expired)"


def _job_id(request: web.Request, what: str = "job") -> str:
    job_id = request.match_info["id"]
    if not job_id or len(job_id) > _MAX_ID:
        raise error(web.HTTPNotFound, f"no such {what}")
    return job_id


def _options(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid("options must be an object")
    reject_unknown(value, _OPTIONS, "options")
    found = {
        "priority": str_field(value, "priority", "options", max_length=100),
        "delay": number_field(value, "delay", "options", minimum=0, maximum=MAX_SECONDS),
        "max_attempts": int_field(value, "max_attempts", "options", minimum=1, maximum=1_000_000),
        "timeout": number_field(value, "timeout", "options", minimum=0, maximum=MAX_SECONDS, exclusive=True),
        "backoff_base": number_field(value, "backoff_base", "options", minimum=0, maximum=MAX_SECONDS),
        "backoff_max": number_field(value, "backoff_max", "options", minimum=0, maximum=MAX_SECONDS),
        "retry_delay": number_field(value, "retry_delay", "options", minimum=0, maximum=MAX_SECONDS),
        "keep_result": _keep_result(value),
        "job_id": str_field(value, "job_id", "options", max_length=MAX_JOB_ID),
        "at": _at(value),
        "group": str_field(value, "group", "options", max_length=MAX_JOB_ID),
    }
    return {name: v for name, v in found.items() if v is not None}


def _at(value: dict[str, Any]) -> datetime | None:
    """``options.at``: an ISO 8601 time with its UTC offset (``2026-12-24T09:00:00Z``)."""
    text = str_field(value, "at", "options", max_length=64)
    try:
        return None if text is None else parse_at(text)
    except ValueError as exc:
        raise invalid(f"options.at: {exc}") from None


def _keep_result(value: dict[str, Any]) -> float | None:
    """``options.keep_result``: seconds, or ``"forever"`` (:data:`~aqueue.KEEP_FOREVER`)."""
    if value.get("keep_result") == "forever":
        return KEEP_FOREVER
    return number_field(value, "keep_result", "options", minimum=0, maximum=MAX_SECONDS)


def _check_arguments(task: Task[Any, Any], args: list[Any], kwargs: dict[str, Any]) -> None:
    """422 if the arguments cannot bind to the task's signature (a job that would fail on every attempt)."""
    why = task.arguments_error(args, kwargs)
    if why is not None:
        raise invalid(why)


@routes.post("/jobs")
async def enqueue_job(request: web.Request) -> web.Response:
    """POST /jobs: enqueue one job of a registered task (with optional ``options`` and ``headers``) → 201
    {"id", "duplicate": false}, or 200 {"id", "duplicate": true} when its ``job_id`` exists or its dedup key is held
    (nothing created)."""
    config = config_of(request)
    body = await read_object(request, config.max_body)
    reject_unknown(body, ("task", "args", "kwargs", "options", "headers"), "the body")
    name = body.get("task")
    if not isinstance(name, str) or not name:
        raise invalid("task must be the name of a registered task")
    task = config.tasks.get(name)
    if task is None:
        known = ", ".join(sorted(config.tasks.names)[:50]) or "none"
        raise invalid(f"unknown task {name[:_MAX_ID]!r}; registered: {known}")
    args, kwargs = body.get("args", []), body.get("kwargs", {})
    if not isinstance(args, list):
        raise invalid("args must be an array")
    if not isinstance(kwargs, dict):
        raise invalid("kwargs must be an object")
    options = _options(body.get("options"))
    _check_arguments(task, args, kwargs)
    try:
        spec = task.with_options(**options, headers=body.get("headers")).spec(*args, **kwargs)
    except (ConfigurationError, SerializationError) as exc:
        raise invalid(str(exc)) from None
    job = await config.tasks.enqueue(spec)
    return reply({"id": job.id, "duplicate": job.duplicate}, status=200 if job.duplicate else 201)


@routes.get("/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    """GET /jobs?status=&task=&limit=: the most recently active jobs, newest first (bounded: see listing)."""
    config = config_of(request)
    status = request.query.get("status") or None
    if status is not None and status not in {s.value for s in JobStatus}:
        raise invalid(f"status must be one of {', '.join(s.value for s in JobStatus)}, got {status[:_MAX_ID]!r}")
    task = request.query.get("task") or None
    if task is not None and len(task) > _MAX_ID:
        raise invalid(f"task must be at most {_MAX_ID} characters")
    limit = query_int(request, "limit", 50, minimum=1, maximum=500)
    page = await config.tasks.jobs(status=status, task=task, limit=limit)
    jobs = [dataclasses.asdict(summary) for summary in page.jobs]
    return reply({"jobs": jobs, "scanned_events": page.scanned, "complete": page.complete})


@routes.get("/jobs/{id}")
async def get_job(request: web.Request) -> web.Response:
    """GET /jobs/{id}: the job's record; 404 if there is none. Unprefixed in an app serving several queues, the
    id is looked up in each (the first queue holding it answers, its name in ``"queue"``)."""
    job_id = _job_id(request)
    if is_overview(request):
        found = await find_job(list(request.config_dict[QUEUES].values()), job_id)
        if found is None:
            raise error(web.HTTPNotFound, _unknown(job_id))
        return reply(found[1] | {"queue": found[0].tasks.queue})
    (view,) = await config_of(request).tasks._job_views([job_id])
    if view is None or not view["task"]:
        raise error(web.HTTPNotFound, _unknown(job_id))
    return reply(view)


@routes.delete("/jobs/{id}")
async def cancel_job(request: web.Request) -> web.Response:
    """DELETE /jobs/{id} [{"reason": text}]: cancel a job → {"id", "status": "cancelled" | "cancelling"}.

    A job that has not started is cancelled at once and never runs; a running one is cancelled by its worker
    within milliseconds (``cancelling``: its record becomes ``cancelled`` when the worker settles it). 409 if the
    job had already finished.
    """
    config = config_of(request)
    job_id = _job_id(request)
    body = await read_object(request, config.max_body, optional=True)
    reject_unknown(body, ("reason",), "the body")
    reason = str_field(body, "reason", "the body", max_length=_MAX_TEXT) or "cancelled"
    (state,) = await config.tasks._cancel_jobs([job_id], reason)
    if state == "unknown":
        raise error(web.HTTPNotFound, _unknown(job_id))
    if state not in ("cancelled", "cancelling"):  # "already-<status>": it had finished
        raise error(web.HTTPConflict, f"job {job_id!r} already finished: it is {state.removeprefix('already-')}")
    return reply({"id": job_id, "status": state})


@routes.post("/jobs/{id}/retry")
async def retry_job(request: web.Request) -> web.Response:
    """POST /jobs/{id}/retry: re-run a dead, cancelled or expired job, or a failed one now (``Tasks.retry``): back on
    its stream under the same id, attempts reset. 409 with the reason for any other status (a succeeded job too)."""
    config = config_of(request)
    job_id = _job_id(request)
    reject_unknown(await read_object(request, config.max_body, optional=True), (), "the body")
    try:
        result = await config.tasks.retry(job_id)
    except UnknownJob:
        raise error(web.HTTPNotFound, _unknown(job_id)) from None
    if not result.requeued:
        raise error(web.HTTPConflict, result.skipped.get(job_id, "job could not be retried"))
    return reply({"id": job_id, "status": JobStatus.QUEUED.value})


@routes.get("/workflows/{id}")
async def get_workflow(request: web.Request) -> web.Response:
    """GET /workflows/{id}: the workflow's steps, each with its job id and state; 404 if there is none."""
    workflow_id = _job_id(request, "workflow")
    view = await listing.workflow_view(await config_of(request).tasks._broker(), workflow_id)
    if view is None:
        raise error(web.HTTPNotFound, f"no workflow {workflow_id!r} (never enqueued, or its retention expired)")
    return reply(view)


@routes.get("/dead-letter")
async def dead_letter(request: web.Request) -> web.Response:
    """GET /dead-letter?limit=: the newest dead-letter entries, newest first, and the total."""
    config = config_of(request)
    limit = query_int(request, "limit", 50, minimum=1, maximum=_MAX_BATCH)
    page = await config.tasks.dead_letters(limit)
    return reply({"entries": [dataclasses.asdict(entry) for entry in page.entries], "total": page.total})


@routes.post("/dead-letter/reprocess")
async def reprocess(request: web.Request) -> web.Response:
    """POST /dead-letter/reprocess {"ids": [job ids]} or {"max": N}: move dead jobs back to their streams."""
    config = config_of(request)
    body = await read_object(request, config.max_body)
    reject_unknown(body, ("ids", "max"), "the body")
    if ("ids" in body) == ("max" in body):
        raise invalid('give exactly one of "ids" (job ids) or "max" (a count)')
    if "ids" in body:
        ids = body["ids"]
        if not isinstance(ids, list) or not 1 <= len(ids) <= _MAX_BATCH:
            raise invalid(f"ids must be an array of 1 to {_MAX_BATCH} job ids")
        if not all(isinstance(i, str) and 0 < len(i) <= _MAX_ID for i in ids):
            raise invalid(f"every id must be a job id: a non-empty string of at most {_MAX_ID} characters")
        result = await config.tasks.reprocess(ids)
    else:
        count = int_field(body, "max", "the body", minimum=1, maximum=_MAX_BATCH)
        if count is None:
            raise invalid(f"max must be an integer from 1 to {_MAX_BATCH}")
        result = await config.tasks.reprocess(max=count)
    skipped = [{"id": i, "reason": why} for i, why in result.skipped.items()]
    return reply({"requeued": result.requeued, "skipped": skipped})


@routes.post("/scale")
async def scale(request: web.Request) -> web.Response:
    """POST /scale {"concurrency": N[, "ttl": s]} or {"release": true}: override the attached worker's autoscaler."""
    config = config_of(request)
    body = await read_object(request, config.max_body)
    worker = config.worker
    if worker is None:
        raise error(web.HTTPConflict, "no worker is attached to this app (serve it with `aqueue worker --web`)")
    if not worker.autoscaling:
        raise error(web.HTTPConflict, f"worker {worker.id} has a fixed concurrency of {worker.concurrency}; "
                    "scaling needs min_concurrency < max_concurrency")  # fmt: skip
    reject_unknown(body, ("concurrency", "ttl", "release"), "the body")
    if ("concurrency" in body) == ("release" in body):
        raise invalid('give exactly one of "concurrency" or "release": true')
    if "release" in body:
        if body["release"] is not True or "ttl" in body:
            raise invalid('release must be true (and takes no "ttl")')
        worker.release_scale()
    else:
        low, high = worker.min_concurrency, worker.max_concurrency
        target = int_field(body, "concurrency", "the body", minimum=low, maximum=high)
        if target is None:
            raise invalid(f"concurrency must be an integer from {low} to {high}")
        ttl = number_field(body, "ttl", "the body", minimum=0, maximum=MAX_SECONDS, exclusive=True)
        await worker.scale_to(target, ttl)
    return reply(
        {
            "worker": worker.id,
            "concurrency": worker.concurrency,
            "min_concurrency": worker.min_concurrency,
            "max_concurrency": worker.max_concurrency,
            "override": worker.scale_override,
        }
    )


async def _pause_reply(request: web.Request, changed: bool) -> web.Response:
    info = await config_of(request).tasks.paused()
    at, by = (info or {}).get("at"), (info or {}).get("by")
    return reply(
        {
            "paused": info is not None,
            "changed": changed,
            "at": at if isinstance(at, int | float) and not isinstance(at, bool) else None,
            "by": str(by) if by is not None else None,
        }
    )


@routes.post("/pause")
async def pause(request: web.Request) -> web.Response:
    """POST /pause [{"by": who}]: no worker starts a job until resumed (running jobs finish).

    → {"paused": true, "changed", "at", "by"}; ``changed`` is false if the queue was already paused (``at`` and
    ``by`` are then those of the pause in force).
    """
    config = config_of(request)
    body = await read_object(request, config.max_body, optional=True)
    reject_unknown(body, ("by",), "the body")
    by = str_field(body, "by", "the body", max_length=_MAX_TEXT) or "web"
    return await _pause_reply(request, await config.tasks.pause(by=by))


@routes.post("/resume")
async def resume(request: web.Request) -> web.Response:
    """POST /resume: let workers start jobs again → {"paused": false, "changed"} (false: it was not paused)."""
    config = config_of(request)
    reject_unknown(await read_object(request, config.max_body, optional=True), (), "the body")
    return await _pause_reply(request, await config.tasks.resume())


@routes.post("/cleanup")
async def cleanup(request: web.Request) -> web.Response:
    """POST /cleanup [{"older_than": seconds, "statuses": [...]}]: delete finished job records → {"deleted": n}.

    Deletes the records of jobs that finished (by default with any finished status) at least ``older_than``
    seconds ago (default 0: every finished job); with ``dead``, the dead-letter entries that old go too.
    """
    config = config_of(request)
    body = await read_object(request, config.max_body, optional=True)
    reject_unknown(body, ("older_than", "statuses"), "the body")
    older_than = number_field(body, "older_than", "the body", minimum=0, maximum=MAX_SECONDS) or 0.0
    statuses = body.get("statuses")
    if statuses is None:
        statuses = list(FINISHED_STATUSES)
    allowed = ", ".join(FINISHED_STATUSES)
    if not isinstance(statuses, list) or not statuses:
        raise invalid(f"statuses must be a non-empty array of finished statuses ({allowed})")
    for st in statuses:
        if not isinstance(st, str) or st not in FINISHED_STATUSES:
            shown = repr(st[:_MAX_ID]) if isinstance(st, str) else repr(st)[:_MAX_ID]
            raise invalid(f"statuses may only name finished statuses ({allowed}), got {shown}")
    statuses = list(dict.fromkeys(statuses))
    try:
        deleted = await config.tasks.cleanup(older_than=older_than, statuses=statuses)
    except ConfigurationError as exc:
        raise invalid(str(exc)) from None
    return reply({"deleted": deleted, "older_than": older_than, "statuses": statuses})
