"""The OpenAPI component schemas of the web API's requests and replies (data only; see ``openapi``)."""

from __future__ import annotations

from typing import Any

from aqueue._core.record import JobStatus
from aqueue._core.tasks import FINISHED_STATUSES
from aqueue.web.state import WebConfig

__all__ = ["INT", "SCHEMAS", "STR", "arr", "obj", "ref", "schemas_for"]

_NUM = {"type": "number"}
INT = {"type": "integer"}
STR = {"type": "string"}
_SECONDS_NULL = {"type": "number", "nullable": True}
_STR_NULL = {"type": "string", "nullable": True}
_HEADERS = {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 32}


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
    "progress": {"type": "number", "nullable": True, "description": "percent (0-100) the task last reported"},
}
_SECONDS = {"type": "number", "minimum": 0, "maximum": 315360000}
_STATUS_REQUIRED = ["queue", "depths", "scheduled", "active", "dead_letter", "workers", "scaling", "counters"]
_STATUS_REQUIRED += ["paused", "cron"]
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
            "retry_delay": {**_SECONDS, "nullable": True, "description": "a constant delay before every retry"},
            "keep_result": {
                "nullable": True,
                "oneOf": [_SECONDS, {"type": "string", "enum": ["forever"]}],
                "description": "seconds a succeeded record is kept (0: deleted at once), or forever",
            },
            "at": {
                "type": "string",
                "format": "date-time",
                "nullable": True,
                "description": "when the job is due (ISO 8601 with its offset), instead of delay",
            },
            "job_id": {
                "type": "string",
                "minLength": 1,
                "maxLength": 128,
                "nullable": True,
                "description": "an id of the caller's: if a job has it, that job is returned (duplicate: true)",
            },
            "group": {
                "type": "string",
                "minLength": 1,
                "maxLength": 128,
                "nullable": True,
                "description": "the job's group: groups take turns (docs/queues.md)",
            },
        }
    ),
    "EnqueueRequest": obj(
        {
            "task": {"type": "string", "minLength": 1, "description": "a registered task name"},
            "args": arr({}, description="positional arguments (JSON values)"),
            "kwargs": {"type": "object", "additionalProperties": True, "description": "keyword arguments"},
            "options": ref("JobOptions"),
            "headers": {
                **_HEADERS,
                "nullable": True,
                "description": "job headers (names of 1 to 128 characters; at most 32 headers and 8 KiB as JSON)",
            },
        },
        ("task",),
    ),
    "JobId": obj(
        {"id": STR, "duplicate": {"type": "boolean", "description": "an existing job: nothing was created"}},
        ("id", "duplicate"),
    ),
    "Requeued": obj({"id": STR, "status": {"type": "string", "enum": ["queued"]}}, ("id", "status")),
    "JobSummary": obj(_JOB_SUMMARY, tuple(_JOB_SUMMARY)),
    "Job": obj(
        _JOB_SUMMARY
        | {
            "args": arr({}),
            "kwargs": {"type": "object", "additionalProperties": True},
            "max_attempts": {"type": "integer", "nullable": True},
            "due_at": _SECONDS_NULL,
            "expires_at": {**_SECONDS_NULL, "description": "not started by then, the job expires (its ttl)"},
            "result": {"description": "the task's return value"},
            "traceback": _STR_NULL,
            "progress_message": _STR_NULL,
            "workflow": {**_STR_NULL, "description": "id of the workflow this job is a step of"},
            "step": {**_STR_NULL, "description": "its step name in that workflow"},
            "dedup_key": _STR_NULL,
            "cancel_requested": {"type": "boolean", "description": "cancellation asked while it runs"},
            "headers": {**_HEADERS, "description": "the job's headers (empty when none)"},
            "queue": {**STR, "description": "the queue holding it (unprefixed GET of an app serving several queues)"},
            "options": obj(
                {
                    "max_attempts": {"type": "integer", "nullable": True},
                    "timeout": _SECONDS_NULL,
                    "backoff_base": _SECONDS_NULL,
                    "backoff_max": _SECONDS_NULL,
                    "retry_delay": {**_SECONDS_NULL, "description": "the constant delay before every retry"},
                    "keep_result": {
                        "nullable": True,
                        "oneOf": [{"type": "number"}, {"type": "string", "enum": ["forever"]}],
                        "description": "seconds a succeeded record is kept; null: the queue's succeeded_ttl",
                    },
                    "rerun_lost": {"type": "boolean"},
                    "chosen_id": {"type": "boolean", "description": "the id was the caller's job_id"},
                },
                (
                    "max_attempts",
                    "timeout",
                    "backoff_base",
                    "backoff_max",
                    "retry_delay",
                    "keep_result",
                    "rerun_lost",
                    "chosen_id",
                ),
            ),
            "logs": arr(
                obj(
                    {
                        "timestamp": {**_NUM, "description": "Unix seconds (the worker's clock)"},
                        "level": STR,
                        "message": STR,
                    },
                    ("timestamp", "level", "message"),
                ),
                description="what the job logged, every attempt's, oldest first (the last 100 lines, 64 KiB)",
            ),
            "logs_dropped": {**INT, "description": "earlier lines of logs dropped by those caps"},
        },
        tuple(_JOB_SUMMARY),
    ),
    "JobList": obj(
        {"jobs": arr(ref("JobSummary")), "scanned_events": INT, "complete": {"type": "boolean"}},
        ("jobs", "scanned_events", "complete"),
    ),
    "CancelRequest": obj({"reason": {"type": "string", "minLength": 1, "maxLength": 500, "nullable": True}}),
    "Cancelled": obj({"id": STR, "status": {"type": "string", "enum": ["cancelled", "cancelling"]}}, ("id", "status")),
    "PauseRequest": obj(
        {"by": {"type": "string", "minLength": 1, "maxLength": 500, "nullable": True, "description": "who pauses"}}
    ),
    "PauseState": obj(
        {
            "paused": {"type": "boolean"},
            "changed": {"type": "boolean", "description": "false if the queue already was in that state"},
            "at": {**_SECONDS_NULL, "description": "when the pause in force began (Unix seconds)"},
            "by": _STR_NULL,
        },
        ("paused", "changed", "at", "by"),
    ),
    "CleanupRequest": obj(
        {
            "older_than": {**_SECONDS, "nullable": True, "description": "seconds since the job finished (default 0)"},
            "statuses": arr(
                {"type": "string", "enum": list(FINISHED_STATUSES)},
                minItems=1,
                nullable=True,
                description="finished statuses to delete (default: all of them)",
            ),
        }
    ),
    "CleanupResult": obj(
        {"deleted": INT, "older_than": _NUM, "statuses": arr(STR)}, ("deleted", "older_than", "statuses")
    ),
    "WorkflowStep": obj(
        {
            "name": STR,
            "job": STR,
            "task": _STR_NULL,
            "status": {"type": "string", "enum": [s.value for s in JobStatus], "nullable": True},
            "attempts": INT,
            "started_at": _SECONDS_NULL,
            "finished_at": _SECONDS_NULL,
            "progress": {"type": "number", "nullable": True, "description": "percent (0-100)"},
            "progress_message": _STR_NULL,
            "error": _STR_NULL,
            "after": arr(STR, description="steps that must succeed before this one runs"),
            "on_failure_of": arr(STR, description="steps whose failure this one handles"),
        },
        ("name", "job", "status"),
    ),
    "Workflow": obj(
        {
            "id": STR,
            "name": STR,
            "created_at": _SECONDS_NULL,
            "finished_at": _SECONDS_NULL,
            "finished": {"type": "boolean"},
            "left": {"type": "integer", "nullable": True, "description": "steps not finished yet"},
            "counts": {"type": "object", "additionalProperties": INT, "description": "steps per status"},
            "steps": arr(ref("WorkflowStep")),
        },
        ("id", "name", "finished", "steps"),
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
        "description": "depths per priority, rates, live workers, the latest scaling decisions, counters, the pause "
        "and the cron jobs",
        "required": [*_STATUS_REQUIRED],
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
            "paused": {
                **obj({"at": _SECONDS_NULL, "by": _STR_NULL}),
                "nullable": True,
                "description": "null, or since when (Unix seconds) and by whom the queue is paused",
            },
            "workers": arr({"type": "object"}),
            "scaling": arr({"type": "object"}),
            "counters": {"type": "object", "additionalProperties": INT},
            "tasks": {"type": "object", "additionalProperties": {"type": "object", "additionalProperties": INT}},
            "cron": arr(ref("CronJob")),
            "limits": arr(ref("Limit"), description="concurrency limits in use: tasks' and groups'"),
            "groups": {**INT, "description": "groups with jobs waiting for their turn"},
            "grouped": {**INT, "description": "jobs waiting in a group for its turn"},
            "queues": {
                "type": "object",
                "additionalProperties": {"type": "object"},
                "description": "unprefixed /status of an app serving several queues: every queue's summary by name",
            },
        },
    },
    "Limit": obj(
        {
            "kind": {"type": "string", "enum": ["task", "group"]},
            "name": STR,
            "running": INT,
            "limit": {"type": "integer", "nullable": True, "description": "null: a group with no limit"},
            "waiting": INT,
        },
        ("kind", "name", "running", "limit", "waiting"),
    ),
    "CronJob": obj(
        {
            "name": STR,
            "task": STR,
            "schedule": STR,
            "next_run": {**_SECONDS_NULL, "description": "the next tick a worker recorded (Unix seconds)"},
            "last_run": {**_SECONDS_NULL, "description": "the latest tick that enqueued a job"},
            "last_job": _STR_NULL,
            "registered": {"type": "boolean", "description": "registered on this app's Tasks (else only recorded)"},
        },
        ("name", "task", "schedule", "next_run", "last_run", "last_job"),
    ),
    "Health": obj(
        {
            "status": STR,
            "redis_circuit": {"type": "string", "enum": ["closed", "open"], "description": "the Redis circuit breaker"},
        },
        ("status",),
    ),
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
