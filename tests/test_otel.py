"""OpenTelemetry tracing (``aqueue.otel.instrument``): the producer span where a job is made, the consumer span of
each attempt as its child (through the job's ``traceparent`` header), the task's spans under it, errors and
cancellation on the consumer span, a producer in another process, idempotence, the example, and ``import aqueue``
without OpenTelemetry. Spans go to an in-memory exporter of a provider of the test's own (never the global one).

``python -m tests.test_otel produce URL QUEUE`` is the producer process of the cross-process test."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import aqueue
from aqueue.otel import instrument
from tests.helpers import REDIS_URL, MakeTasks, StartWorker, load_example, wait_until

ROOT = Path(__file__).resolve().parents[1]
on_memory = pytest.mark.parametrize("backend", ["memory"], indirect=True)
on_redis = pytest.mark.parametrize("backend", ["redis"], indirect=True)


def traced(tasks: aqueue.Tasks) -> tuple[TracerProvider, InMemorySpanExporter]:
    """Instrument ``tasks`` with a provider of its own, exporting to memory as each span ends."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument(tasks, tracer_provider=provider)
    return provider, exporter


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def ids(span: ReadableSpan) -> tuple[int, int, int | None]:
    """(trace id, span id, parent span id)."""
    assert span.context is not None
    return span.context.trace_id, span.context.span_id, span.parent.span_id if span.parent else None


def traceparent(span: ReadableSpan) -> str:
    """The W3C ``traceparent`` of ``span``."""
    assert span.context is not None
    trace_id, span_id, flags = span.context.trace_id, span.context.span_id, span.context.trace_flags
    return f"00-{trace.format_trace_id(trace_id)}-{trace.format_span_id(span_id)}-{flags:02x}"


async def finished_spans(exporter: InMemorySpanExporter, count: int) -> list[ReadableSpan]:
    """The exporter's spans once there are ``count`` (a consumer span ends as its attempt settles)."""
    await wait_until(lambda: len(exporter.get_finished_spans()) >= count, 10)
    spans = list(exporter.get_finished_spans())
    assert len(spans) == count, [s.name for s in spans]
    return spans


# -- one process, on memory:// and the real Redis -----------------------------------------------------------------


