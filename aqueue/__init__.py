"""aqueue: an asyncio-native job queue on Redis Streams.

Producers ``await task.enqueue(...)``; a :class:`Worker` claims jobs through a consumer group in batches, runs
them on coroutines and settles them atomically (ack, retry with backoff, dead-letter) with one Lua call per batch.
"""

from aqueue.backend.broker import QueueInfo
from aqueue.context import JobContext, current_job, progress
from aqueue.cron import CronSchedule
from aqueue.errors import (
    AqueueError,
    BrokerUnavailable,
    ConfigurationError,
    InvalidArguments,
    JobCancelled,
    JobFailed,
    PartialEnqueue,
    PermissionDenied,
    Reject,
    ResultTimeout,
    Retry,
    SerializationError,
    UnknownJob,
)
from aqueue.events import EVENT_TYPES
from aqueue.job import Job, JobOptions, JobRecord, JobSpec, JobStatus
from aqueue.ratelimit import RateLimit
from aqueue.scaling import Decision, MetricsSnapshot, Strategy
from aqueue.settings import Priority, QueueSettings, RetryPolicy
from aqueue.tasks import CronJob, Task, Tasks
from aqueue.worker import Worker
from aqueue.workflow import Chain, Step, Workflow, WorkflowHandle, workflow

__all__ = [
    "EVENT_TYPES",
    "AqueueError",
    "BrokerUnavailable",
    "Chain",
    "ConfigurationError",
    "CronJob",
    "CronSchedule",
    "Decision",
    "InvalidArguments",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobOptions",
    "JobRecord",
    "JobSpec",
    "JobStatus",
    "MetricsSnapshot",
    "PartialEnqueue",
    "PermissionDenied",
    "Priority",
    "QueueInfo",
    "QueueSettings",
    "RateLimit",
    "Reject",
    "ResultTimeout",
    "Retry",
    "RetryPolicy",
    "SerializationError",
    "Step",
    "Strategy",
    "Task",
    "Tasks",
    "UnknownJob",
    "Worker",
    "Workflow",
    "WorkflowHandle",
    "current_job",
    "progress",
    "workflow",
]

__version__ = "0.1.0"
