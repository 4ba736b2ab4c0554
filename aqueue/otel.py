"""OpenTelemetry tracing for aqueue: one call, :func:`instrument`, puts every job of a registry in its producer's
trace. Needs the optional extra: ``pip install 'aqueue[otel]'`` (the OpenTelemetry API only; the application picks
and configures the SDK and its exporters).

Built on the registry's two public seams, nothing else:

- **producer**: a ``@tasks.before_enqueue`` hook makes a ``PRODUCER`` span ``send {queue}`` (a child of the span
  current at the caller, e.g. a web request's) and writes its context into the job's headers with the global
  propagator (``traceparent``, and ``tracestate`` when there is one, for the default W3C propagator);
- **consumer**: a ``@tasks.middleware`` makes a ``CONSUMER`` span ``process {queue}`` per attempt, a child of the
  context carried in the job's headers, and makes it current while the job runs, so that the spans the task and
  every other middleware create are its children (it is put first: the outermost, whenever it is registered).

The attributes follow OpenTelemetry's messaging conventions (``messaging.system`` ``"aqueue"``,
``messaging.destination.name`` the queue, ``messaging.operation.type``/``.name`` ``send`` or ``process``), plus
``messaging.message.id`` (the job id), ``aqueue.task`` and ``aqueue.attempt`` on the consumer span.

Limits: the producer span is made when the job's spec is (the hook runs then), before the job has an id, so it has
no ``messaging.message.id``, and it ends before the write to Redis: it times nothing, and a failed write still shows
one. A retry, a job taken back after its worker died and a reprocessed dead job reuse the headers written at the
enqueue: each of their attempts is a new consumer span under the same producer span. A task run with
``executor="process"`` runs in a child process that has no current span: spans made there start a trace of their
own. Nothing else of aqueue imports this module, and ``import aqueue`` never imports OpenTelemetry.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without the package
    raise ImportError("aqueue.otel needs the OpenTelemetry API: pip install 'aqueue[otel]'") from exc

from aqueue._core.context import JobContext
from aqueue._core.tasks import Tasks
from aqueue._version import __version__

__all__ = ["instrument"]

SYSTEM = "aqueue"  #: ``messaging.system`` of every span

_instrumented: weakref.WeakSet[Tasks] = weakref.WeakSet()  # what instrument() was called on: once per registry


def instrument(tasks: Tasks, tracer_provider: trace.TracerProvider | None = None) -> None:
    """Trace every job of ``tasks``: a ``send {queue}`` producer span where a job is made, a ``process {queue}``
    consumer span around each of its attempts in the worker, linked by the trace context in the job's headers.

    Call it once per registry, where the registry is defined (so that both the producer and the worker processes
    run it). Its middleware goes first, before those registered earlier: the consumer span is the outermost, and
    the work of every other middleware falls inside it. ``tracer_provider`` defaults to the global one
    (``opentelemetry.trace.set_tracer_provider``); the trace context is written and read with the global propagator
    (W3C ``traceparent`` by default). A second call on the same registry does nothing, whatever its
    ``tracer_provider``.

    The producer span is a child of the span current where the job is made. With no span current, a trace context
    the job's headers already hold (``with_options(headers={"traceparent": ...})``) is its parent instead; with a
    span current, that context is replaced by the current one. The consumer span records the exception raised at its
    ``yield`` (the task's, a ``TimeoutError``, ``Retry`` and ``Reject`` too) and sets the status ERROR, then lets it
    go through unchanged; a cancellation sets ERROR ``cancelled``. It never swallows anything.
    """
    if tasks in _instrumented:
        return
    _instrumented.add(tasks)
    tracer = trace.get_tracer("aqueue", __version__, tracer_provider=tracer_provider)

    def send(headers: dict[str, str]) -> None:
        """``@tasks.before_enqueue``: the producer span, and its context into the job's headers."""
        base = otel_context.get_current()
        if not trace.get_current_span(base).get_span_context().is_valid:
            base = propagate.extract(headers, context=base)  # no span here: join the trace the headers name, if any
        queue = tasks.queue  # read now: configure(queue=...) may rename it after instrument()
        attributes = {
            "messaging.system": SYSTEM,
            "messaging.destination.name": queue,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
        }
        span = tracer.start_span(f"send {queue}", context=base, kind=trace.SpanKind.PRODUCER, attributes=attributes)
        try:
            if span.get_span_context().is_valid:
                headers.pop("tracestate", None)  # belongs to the context being replaced; inject writes the span's
            propagate.inject(headers, context=trace.set_span_in_context(span, base))
        finally:
            span.end()

    async def process(job: JobContext) -> AsyncIterator[None]:
        """``@tasks.middleware``: the consumer span of one attempt, current while the job runs."""
        queue = job.tasks.queue
        parent = propagate.extract(job.headers)  # from an empty context: no trace in the headers, a new trace
        attributes: dict[str, str | int] = {
            "messaging.system": SYSTEM,
            "messaging.destination.name": queue,
            "messaging.message.id": job.job_id,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "aqueue.task": job.task,
            "aqueue.attempt": job.attempt,
        }
        with tracer.start_as_current_span(
            f"process {queue}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
            record_exception=False,  # done below, where CancelledError is told apart
            set_status_on_exception=False,
        ) as span:
            try:
                yield
            except asyncio.CancelledError:
                span.set_status(trace.StatusCode.ERROR, "cancelled")
                raise
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
                raise

    tasks.before_enqueue(send)
    tasks.middleware(process)
    *others, ours = tasks._middlewares
    tasks._middlewares = (ours, *others)  # the outermost, whatever was registered before
