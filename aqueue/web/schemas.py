"""The OpenAPI component schemas of the web API's requests and replies (data only; see ``openapi``)."""

from __future__ import annotations

from typing import Any

from aqueue.job import JobStatus
from aqueue.web.state import WebConfig

__all__ = ["INT", "SCHEMAS", "STR", "arr", "obj", "ref", "schemas_for"]

_NUM = {"type": "number"}
INT = {"type": "integer"}
STR = {"type": "string"}
_SECONDS_NULL = {"type": "number", "nullable": True}
_STR_NULL = {"type": "string", "nullable": True}


def ref(name: str) -> dict[str, str]:
    """A reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def obj(props: dict[str, Any], required: tuple[str, ...] = (), extra: bool = False) -> dict[str, Any]:
    """An object schema; closed (no other properties) unless ``extra``, as the API rejects unknown fields."""
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": extra}
    if required:
        out["required"] = list(required)
    return out


def arr(items: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """An array schema of ``items`` (``kw``: minItems, maxItems, description…)."""
    return {"type": "array", "items": items, **kw}


_JOB_SUMMARY = {
    "id": STR,
    "task": STR,
    "status": {"type": "string", "enum": [s.value for s in JobStatus]},
    "priority": STR,
    "attempts": INT,
    "enqueued_at": _SECONDS_NULL,
    "started_at": _SECONDS_NULL,
    "finished_at": _SECONDS_NULL,
    "worker": _STR_NULL,
    "error": _STR_NULL,
}
_SECONDS = {"type": "number", "minimum": 0, "maximum": 315360000}
#: Every component schema, before :func:`schemas_for` narrows them to one app.
SCHEMAS: dict[str, Any] = {
    "Error": obj({"error": STR}, ("error",)),
    "JobOptions": obj(
        {
            "priority": {"type": "string", "nullable": True, "description": "a priority level of the queue"},
            "delay": {**_SECONDS, "nullable": True, "description": "seconds until the job is due"},
            "max_attempts": {"type": "integer", "minimum": 1, "maximum": 1000000, "nullable": True},
            "timeout": {**_SECONDS, "exclusiveMinimum": True, "nullable": True},
            "backoff_base": {**_SECONDS, "nullable": True},
            "backoff_max": {**_SECONDS, "nullable": True},
        }
    ),
    "EnqueueRequest": obj(
        {
            "task": {"type": "string", "minLength": 1, "description": "a registered task name"},
            "args": arr({}, description="positional arguments (JSON values)"),
            "kwargs": {"type": "object", "additionalProperties": True, "description": "keyword arguments"},
            "options": ref("JobOptions"),
        },
        ("task",),
    ),
    "JobId": obj({"id": STR}, ("id",)),
    "Requeued": obj({"id": STR, "status": {"type": "string", "enum": ["queued"]}}, ("id", "status")),
    "JobSummary": obj(_JOB_SUMMARY, tuple(_JOB_SUMMARY)),
    "Job": obj(
        _JOB_SUMMARY
        | {
            "args": arr({}),
            "kwargs": {"type": "object", "additionalProperties": True},
            "max_attempts": {"type": "integer", "nullable": True},
            "due_at": _SECONDS_NULL,
            "result": {"description": "the task's return value"},
            "traceback": _STR_NULL,
        },
        tuple(_JOB_SUMMARY),
    ),
    "JobList": obj(
        {"jobs": arr(ref("JobSummary")), "scanned_events": INT, "complete": {"type": "boolean"}},
        ("jobs", "scanned_events", "complete"),
    ),
    "DeadEntry": obj(
        {"id": STR, "job": STR, "task": STR, "reason": STR, "dead_at": _NUM},
        ("id", "job", "task", "reason", "dead_at"),
    ),
    "DeadLetter": obj({"entries": arr(ref("DeadEntry")), "total": INT}, ("entries", "total")),
    "ReprocessRequest": {
        "oneOf": [
            obj(
                {"ids": arr({"type": "string", "minLength": 1, "maxLength": 200}, minItems=1, maxItems=1000)}, ("ids",)
            ),
            obj({"max": {"type": "integer", "minimum": 1, "maximum": 1000}}, ("max",)),
        ]
    },
    "ReprocessResult": obj(
        {"requeued": arr(STR), "skipped": arr(obj({"id": STR, "reason": STR}, ("id", "reason")))},
        ("requeued", "skipped"),
    ),
    "ScaleRequest": {
        "oneOf": [
            obj(
                {
                    "concurrency": {"type": "integer", "minimum": 1},
                    "ttl": {**_SECONDS, "exclusiveMinimum": True, "nullable": True},
                },
                ("concurrency",),
            ),
            obj({"release": {"type": "boolean", "enum": [True]}}, ("release",)),
        ]
    },
    "ScaleResult": obj(
        {
            "worker": STR,
            "concurrency": INT,
            "min_concurrency": INT,
            "max_concurrency": INT,
            "override": {"type": "integer", "nullable": True},
        },
        ("worker", "concurrency", "min_concurrency", "max_concurrency", "override"),
    ),
    "Status": {
        "type": "object",
        "description": "depths per priority, rates, live workers, the latest scaling decisions and counters",
        "required": ["queue", "depths", "scheduled", "active", "dead_letter", "workers", "scaling", "counters"],
        "properties": {
            "queue": STR,
            "time": _NUM,
            "depths": {"type": "object", "additionalProperties": INT},
            "queued": INT,
            "scheduled": INT,
            "due": INT,
            "active": INT,
            "dead_letter": INT,
            "oldest_wait": _NUM,
            "throughput": _NUM,
            "arrival_rate": _NUM,
            "error_rate": _NUM,
            "rate_window": _NUM,
            "loop_lag": _NUM,
            "attached_worker": _STR_NULL,
            "workers": arr({"type": "object"}),
            "scaling": arr({"type": "object"}),
            "counters": {"type": "object", "additionalProperties": INT},
            "tasks": {"type": "object", "additionalProperties": {"type": "object", "additionalProperties": INT}},
        },
    },
    "Health": obj({"status": STR}, ("status",)),
}


def schemas_for(config: WebConfig) -> dict[str, Any]:
    """The schemas, narrowed to what this app accepts: its registered task names, its worker's bounds."""
    schemas = SCHEMAS | {"Empty": obj({})}
    names = sorted(config.tasks.names)
    if names:
        enqueue = schemas["EnqueueRequest"]
        schemas["EnqueueRequest"] = enqueue | {"properties": enqueue["properties"] | {"task": STR | {"enum": names}}}
    worker = config.worker
    if worker is not None:
        fixed, release = schemas["ScaleRequest"]["oneOf"]
        bounds = {"type": "integer", "minimum": worker.min_concurrency, "maximum": worker.max_concurrency}
        fixed = fixed | {"properties": fixed["properties"] | {"concurrency": bounds}}
        schemas["ScaleRequest"] = {"oneOf": [fixed, release]}
    return schemas