async def test_the_job_and_its_spans_join_the_trace_it_was_enqueued_in(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()
    provider, exporter = traced(tasks)
    tracer = provider.get_tracer("test")

    @tasks.task(name="otel.double")
    async def double(x: int) -> int:
        with tracer.start_as_current_span("inside the task"):
            return x * 2

    with tracer.start_as_current_span("request", kind=SpanKind.SERVER) as request:
        job = await double.enqueue(21)
    await start_worker(tasks)
    assert await job.result(timeout=5) == 42
    spans = await finished_spans(exporter, 4)
    (outer,), (send,), (process,), (inside,) = (named(spans, n) for n in
        ("request", f"send {tasks.queue}", f"process {tasks.queue}", "inside the task"))  # fmt: skip
    trace_id = request.get_span_context().trace_id
    assert ids(outer) == (trace_id, request.get_span_context().span_id, None)
    assert ids(send)[::2] == (trace_id, ids(outer)[1])  # the producer span: a child of the request's
    assert ids(process)[::2] == (trace_id, ids(send)[1])  # the consumer span: a child of the producer span
    assert ids(inside)[::2] == (trace_id, ids(process)[1])  # the task's span: a child of the consumer span
    assert (send.kind, process.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER)
    assert dict(send.attributes or {}) == {
        "messaging.system": "aqueue", "messaging.destination.name": tasks.queue,
        "messaging.operation.type": "send", "messaging.operation.name": "send",
    }  # fmt: skip
    assert dict(process.attributes or {}) == {
        "messaging.system": "aqueue", "messaging.destination.name": tasks.queue, "messaging.message.id": job.id,
        "messaging.operation.type": "process", "messaging.operation.name": "process",
        "aqueue.task": "otel.double", "aqueue.attempt": 1,
    }  # fmt: skip
    assert process.status.status_code is StatusCode.UNSET and not process.events
    assert (await job.record()).headers == {"traceparent": traceparent(send)}  # what carried it


@on_memory
async def test_the_consumer_span_is_outermost_even_around_middleware_registered_before(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()
    tracer_of: list[trace.Tracer] = []

    @tasks.middleware
    async def timing(job: aqueue.JobContext) -> AsyncIterator[None]:
        with tracer_of[0].start_as_current_span("timing middleware"):
            yield

    provider, exporter = traced(tasks)  # after the middleware above
    tracer_of.append(provider.get_tracer("test"))

    @tasks.task(name="otel.noop")
    async def noop() -> None: ...

    job = await noop.enqueue()
    await start_worker(tasks)
    await job.result(timeout=5)
    spans = await finished_spans(exporter, 3)
    (process,), (timing_span,) = named(spans, f"process {tasks.queue}"), named(spans, "timing middleware")
    assert ids(timing_span)[2] == ids(process)[1]


async def test_each_attempt_of_a_failing_job_is_an_error_span_under_the_one_producer_span(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()
    provider, exporter = traced(tasks)

    @tasks.task(name="otel.boom", max_attempts=2, backoff_base=0, backoff_max=0)
    async def boom() -> None:
        raise ValueError("no stock")

    with provider.get_tracer("test").start_as_current_span("request"):
        job = await boom.enqueue()
    await start_worker(tasks)
    with pytest.raises(aqueue.JobFailed):
        await job.result(timeout=10)
    spans = await finished_spans(exporter, 4)
    (send,) = named(spans, f"send {tasks.queue}")
    attempts = sorted(named(spans, f"process {tasks.queue}"), key=lambda s: s.start_time or 0)
    assert [(s.attributes or {}).get("aqueue.attempt") for s in attempts] == [1, 2]
    for span in attempts:
        assert ids(span)[::2] == (ids(send)[0], ids(send)[1])
        assert (span.status.status_code, span.status.description) == (StatusCode.ERROR, "ValueError: no stock")
        (event,) = span.events
        assert event.name == "exception"
        assert (event.attributes or {})["exception.type"] == "ValueError"
        assert (event.attributes or {})["exception.message"] == "no stock"


@on_memory
async def test_the_spans_of_a_plain_function_task_are_children_of_its_consumer_span(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()
    provider, exporter = traced(tasks)

    @tasks.task(name="otel.sync")
    def sync() -> None:  # runs in a thread, which gets the job's context
        with provider.get_tracer("test").start_as_current_span("in a thread"):
            pass

    job = await sync.enqueue()
    await aqueue.Worker(tasks).run(burst=True)
    await job.result(timeout=5)
    spans = await finished_spans(exporter, 3)
    (process,), (inside,) = named(spans, f"process {tasks.queue}"), named(spans, "in a thread")
    assert ids(inside)[::2] == (ids(process)[0], ids(process)[1])


@on_memory
async def test_retry_is_recorded_and_goes_through_unchanged(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()
    _, exporter = traced(tasks)

    @tasks.task(name="otel.later", max_attempts=2)
    async def later() -> str:
        if aqueue.current_job().attempt == 1:
            raise aqueue.Retry("not yet", after=0)
        return "done"

    job = await later.enqueue()
    await start_worker(tasks)
    assert await job.result(timeout=10) == "done"  # the Retry went through: a second attempt ran
    spans = await finished_spans(exporter, 3)
    first, second = sorted(named(spans, f"process {tasks.queue}"), key=lambda s: s.start_time or 0)
    assert first.status.status_code is StatusCode.ERROR and "not yet" in (first.status.description or "")
    assert [e.name for e in first.events] == ["exception"]
    assert second.status.status_code is StatusCode.UNSET and not second.events


@on_memory
async def test_a_cancelled_job_ends_its_span_as_cancelled(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()
    _, exporter = traced(tasks)
    started = asyncio.Event()

    @tasks.task(name="otel.nap")
    async def nap() -> None:
        started.set()
        await asyncio.sleep(30)

    await start_worker(tasks)
    job = await nap.enqueue()
    await asyncio.wait_for(started.wait(), 5)
    assert await job.cancel()
    spans = await finished_spans(exporter, 2)
    (process,) = named(spans, f"process {tasks.queue}")
    assert (process.status.status_code, process.status.description) == (StatusCode.ERROR, "cancelled")
    assert not process.events


# -- the producer's side: which context the job carries -----------------------------------------------------------


@on_memory
def test_with_no_span_current_a_traceparent_given_in_the_headers_is_the_parent(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()
    provider, exporter = traced(tasks)

    @tasks.task(name="otel.noop")
    async def noop() -> None: ...

    given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    spec = noop.with_options(headers={"traceparent": given, "tracestate": "vendor=1"}).spec()
    (send,) = exporter.get_finished_spans()
    assert ids(send)[::2] == (0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331)
    assert dict(spec.headers) == {"traceparent": traceparent(send), "tracestate": "vendor=1"}  # the same trace

    exporter.clear()
    with provider.get_tracer("test").start_as_current_span("request") as request:
        spec = noop.with_options(headers={"traceparent": given, "tracestate": "vendor=1"}).spec()
    (send,) = named(exporter.get_finished_spans(), f"send {tasks.queue}")
    assert ids(send)[::2] == (request.get_span_context().trace_id, request.get_span_context().span_id)
    assert dict(spec.headers) == {"traceparent": traceparent(send)}  # replaced: the current span wins

    exporter.clear()
    spec = noop.spec()  # nothing current, nothing given: a trace of its own
    (send,) = exporter.get_finished_spans()
    assert send.parent is None and dict(spec.headers) == {"traceparent": traceparent(send)}


@on_memory
async def test_instrumenting_twice_traces_each_job_once(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()
    provider, exporter = traced(tasks)
    instrument(tasks, tracer_provider=provider)
    instrument(tasks)

    @tasks.task(name="otel.noop")
    async def noop() -> str:
        return "ok"

    job = await noop.enqueue()
    await start_worker(tasks)
    assert await job.result(timeout=5) == "ok"
    spans = await finished_spans(exporter, 2)
    assert sorted(s.name for s in spans) == [f"process {tasks.queue}", f"send {tasks.queue}"]
    assert len(tasks._middlewares) == 1 and len(tasks._before_enqueue) == 1


# -- across processes, on the real Redis -------------------------------------------------------------------------


def produce(url: str, queue: str) -> None:
    """The producer process: enqueue one job inside a span, then print the job id and the spans as JSON."""

    async def run() -> None:
        tasks = aqueue.Tasks(queue, url)
        provider, exporter = traced(tasks)

        @tasks.task(name="otel.remote")
        async def remote() -> str:
            return "ran"  # run by the test's worker, not here

        with provider.get_tracer("producer").start_as_current_span("request"):
            job = await remote.enqueue()
        await tasks.close()
        spans = [dict(zip(("trace_id", "span_id", "parent_id"), ids(s), strict=True), name=s.name)
                 for s in exporter.get_finished_spans()]  # fmt: skip
        print(json.dumps({"job": job.id, "spans": spans}))

    asyncio.run(run())


@on_redis
async def test_a_producer_in_another_process_is_the_parent_of_the_consumer_span(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()
    _, exporter = traced(tasks)

    @tasks.task(name="otel.remote")
    async def remote() -> str:
        return "ran"

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AQUEUE_", "OTEL_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.test_otel", "produce", REDIS_URL, tasks.queue,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    produced = json.loads(out)
    (send,) = [s for s in produced["spans"] if s["name"] == f"send {tasks.queue}"]
    (request,) = [s for s in produced["spans"] if s["name"] == "request"]
    assert send["parent_id"] == request["span_id"]

    await start_worker(tasks)
    assert await tasks.job(produced["job"]).result(timeout=10) == "ran"
    (process,) = await finished_spans(exporter, 1)
    assert process.name == f"process {tasks.queue}"
    assert ids(process)[::2] == (send["trace_id"], send["span_id"])


# -- the example --------------------------------------------------------------------------------------------------


@on_memory
async def test_the_example_traces_the_request_through_the_job(
    backend: str, queue_name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AQUEUE_REDIS_URL", backend)  # the example keeps it rather than its own memory:// URL
    example: Any = load_example("otel_tracing")
    example.tasks.configure(redis_url=backend, queue=queue_name)
    try:
        spans = await example.main()
    finally:
        await example.tasks.close()
    by_name = {s.name: s for s in spans}
    assert sorted(by_name) == sorted(["POST /orders", f"send {queue_name}", f"process {queue_name}", "charge card"])
    chain = [by_name[n] for n in ("POST /orders", f"send {queue_name}", f"process {queue_name}", "charge card")]
    assert [s.kind for s in chain] == [SpanKind.SERVER, SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.INTERNAL]
    assert ids(chain[0])[2] is None
    for parent, child in itertools.pairwise(chain):
        assert ids(child)[::2] == (ids(parent)[0], ids(parent)[1])
    assert capsys.readouterr().out.splitlines() == [
        "o-1: charged 1250",
        f"trace {trace.format_trace_id(ids(chain[0])[0])}",
        "  POST /orders (server)",
        f"    send {queue_name} (producer)",
        f"      process {queue_name} (consumer, attempt 1)",
        "        charge card (internal)",
    ]


# -- without OpenTelemetry -----------------------------------------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


#: Imports every module of aqueue but aqueue.otel, failing if one of them imports OpenTelemetry itself. A test of
#: ``sys.modules`` alone cannot tell: redis-py (8.x, ``redis.observability``) imports OpenTelemetry when installed.
NO_OTEL_IMPORTS = """
import importlib, pkgutil, sys

class Watch:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "opentelemetry":
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename.startswith("<frozen"):
                frame = frame.f_back  # importlib's own frames: the importer is the first frame outside them
            importer = frame.f_globals.get("__name__", "") if frame is not None else ""
            if importer.partition(".")[0] == "aqueue":
                raise SystemExit(f"{importer} imports {name}")
        return None

sys.meta_path.insert(0, Watch())
import aqueue
for module in pkgutil.walk_packages(aqueue.__path__, "aqueue."):
    if module.name not in ("aqueue.otel", "aqueue.__main__"):
        importlib.import_module(module.name)
"""


@pytest.mark.no_redis
def test_no_module_of_aqueue_but_aqueue_otel_imports_opentelemetry() -> None:
    done = run_python(NO_OTEL_IMPORTS)
    assert done.returncode == 0, done.stderr
    done = run_python("import sys; sys.modules['opentelemetry'] = None\n" + NO_OTEL_IMPORTS)  # as if not installed
    assert done.returncode == 0, done.stderr


@pytest.mark.no_redis
def test_without_opentelemetry_aqueue_works_and_aqueue_otel_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['opentelemetry'] = None  # as if not installed\n"
        "import aqueue\n"
        "try:\n    import aqueue.otel\nexcept ImportError as exc:\n    print(exc)\n"
    )
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert "pip install 'aqueue[otel]'" in done.stdout


if __name__ == "__main__" and sys.argv[1:2] == ["produce"]:
    produce(*sys.argv[2:4])
