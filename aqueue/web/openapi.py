"""``/openapi.json``: an OpenAPI 3.0 description of the sub-app, shaped by how the app was configured.

Security requirements follow the configuration (no token: none; a token: on mutating operations, and on reads
when ``protect_reads``), ``servers`` is the prefix the app is mounted under, and the schemas name this app's
registered tasks and its worker's bounds, so the document is usable as is by a client generator or a fuzzer
(schemathesis).
"""

from __future__ import annotations

from collections.abc import Sequence
from copy import deepcopy as copy_deep
from typing import Any

from aiohttp import web

from aqueue._core.record import JobStatus
from aqueue._version import __version__
from aqueue.web.replies import reply
from aqueue.web.schemas import STR, ref, schemas_for
from aqueue.web.state import QUEUES, WebConfig, config_of

__all__ = ["build_document", "document"]


def _json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    reasons = {
        400: "malformed JSON, or a body that is not a JSON object",
        401: "missing or invalid bearer token",
        403: "a browser request from another site (Sec-Fetch-Site / Origin); see allowed_origins",
        404: "no such job or workflow (never created, or its retention expired), or no such queue",
        409: "the job or the worker is not in a state that allows it (the message says which state)",
        413: "request body over the limit",
        415: "body not sent as application/json",
        422: "a value in the request is invalid",
        503: "Redis is not answering",
    }
    return {str(c): _json_body(ref("Error"), reasons[c]) for c in codes}


def _op(
    summary: str,
    ok: tuple[int, dict[str, Any], str] | None,
    *errs: int,
    body: str | None = None,
    params: list[dict[str, Any]] | None = None,
    optional_body: bool = False,
) -> dict[str, Any]:
    responses = _errors(*errs)
    if ok is not None:
        responses[str(ok[0])] = _json_body(ok[1], ok[2])
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": not optional_body, "content": {"application/json": {"schema": ref(body)}}}
    if params:
        op["parameters"] = params
    return op


def _with_response(op: dict[str, Any], extra: tuple[int, dict[str, Any], str]) -> dict[str, Any]:
    """``op`` with one more success response."""
    op["responses"][str(extra[0])] = _json_body(extra[1], extra[2])
    return op


def _query(name: str, schema: dict[str, Any], text: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": text}


#: Served to anyone: the dashboard page carries no queue data, and probes cannot be expected to hold a token.
_ALWAYS_OPEN = frozenset({"/", "/health/live", "/health/ready"})
_JOB_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
_WORKFLOW_ID = _JOB_ID | {"description": "the workflow's id (WorkflowHandle.id)"}
_BODY = (400, 413, 415, 422)


def _paths() -> dict[str, Any]:
    status_enum = {"type": "string", "enum": ["", *(s.value for s in JobStatus)], "description": "empty: any"}
    html = {"description": "the dashboard page", "content": {"text/html": {"schema": {"type": "string"}}}}
    upgrade = {
        "101": {"description": "switched to the WebSocket protocol: snapshot, then events and metrics"},
        **_errors(401),
        "426": _json_body(ref("Error"), "not a WebSocket upgrade request"),
    }
    metrics = {"description": "Prometheus text exposition", "content": {"text/plain": {"schema": {"type": "string"}}}}
    return {
        "/": {"get": {"summary": "The live dashboard page", "responses": {"200": html}}},
        "/ws": {
            "get": {
                "summary": "Live events (?types=, ?job=, ?task=, ?since=, ?recent=, ?queue=, ?token=)",
                "responses": upgrade,
            }
        },
        "/openapi.json": {"get": _op("This document", (200, {"type": "object"}, "OpenAPI 3.0"), 401)},
        "/status": {"get": _op("Queue status", (200, ref("Status"), "the status"), 401, 503)},
        "/health/live": {"get": _op("Liveness", (200, ref("Health"), "the process answers"))},
        "/health/ready": {"get": _op("Readiness", (200, ref("Health"), "ready"), 503)},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": metrics, **_errors(401)}}},
        "/jobs": {
            "post": _with_response(
                _op("Enqueue a job", (201, ref("JobId"), "enqueued"), 401, *_BODY, 503, body="EnqueueRequest"),
                (200, ref("JobId"), "not enqueued: a job with its job_id exists, or its dedup key is held"),
            ),
            "get": _op(
                "Recently active jobs, newest first",
                (200, ref("JobList"), "the jobs"),
                401,
                422,
                503,
                params=[
                    _query("status", status_enum, "current status"),
                    _query("task", STR, "task name"),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "at most"),
                ],
            ),
        },
        "/jobs/{id}": {
            "parameters": [_JOB_ID],
            "get": _op("One job", (200, ref("Job"), "the job"), 401, 404, 503),
            "delete": _op(
                "Cancel a job: at once if it has not started, by its worker within milliseconds if it is running",
                (200, ref("Cancelled"), "cancelled, or being cancelled by its worker"),
                401,
                404,
                409,
                *_BODY,
                503,
                body="CancelRequest",
                optional_body=True,
            ),
        },
        "/jobs/{id}/retry": {
            "parameters": [_JOB_ID],
            "post": _op(
                "Re-run a dead, cancelled or expired job, or a failed one now: same id, attempts reset",
                (200, ref("Requeued"), "queued again"),
                401,
                404,
                409,
                *_BODY,
                503,
                body="Empty",
                optional_body=True,
            ),
        },
        "/workflows/{id}": {
            "parameters": [_WORKFLOW_ID],
            "get": _op(
                "A workflow and the state of each of its steps", (200, ref("Workflow"), "the workflow"), 401, 404, 503
            ),
        },
        "/dead-letter": {
            "get": _op(
                "Newest dead-letter entries",
                (200, ref("DeadLetter"), "the entries"),
                401,
                422,
                503,
                params=[_query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "at most")],
            ),
        },
        "/dead-letter/reprocess": {
            "post": _op(
                "Move dead jobs back to their streams",
                (200, ref("ReprocessResult"), "what moved"),
                401,
                *_BODY,
                503,
                body="ReprocessRequest",
            ),
        },
        "/scale": {
            "post": _op(
                "Override or release the attached worker's autoscaler",
                (200, ref("ScaleResult"), "applied"),
                401,
                409,
                *_BODY,
                503,
                body="ScaleRequest",
            ),
        },
        "/pause": {
            "post": _op(
                "Pause the queue: no worker starts a job until it is resumed (running jobs finish)",
                (200, ref("PauseState"), "paused (changed: false if it already was)"),
                401,
                *_BODY,
                503,
                body="PauseRequest",
                optional_body=True,
            ),
        },
        "/resume": {
            "post": _op(
                "Resume a paused queue",
                (200, ref("PauseState"), "not paused (changed: false if it was not)"),
                401,
                *_BODY,
                503,
                body="Empty",
                optional_body=True,
            ),
        },
        "/cleanup": {
            "post": _op(
                "Delete the records of jobs that finished at least older_than seconds ago",
                (200, ref("CleanupResult"), "how many records were deleted"),
                401,
                *_BODY,
                503,
                body="CleanupRequest",
                optional_body=True,
            ),
        },
    }


