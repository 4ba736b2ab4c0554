"""Middleware around every job: a correlation id on every log line a job writes, and a Sentry-style error reporter.

The correlation id travels with the job as a header: a ``before_enqueue`` hook copies the producer's current id
(a context variable a web framework's middleware would set per request) into the headers of every job enqueued
while it is set, and the worker's middleware sets it again around the job, falling back to the job id.

``python examples/middleware.py`` runs it in one process on ``memory://``: three jobs, two enqueued while handling
a "request" (so they share its correlation id), one of which fails, with the log lines and the error reports
printed. Under ``aqueue worker examples.middleware:tasks`` the same middleware wraps
every job the worker runs. With Sentry itself, ``report_errors`` would call ``sentry_sdk.capture_exception(exc)``
inside ``sentry_sdk.new_scope()`` with the job's fields as tags.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass, field

import aqueue

tasks = aqueue.Tasks("examples-middleware")
log = logging.getLogger("examples.middleware")

#: The id every log line carries: in a producer, the request's; in a job, the one in its headers, else the job id.
correlation_id: ContextVar[str] = ContextVar("correlation_id", default="-")


@tasks.before_enqueue
def propagate_correlation_id(headers: dict[str, str]) -> None:
    """Producer side: every job enqueued while a correlation id is set carries it (unless it was given its own)."""
    if (cid := correlation_id.get()) != "-":
        headers.setdefault("correlation_id", cid)


class CorrelationFilter(logging.Filter):
    """Adds ``record.correlation_id`` so a handler's format can show it: ``%(correlation_id)s %(message)s``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = correlation_id.get()
        return True


@dataclass
class ErrorReporter:
    """Stands in for an error tracker such as Sentry: keeps what it was sent."""

    reports: list[dict[str, object]] = field(default_factory=list)

    def capture(self, exc: BaseException, job: aqueue.JobContext) -> None:
        self.reports.append(
            {"error": f"{type(exc).__name__}: {exc}", "job": job.job_id, "task": job.task, "attempt": job.attempt,
             "queue": job.tasks.queue, "correlation_id": correlation_id.get()}
        )  # fmt: skip


reporter = ErrorReporter()


# Registered first, so outermost: every line logged by the job and by the middleware inside carries the id.
@tasks.middleware
async def correlate(job: aqueue.JobContext) -> AsyncIterator[None]:
    """Set the correlation id (the producer's, from the job's headers, else the job id) for the job's duration and
    log its start and end."""
    token = correlation_id.set(job.headers.get("correlation_id", job.job_id))
    started = time.perf_counter()
    log.info("%s attempt %d started", job.task, job.attempt)
    try:
        yield
        log.info("%s succeeded in %.1f ms: %r", job.task, (time.perf_counter() - started) * 1000, job.result)
    except Exception as exc:
        log.info("%s failed in %.1f ms: %s", job.task, (time.perf_counter() - started) * 1000, exc)
        raise
    finally:
        correlation_id.reset(token)


@tasks.middleware
async def report_errors(job: aqueue.JobContext) -> AsyncIterator[None]:
    """Send every unexpected exception of a job to the error tracker, then let it fail the attempt as usual."""
    try:
        yield
    except aqueue.TaskSignal:
        raise  # Retry/Reject: the task's own decision, not a bug to report
    except Exception as exc:
        reporter.capture(exc, job)
        raise


@tasks.task(name="middleware.charge")
async def charge(order: str, cents: int) -> str:
    log.info("charging %d cents for %s", cents, order)  # carries the correlation id: no need to pass it around
    return f"{order}: charged {cents}"


@tasks.task(name="middleware.ship", max_attempts=1)
def ship(order: str) -> str:
    log.info("shipping %s", order)  # a plain function in a thread: the id is there too
    if order == "o-2":
        raise LookupError(f"no address for {order}")
    return f"{order}: shipped"


async def handle_order(order: str) -> list[aqueue.Job[str]]:
    """Stands for a web request handler: its framework would set the correlation id (from an ``X-Request-ID``)."""
    correlation_id.set(f"req-{order}")
    log.info("order %s accepted", order)
    return [await charge.enqueue(order, 1250), await ship.enqueue(order)]


async def main() -> tuple[list[str], list[dict[str, object]]]:
    """Run three jobs (two from one request; one fails) through the middleware; print and return the log lines
    (the request's first) and the error reports."""
    if "AQUEUE_REDIS_URL" not in os.environ:
        tasks.configure(redis_url="memory://examples-middleware")  # no Redis needed for the demo
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.addFilter(CorrelationFilter())
    handler.setFormatter(logging.Formatter("[%(correlation_id)s] %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        async with tasks:
            # The request runs in a task of its own (as a web server runs each), so its id stays there.
            jobs = [*await asyncio.create_task(handle_order("o-1")), await ship.enqueue("o-2")]
            await aqueue.Worker(tasks, concurrency=1).run(burst=True)
            for job in jobs:
                print(f"{job.id}: {(await job.record()).status}")
    finally:
        log.removeHandler(handler)
    for line in lines:
        print(line)
    for report in reporter.reports:
        print(f"reported: {report}")
    return lines, reporter.reports


if __name__ == "__main__":
    asyncio.run(main())
