"""aqueue: an asyncio-native job queue on Redis Streams.

Producers ``await task.enqueue(...)``; a :class:`Worker` claims jobs through a consumer group in batches, runs
them on coroutines and settles them atomically (ack, retry with backoff, dead-letter) with one Lua call per batch.
"""

from aqueue._core.admin import DeadLetter, DeadLetterPage, RequeueResult
from aqueue._core.context import JobContext, current_job, progress, resources
from aqueue._core.cron import CronSchedule, CronStatus
from aqueue._core.errors import (
    AqueueError,
    BrokerUnavailable,
    ConfigurationError,
    InvalidArguments,
    JobCancelled,
    JobFailed,
    LifespanError,
    NoResult,
    PermissionDenied,
    Reject,
    ResultTimeout,
    Retry,
    SerializationError,
    TaskSignal,
    UnknownJob,
)
from aqueue._core.events import EVENT_TYPES
from aqueue._core.info import LimitUsage, QueueInfo
from aqueue._core.job import Job, WorkflowHandle
from aqueue._core.listing import JobPage, JobSummary
from aqueue._core.options import KEEP_FOREVER, JobOptions, StoredOptions
from aqueue._core.producer import PartialEnqueue
from aqueue._core.ratelimit import RateLimit
from aqueue._core.record import JobRecord, JobStatus, LogLine
from aqueue._core.settings import Priority, QueueSettings, RetryPolicy
from aqueue._core.specs import Chain, JobSpec, Step, Workflow
from aqueue._core.task import CronJob, Task
from aqueue._core.tasks import Tasks
from aqueue._version import __version__ as __version__
from aqueue._worker.worker import Worker
from aqueue.autoscale.scaling import Decision, MetricsSnapshot, Strategy

__all__ = [
    "EVENT_TYPES",
    "KEEP_FOREVER",
    "AqueueError",
    "BrokerUnavailable",
    "Chain",
    "ConfigurationError",
    "CronJob",
    "CronSchedule",
    "CronStatus",
    "DeadLetter",
    "DeadLetterPage",
    "Decision",
    "InvalidArguments",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobOptions",
    "JobPage",
    "JobRecord",
    "JobSpec",
    "JobStatus",
    "JobSummary",
    "LifespanError",
    "LimitUsage",
    "LogLine",
    "MetricsSnapshot",
    "NoResult",
    "PartialEnqueue",
    "PermissionDenied",
    "Priority",
    "QueueInfo",
    "QueueSettings",
    "RateLimit",
    "Reject",
    "RequeueResult",
    "ResultTimeout",
    "Retry",
    "RetryPolicy",
    "SerializationError",
    "Step",
    "StoredOptions",
    "Strategy",
    "Task",
    "TaskSignal",
    "Tasks",
    "UnknownJob",
    "Worker",
    "Workflow",
    "WorkflowHandle",
    "current_job",
    "progress",
    "resources",
]
