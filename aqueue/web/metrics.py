"""``/metrics``: Prometheus exposition from one :class:`~prometheus_client.CollectorRegistry` per app.

Queue figures (per-task counters, depths, scheduled, pending, dead-letter, oldest wait, each live worker's target
and busy slots) are read from Redis at scrape time, so they are queue-wide and agree across every process that
serves them. The job duration and queue-wait histograms are observed by this process's worker, when one is
attached (a histogram cannot be rebuilt from Redis). Event-loop lag and Redis errors are this process's.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from aqueue._core.errors import BrokerUnavailable
from aqueue._core.info import QueueInfo
from aqueue._core.wire import OutcomeKind, QueueSample
from aqueue._redis.breaker import CircuitBreaker
from aqueue._worker.worker import JobObserver
from aqueue.web.state import WebConfig, config_of

__all__ = ["METRICS", "WebMetrics", "metrics"]

_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600)
#: Per-task counters: (counter field in Redis, help text).
_TASK_COUNTERS = (
    ("enqueued", "Jobs enqueued"),
    ("succeeded", "Jobs that succeeded"),
    ("failed", "Attempts that failed (retried or dead-lettered)"),
    ("retried", "Failed attempts scheduled for another try"),
    ("dead", "Jobs dead-lettered"),
)
_OUTCOMES = {"ok": "succeeded", "retry": "retried", "dead": "dead"}


@dataclass(frozen=True, slots=True)
class _Reading:
    """One scrape's figures of one queue from Redis."""

    info: QueueInfo
    sample: QueueSample
    per_task: dict[str, dict[str, int]]


@dataclass(slots=True)
class _Source:
    """One queue the app serves: its latest reading (None: Redis did not answer) and its broker's breaker."""

    config: WebConfig
    reading: _Reading | None = None
    breaker: CircuitBreaker | None = None  # the broker's, once connected


class _QueueCollector(Collector):
    """Yields the latest readings (one per queue) as metric families; they are set just before each exposition.

    Every series that belongs to a queue carries its ``queue`` label, so one scrape of an app serving several
    queues keeps them apart; only the event-loop lag is the process's alone.
    """

    def __init__(self, sources: Sequence[_Source]) -> None:
        self.sources = tuple(sources)

    def collect(self) -> Iterator[Metric]:
        lag = max(s.config.live.loop_lag for s in self.sources)
        yield _gauge("aqueue_event_loop_lag_seconds", "How late this process's event loop ran a 1 s timer", lag)
        errors = CounterMetricFamily(
            "aqueue_redis_errors", "Redis failures seen by this process's web layer", labels=["queue"]
        )
        up = GaugeMetricFamily("aqueue_redis_up", "1 if Redis answered this scrape, else 0", labels=["queue"])
        circuit = GaugeMetricFamily(
            "aqueue_redis_circuit_open",
            "1 while this process's Redis circuit breaker is open (Redis failing; calls fail fast)",
            labels=["queue"],
        )
        opened = CounterMetricFamily(
            "aqueue_redis_circuit_opened", "Times this process's Redis circuit opened", labels=["queue"]
        )
        for s in self.sources:
            q = s.config.tasks.queue
            errors.add_metric([q], s.config.live.redis_errors)
            up.add_metric([q], 0 if s.reading is None else 1)
            if s.breaker is not None:
                circuit.add_metric([q], 1 if s.breaker.is_open else 0)
                opened.add_metric([q], s.breaker.opened_total)
        yield from (errors, up)
        if any(s.breaker is not None for s in self.sources):
            yield from (circuit, opened)
        readings = [(s.config.tasks.queue, s.reading) for s in self.sources if s.reading is not None]
        if readings:
            yield from _queue_families(readings)
            yield from _limit_families(readings)