def _secure(paths: dict[str, Any], config: WebConfig) -> None:
    """Add security requirements where this configuration asks for a token, drop 401s where it never does; 403 on
    what refuses cross-site browser requests."""
    for path, item in paths.items():
        for method, op in item.items():
            if method == "parameters" or path in _ALWAYS_OPEN:
                continue
            socket = path.endswith("/ws")
            if method != "get" or socket:
                op["responses"].update(_errors(403))
            if config.token is None:
                op["responses"].pop("401", None)
            elif socket:
                op["security"] = [{"bearer": []}, {"token_query": []}]
            elif method != "get" or config.protect_reads:
                op["security"] = [{"bearer": []}]
            else:
                op["responses"].pop("401", None)


#: The routes an app does not repeat under ``/queues/{queue}``: they are about the process, not a queue.
_UNPREFIXED = frozenset({"/", "/health/live", "/health/ready"})


def _per_queue(paths: dict[str, Any], queues: Sequence[str]) -> dict[str, Any]:
    """Every queue route again under ``/queues/{queue}``, the queue a path parameter naming the queues served."""
    param = {
        "name": "queue",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": list(queues)},
        "description": "the queue the request is about",
    }
    prefixed: dict[str, Any] = {}
    for path, item in paths.items():
        if path in _UNPREFIXED:
            continue
        copy = copy_deep(item)
        copy["parameters"] = [param, *copy.get("parameters", [])]
        for method, op in copy.items():
            if method != "parameters":
                op["responses"].setdefault("404", _errors(404)["404"])
        prefixed[f"/queues/{{queue}}{path}"] = copy
    return prefixed


def build_document(config: WebConfig, base: str = "/", queues: Sequence[str] = ()) -> dict[str, Any]:
    """The OpenAPI document for an app with ``config`` mounted at ``base``; with ``queues`` (the root document of
    an app), each queue route is also described under ``/queues/{queue}``."""
    paths = _paths()
    if queues:
        paths |= _per_queue(paths, queues)
    _secure(paths, config)
    return {
        "openapi": "3.0.3",
        "info": {"title": f"aqueue: queue {config.tasks.queue}", "version": __version__},
        "servers": [{"url": base}],
        "paths": paths,
        "components": {
            "schemas": schemas_for(config),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "token_query": {"type": "apiKey", "in": "query", "name": "token"},
            },
        },
    }


async def document(request: web.Request) -> web.Response:
    """GET /openapi.json."""
    base = request.path.removesuffix("openapi.json").rstrip("/") or "/"
    served: dict[str, WebConfig] = request.config_dict[QUEUES]
    queues = () if "queue" in request.match_info else tuple(served)
    return reply(build_document(config_of(request), base, queues))
