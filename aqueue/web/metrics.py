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
from aqueue.web.live import LiveFigures
from aqueue.web.state import WebConfig

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
    """One scrape's figures from Redis."""

    info: QueueInfo
    sample: QueueSample
    per_task: dict[str, dict[str, int]]


class _QueueCollector(Collector):
    """Yields the latest reading as metric families; the reading is set just before each exposition."""

    def __init__(self, queue: str, live: LiveFigures) -> None:
        self.queue = queue
        self.live = live
        self.reading: _Reading | None = None
        self.breaker: CircuitBreaker | None = None  # the broker's, once connected

    def collect(self) -> Iterator[Metric]:
        yield _gauge(
            "aqueue_event_loop_lag_seconds", "How late this process's event loop ran a 1 s timer", self.live.loop_lag
        )
        errors = CounterMetricFamily("aqueue_redis_errors", "Redis failures seen by this process's web layer")
        errors.add_metric([], self.live.redis_errors)
        yield errors
        yield _gauge("aqueue_redis_up", "1 if Redis answered this scrape, else 0", 0 if self.reading is None else 1)
        if self.breaker is not None:
            yield _gauge(
                "aqueue_redis_circuit_open",
                "1 while this process's Redis circuit breaker is open (Redis failing; calls fail fast)",
                1 if self.breaker.is_open else 0,
            )
            opened = CounterMetricFamily("aqueue_redis_circuit_opened", "Times this process's Redis circuit opened")
            opened.add_metric([], self.breaker.opened_total)
            yield opened
        if self.reading is not None:
            yield from self._queue_families(self.reading)

    def _queue_families(self, r: _Reading) -> Iterator[Metric]:
        q = self.queue
        for counter, text in _TASK_COUNTERS:
            family = CounterMetricFamily(
                f"aqueue_jobs_{counter}", f"{text}, by task (queue-wide)", labels=["queue", "task"]
            )
            for task in sorted(r.per_task):
                family.add_metric([q, task], r.per_task[task].get(counter, 0))
            yield family
        depth = GaugeMetricFamily(
            "aqueue_queue_depth", "Jobs waiting in each priority stream", labels=["queue", "priority"]
        )
        for priority, n in r.info.queued.items():
            depth.add_metric([q, priority], n)
        yield depth
        oldest = 0.0 if r.sample.oldest_ms is None else max(0.0, (r.sample.now_ms - r.sample.oldest_ms) / 1000)
        for name, text, value in (
            ("aqueue_scheduled_jobs", "Jobs delayed or backing off before a retry", r.info.scheduled),
            ("aqueue_due_jobs", "Scheduled jobs whose due time has passed", r.sample.due),
            ("aqueue_pending_jobs", "Jobs claimed by a worker and not yet settled", r.info.active),
            ("aqueue_dead_letter_jobs", "Entries in the dead-letter stream", r.info.dead),
            ("aqueue_oldest_wait_seconds", "Age of the oldest job waiting in any priority stream", oldest),
            ("aqueue_workers", "Live workers (heartbeat within their lease)", len(r.info.workers)),
        ):
            yield _gauge(name, text, value, queue=q)
        target = GaugeMetricFamily("aqueue_worker_concurrency_target", "Each live worker's concurrency target",
                                   labels=["queue", "worker"])  # fmt: skip
        busy = GaugeMetricFamily(
            "aqueue_worker_busy_slots", "Jobs each live worker holds now", labels=["queue", "worker"]
        )
        for w in r.info.workers:
            target.add_metric([q, str(w.get("id"))], float(w.get("concurrency", 0)))
            busy.add_metric([q, str(w.get("id"))], float(w.get("busy", 0)))
        yield target
        yield busy


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
    """The registry of one app: the queue collector plus this process's job histograms."""

    def __init__(self, config: WebConfig) -> None:
        self.config = config
        self.registry = CollectorRegistry(auto_describe=False)
        queue = config.tasks.queue
        self._collector = _QueueCollector(queue, config.live)
        self.registry.register(self._collector)
        duration_text = "Seconds an attempt ran, by task and outcome (this process's worker)"
        wait_text = "Seconds a job waited in its stream before it started (this process's worker)"
        self.duration = _Histograms("aqueue_job_duration_seconds", duration_text, ["queue", "task", "outcome"],
                                    _DURATION_BUCKETS)  # fmt: skip
        self.wait = _Histograms("aqueue_job_queue_wait_seconds", wait_text, ["queue", "task"], _WAIT_BUCKETS)
        self.registry.register(self.duration)
        self.registry.register(self.wait)

    def observe(self, task: str, took: float, wait: float, kind: OutcomeKind) -> None:
        """A :data:`~aqueue._worker.worker.JobObserver`: record one attempt (called on the worker's slot path)."""
        q = self.config.tasks.queue
        self.duration.observe((q, task, _OUTCOMES.get(kind, kind)), took)
        self.wait.observe((q, task), wait)

    async def read(self) -> None:
        """Read the queue's figures from Redis for the next exposition (on failure, expose ``aqueue_redis_up 0``)."""
        try:
            broker = await self.config.tasks._broker()
            self._collector.breaker = broker.breaker
            info, sample, per_task = await asyncio.gather(broker.info(), broker.sample(0), broker.task_counters())
        except BrokerUnavailable:
            self.config.live.redis_errors += 1
            self._collector.reading = None
        else:
            self._collector.reading = _Reading(info, sample, per_task)

    def expose(self, accept: str) -> tuple[bytes, str]:
        """The exposition in the format ``accept`` asks for (Prometheus text by default) and its content type."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


METRICS: web.AppKey[WebMetrics] = web.AppKey("aqueue_metrics", WebMetrics)


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics."""
    m = request.config_dict[METRICS]
    await m.read()
    body, content_type = m.expose(request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type})