def _queue_families(readings: list[tuple[str, _Reading]]) -> Iterator[Metric]:
    for counter, text in _TASK_COUNTERS:
        family = CounterMetricFamily(
            f"aqueue_jobs_{counter}", f"{text}, by task (queue-wide)", labels=["queue", "task"]
        )
        for q, r in readings:
            for task in sorted(r.per_task):
                family.add_metric([q, task], r.per_task[task].get(counter, 0))
        yield family
    depth = GaugeMetricFamily(
        "aqueue_queue_depth", "Jobs waiting in each priority stream", labels=["queue", "priority"]
    )
    for q, r in readings:
        for priority, n in r.info.queued.items():
            depth.add_metric([q, priority], n)
    yield depth
    for name, text, value in (
        ("aqueue_scheduled_jobs", "Jobs delayed or backing off before a retry", lambda r: r.info.scheduled),
        ("aqueue_due_jobs", "Scheduled jobs whose due time has passed", lambda r: r.sample.due),
        ("aqueue_pending_jobs", "Jobs claimed by a worker and not yet settled", lambda r: r.info.active),
        ("aqueue_dead_letter_jobs", "Entries in the dead-letter stream", lambda r: r.info.dead),
        ("aqueue_oldest_wait_seconds", "Age of the oldest job waiting in any priority stream", _oldest),
        ("aqueue_workers", "Live workers (heartbeat within their lease)", lambda r: len(r.info.workers)),
        ("aqueue_groups_waiting", "Groups with jobs waiting for their turn", lambda r: r.info.groups),
        ("aqueue_grouped_jobs", "Jobs waiting in a group for its turn (not yet in a stream)", lambda r: r.info.grouped),
    ):
        gauge = GaugeMetricFamily(name, text, labels=["queue"])
        for q, r in readings:
            gauge.add_metric([q], value(r))
        yield gauge
    target = GaugeMetricFamily("aqueue_worker_concurrency_target", "Each live worker's concurrency target",
                               labels=["queue", "worker"])  # fmt: skip
    busy = GaugeMetricFamily("aqueue_worker_busy_slots", "Jobs each live worker holds now", labels=["queue", "worker"])
    for q, r in readings:
        for w in r.info.workers:
            target.add_metric([q, str(w.get("id"))], float(w.get("concurrency", 0)))
            busy.add_metric([q, str(w.get("id"))], float(w.get("busy", 0)))
    yield target
    yield busy


def _oldest(r: _Reading) -> float:
    return 0.0 if r.sample.oldest_ms is None else max(0.0, (r.sample.now_ms - r.sample.oldest_ms) / 1000)


def _limit_families(readings: list[tuple[str, _Reading]]) -> Iterator[Metric]:
    """Each concurrency limit in use (a task's ``concurrency_limit``, a group's): running, limit, waiting."""
    labels = ["queue", "kind", "name"]
    running = GaugeMetricFamily("aqueue_limit_running", "Jobs holding a permit of a concurrency limit", labels=labels)
    limit = GaugeMetricFamily("aqueue_limit", "Most jobs a concurrency limit lets run at once", labels=labels)
    waiting = GaugeMetricFamily("aqueue_limit_waiting", "Jobs waiting for a concurrency limit's permit",
                                labels=labels)  # fmt: skip
    for q, r in readings:
        for u in r.info.limits:
            key = [q, u.kind, u.name]
            running.add_metric(key, u.running)
            waiting.add_metric(key, u.waiting)
            if u.limit is not None:  # a group with no limit has no figure to compare with
                limit.add_metric(key, u.limit)
    yield from (running, limit, waiting)


class _Histograms(Collector):
    """One histogram family kept as plain bucket counts per label values.

    Lighter than prometheus_client's ``Histogram`` on the worker's path (no lock, no per-label-set object) and
    exposed without the ``_created`` series, which would read as extra gauge families in the text format.
    """

    def __init__(self, name: str, text: str, labels: Sequence[str], bounds: Sequence[float]) -> None:
        self.name, self.text, self.labels = name, text, list(labels)
        self.bounds = tuple(sorted(float(b) for b in bounds))
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        """Count ``value`` in the series of ``labels``."""
        series = self._series.get(labels)
        if series is None:
            series = self._series[labels] = ([0] * (len(self.bounds) + 1), [0.0])
        series[0][bisect.bisect_left(self.bounds, value)] += 1  # the first bucket whose bound is >= value
        series[1][0] += value

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.text, labels=self.labels)
        for labels, (counts, total) in sorted(self._series.items()):
            cumulative = list(itertools.accumulate(counts))
            buckets = [(repr(b), float(c)) for b, c in zip(self.bounds, cumulative, strict=False)]
            family.add_metric(list(labels), [*buckets, ("+Inf", float(cumulative[-1]))], total[0])
        yield family


