"""One trace from an HTTP request through the job it enqueues, with OpenTelemetry (``pip install 'aqueue[otel]'``).

``aqueue.otel.instrument(tasks)`` adds a ``send {queue}`` producer span where a job is enqueued (a child of the
request's span) and a ``process {queue}`` consumer span around each attempt in the worker, linked by the
``traceparent`` header the job carries; the spans the task makes are children of the consumer span.

``python examples/otel_tracing.py`` runs it in one process on ``memory://``: an aiohttp app whose ``POST /orders``
enqueues a charge, one request to it, a worker that runs the job, then the trace printed as a tree. The spans go to
an in-memory exporter so the demo can print them; a real application would set the global provider once at start-up
(``trace.set_tracer_provider(provider)``, with a ``BatchSpanProcessor(OTLPSpanExporter())``), call
``instrument(tasks)`` without a provider, and let ``opentelemetry-instrumentation-aiohttp-server`` make the server
spans that :func:`server_spans` makes here. Under ``aqueue worker examples.otel_tracing:tasks`` the worker's spans
are made the same way: ``instrument`` runs where the registry is defined.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence

import aiohttp
from aiohttp import web
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import aqueue
from aqueue.otel import instrument

tasks = aqueue.Tasks("examples-otel")
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
instrument(tasks, tracer_provider=provider)  # its span is the outermost, around any other middleware
tracer = provider.get_tracer("examples.otel_tracing")


@tasks.task(name="otel.charge")
async def charge(order: str, cents: int) -> str:
    """Charge an order: its span is a child of the job's ``process`` span, in the request's trace."""
    with tracer.start_as_current_span("charge card", attributes={"order": order, "cents": cents}):
        await asyncio.sleep(0.001)  # the payment provider's API
    return f"{order}: charged {cents}"


@web.middleware
async def server_spans(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A server span per request, continuing the caller's trace (its ``traceparent``) if it sent one."""
    parent = propagate.extract(request.headers)
    name = f"{request.method} {request.path}"
    with tracer.start_as_current_span(name, context=parent, kind=trace.SpanKind.SERVER):
        return await handler(request)


async def create_order(request: web.Request) -> web.Response:
    """``POST /orders``: enqueue the charge (inside the request's span) and answer 202 with the job's id."""
    body = await request.json()
    job = await charge.enqueue(body["order"], body["cents"])
    return web.json_response({"job": job.id}, status=202)


def print_trace(spans: Sequence[ReadableSpan]) -> None:
    """Print each trace as a tree: every span under its parent, with its kind."""
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        children.setdefault(span.parent.span_id if span.parent else None, []).append(span)

    def show(span: ReadableSpan, depth: int) -> None:
        attempt = span.attributes.get("aqueue.attempt") if span.attributes else None
        more = f", attempt {attempt}" if attempt is not None else ""
        print(f"{'  ' * depth}{span.name} ({span.kind.name.lower()}{more})")
        for child in children.get(span.context.span_id if span.context else None, []):
            show(child, depth + 1)

    for root in children.get(None, []):
        print(f"trace {trace.format_trace_id(root.context.trace_id) if root.context else '?'}")
        show(root, 1)


async def main() -> list[ReadableSpan]:
    """Serve the app, POST one order, run its job with a worker, print and return the finished spans."""
    if "AQUEUE_REDIS_URL" not in os.environ:
        tasks.configure(redis_url="memory://examples-otel")  # no Redis needed for the demo
    exporter.clear()
    app = web.Application(middlewares=[server_spans])
    app.router.add_post("/orders", create_order)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        async with tasks, aiohttp.ClientSession() as http:
            async with http.post(f"http://{host}:{port}/orders", json={"order": "o-1", "cents": 1250}) as resp:
                job_id = (await resp.json())["job"]
            await aqueue.Worker(tasks, concurrency=1).run(burst=True)
            print(await tasks.job(job_id).result(timeout=5))
    finally:
        await runner.cleanup()
    spans = list(exporter.get_finished_spans())
    print_trace(spans)
    return spans


if __name__ == "__main__":
    asyncio.run(main())