def _gauge(name: str, text: str, value: float, **labels: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, text, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


class WebMetrics:
    """The registry of one app: the queues' collector plus this process's job histograms (one per app, shared by
    the root app and the per-queue sub-apps; :meth:`scoped` gives a sub-app's view of its own queue)."""

    def __init__(self, configs: Sequence[WebConfig]) -> None:
        self._sources = [_Source(config) for config in configs]
        duration_text = "Seconds an attempt ran, by task and outcome (this process's worker)"
        wait_text = "Seconds a job waited in its stream before it started (this process's worker)"
        self.duration = _Histograms("aqueue_job_duration_seconds", duration_text, ["queue", "task", "outcome"],
                                    _DURATION_BUCKETS)  # fmt: skip
        self.wait = _Histograms("aqueue_job_queue_wait_seconds", wait_text, ["queue", "task"], _WAIT_BUCKETS)
        self.registry = self._registry(self._sources)
        self._scoped: dict[str, WebMetrics] = {}

    def _registry(self, sources: Sequence[_Source]) -> CollectorRegistry:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_QueueCollector(sources))
        registry.register(self.duration)
        registry.register(self.wait)
        return registry

    def scoped(self, queue: str) -> WebMetrics:
        """The same figures limited to ``queue`` (what ``/queues/{queue}/metrics`` exposes). The histograms are
        shared, so they hold every queue's series; they carry the ``queue`` label."""
        view = self._scoped.get(queue)
        if view is None:
            view = self._scoped[queue] = object.__new__(WebMetrics)
            view._sources = [s for s in self._sources if s.config.tasks.queue == queue]
            view.duration, view.wait, view._scoped = self.duration, self.wait, {}
            view.registry = view._registry(view._sources)
        return view

    def observer(self, queue: str) -> JobObserver:
        """A :data:`~aqueue._worker.worker.JobObserver` for the worker of ``queue``."""

        def observe(task: str, took: float, wait: float, kind: OutcomeKind) -> None:
            # Appended to the worker of this queue (a lane's own list, for a worker of several queues): its jobs only.
            self.duration.observe((queue, task, _OUTCOMES.get(kind, kind)), took)
            self.wait.observe((queue, task), wait)

        return observe

    async def read(self) -> None:
        """Read every queue's figures from Redis (concurrently) for the next exposition; a queue whose Redis does
        not answer exposes ``aqueue_redis_up{queue} 0``."""
        await asyncio.gather(*(_read(source) for source in self._sources))

    def expose(self, accept: str) -> tuple[bytes, str]:
        """The exposition in the format ``accept`` asks for (Prometheus text by default) and its content type."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


async def _read(source: _Source) -> None:
    tasks = source.config.tasks
    try:
        broker = await tasks._broker()
        source.breaker = broker.breaker
        info, sample, per_task = await asyncio.gather(tasks.info(), broker.sample(0), broker.task_counters())
    except BrokerUnavailable:
        source.config.live.redis_errors += 1
        source.reading = None
    else:
        source.reading = _Reading(info, sample, per_task)


METRICS: web.AppKey[WebMetrics] = web.AppKey("aqueue_metrics", WebMetrics)


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics (every queue served), GET /queues/{queue}/metrics (that queue)."""
    m = request.config_dict[METRICS]
    if "queue" in request.match_info:
        m = m.scoped(config_of(request).tasks.queue)
    await m.read()
    body, content_type = m.expose(request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type})
