"""``/metrics``: Prometheus text that parses, follows the naming rules, and counts queue-wide from Redis."""

from __future__ import annotations

import subprocess

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

import aqueue
from aqueue.web import create_app
from tests.helpers import Client, MakeTasks, Serve, StartWorker, system_binary, wait_until

ON_CLUSTER = True


FAMILIES = {
    # counters by task, from Redis
    "aqueue_jobs_enqueued": "counter",
    "aqueue_jobs_succeeded": "counter",
    "aqueue_jobs_failed": "counter",
    "aqueue_jobs_retried": "counter",
    "aqueue_jobs_dead": "counter",
    # this process's worker
    "aqueue_job_duration_seconds": "histogram",
    "aqueue_job_queue_wait_seconds": "histogram",
    # queue gauges, from Redis
    "aqueue_queue_depth": "gauge",
    "aqueue_scheduled_jobs": "gauge",
    "aqueue_due_jobs": "gauge",
    "aqueue_pending_jobs": "gauge",
    "aqueue_dead_letter_jobs": "gauge",
    "aqueue_oldest_wait_seconds": "gauge",
    "aqueue_workers": "gauge",
    "aqueue_worker_concurrency_target": "gauge",
    "aqueue_worker_busy_slots": "gauge",
    # concurrency limits and groups, from Redis
    "aqueue_limit_running": "gauge",
    "aqueue_limit": "gauge",
    "aqueue_limit_waiting": "gauge",
    "aqueue_groups_waiting": "gauge",
    "aqueue_grouped_jobs": "gauge",
    # this process
    "aqueue_event_loop_lag_seconds": "gauge",
    "aqueue_redis_errors": "counter",
    "aqueue_redis_up": "gauge",
    "aqueue_redis_circuit_open": "gauge",
    "aqueue_redis_circuit_opened": "counter",
}


def register(tasks: aqueue.Tasks) -> aqueue.Tasks:
    @tasks.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    @tasks.task(name="boom", max_attempts=2, backoff_base=0, backoff_max=0)
    async def boom() -> None:
        raise RuntimeError("boom")

    return tasks


async def scrape(client: Client) -> tuple[str, dict[str, Metric]]:
    resp = await client.get("/metrics")
    text = await resp.text()
    assert resp.status == 200, text
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return text, {m.name: m for m in text_string_to_metric_families(text)}


def value(family: Metric, sample: str, **labels: str) -> float:
    found = [
        s.value for s in family.samples if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (sample, labels, family.samples)
    return found[0]


async def test_metrics_parse_and_carry_every_family(
    serve: Serve,
    make_tasks: MakeTasks,
    start_worker: StartWorker,
) -> None:
    tasks = register(make_tasks())
    rw = await start_worker(tasks, min_concurrency=1, max_concurrency=3)
    client = await serve(tasks, worker=rw.worker)
    producer = register(make_tasks())  # another process, as far as Redis can tell
    add, boom = producer.get("add"), producer.get("boom")
    assert add is not None and boom is not None
    await producer.enqueue_many([add.spec(1, 2), add.spec(3, 4), boom.spec()])
    await wait_until(lambda: rw.worker.processed == 4)  # add twice, boom twice (a retry, then dead)

    async def settled() -> bool:
        return (await tasks.info()).stats.get("dead", 0) == 1

    await wait_until(settled)
    text, families = await scrape(client)
    assert {name: f.type for name, f in families.items()} == FAMILIES, text
    q = tasks.queue
    jobs = {name: families[f"aqueue_jobs_{name}"] for name in ("enqueued", "succeeded", "failed", "retried", "dead")}
    assert value(jobs["enqueued"], "aqueue_jobs_enqueued_total", queue=q, task="add") == 2
    assert value(jobs["enqueued"], "aqueue_jobs_enqueued_total", task="boom") == 1
    assert value(jobs["succeeded"], "aqueue_jobs_succeeded_total", task="add") == 2
    assert value(jobs["retried"], "aqueue_jobs_retried_total", task="boom") == 1
    assert value(jobs["failed"], "aqueue_jobs_failed_total", task="boom") == 2
    assert value(jobs["dead"], "aqueue_jobs_dead_total", task="boom") == 1
    assert value(jobs["dead"], "aqueue_jobs_dead_total", task="add") == 0

    duration = families["aqueue_job_duration_seconds"]
    assert value(duration, "aqueue_job_duration_seconds_count", task="add", outcome="succeeded") == 2
    assert value(duration, "aqueue_job_duration_seconds_count", task="boom", outcome="retried") == 1
    assert value(duration, "aqueue_job_duration_seconds_count", task="boom", outcome="dead") == 1
    wait = families["aqueue_job_queue_wait_seconds"]
    assert value(wait, "aqueue_job_queue_wait_seconds_count", task="add") == 2

    assert value(families["aqueue_dead_letter_jobs"], "aqueue_dead_letter_jobs", queue=q) == 1
    assert value(families["aqueue_queue_depth"], "aqueue_queue_depth", priority="normal") == 0
    assert value(families["aqueue_workers"], "aqueue_workers") == 1
    target = families["aqueue_worker_concurrency_target"]
    assert value(target, "aqueue_worker_concurrency_target", worker=rw.worker.id) >= 1
    assert value(families["aqueue_redis_up"], "aqueue_redis_up", queue=q) == 1
    assert value(families["aqueue_grouped_jobs"], "aqueue_grouped_jobs", queue=q) == 0


async def test_counters_are_queue_wide_in_every_app(serve: Serve, make_tasks: MakeTasks) -> None:
    first, second = register(make_tasks()), register(make_tasks())
    add = first.get("add")
    assert add is not None
    for i in range(3):
        await add.enqueue(i, i)
    scraped = [(await scrape(await serve(t)))[1] for t in (first, second)]
    for families in scraped:
        assert value(families["aqueue_jobs_enqueued"], "aqueue_jobs_enqueued_total", task="add") == 3
        assert value(families["aqueue_queue_depth"], "aqueue_queue_depth", priority="normal") == 3
        assert value(families["aqueue_oldest_wait_seconds"], "aqueue_oldest_wait_seconds") >= 0
        assert "aqueue_job_duration_seconds" in families  # declared even with no worker, just empty


async def test_names_follow_the_prometheus_rules(serve: Serve, make_tasks: MakeTasks) -> None:
    tasks = register(make_tasks())
    add = tasks.get("add")
    assert add is not None
    await add.enqueue(1, 2)
    text, families = await scrape(await serve(tasks))
    for name, family in families.items():
        assert name.startswith("aqueue_") and name == name.lower(), name
        assert family.documentation, name
        for sample in family.samples:
            if family.type == "counter":
                assert sample.name in (f"{name}_total", f"{name}_created"), sample.name
            else:
                assert "_total" not in sample.name, sample.name
        if family.type == "histogram" or "seconds" in name:
            assert name.endswith("_seconds"), name
    promtool = system_binary(("promtool",), ("prometheus",))
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_openmetrics_when_the_scraper_asks_for_it(serve: Serve, make_tasks: MakeTasks) -> None:
    client = await serve(register(make_tasks()))
    resp = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await resp.text()).rstrip().endswith("# EOF")


async def test_per_task_counters_come_from_every_script(make_tasks: MakeTasks) -> None:
    tasks = register(make_tasks())
    broker = await tasks._broker()
    await broker.ensure_groups()
    add = tasks.get("add")
    assert add is not None
    await tasks.enqueue_many([add.spec(1, 2), add.spec(2, 3)])
    # An entry whose record is missing is dead-lettered by the claim script itself, under no task.
    await broker.redis.xadd(tasks._keys.stream("normal"), {"j": "ghost"})
    claimed = (await broker.claim("c1", [0, 10, 0], ["0-0"] * 3, 0)).jobs
    assert len(claimed) == 2
    counters = await broker.task_counters()
    assert counters["add"] == {"enqueued": 2}
    assert counters[""] == {"dead": 1}
    from aqueue._core.wire import Outcome

    await broker.settle("c1", [Outcome("ok", c.stream, c.msg_id, c.job_id, "3") for c in claimed])
    assert (await broker.task_counters())["add"] == {"enqueued": 2, "succeeded": 2}


async def test_redis_down_still_exposes_this_process(serve: Serve) -> None:
    tasks = register(aqueue.Tasks("metrics-down", "redis://127.0.0.1:1/0"))
    try:
        client = await serve(tasks)
        _, first = await scrape(client)
        _, second = await scrape(client)
        assert value(second["aqueue_redis_up"], "aqueue_redis_up") == 0
        errors = value(second["aqueue_redis_errors"], "aqueue_redis_errors_total")
        assert errors > value(first["aqueue_redis_errors"], "aqueue_redis_errors_total")
        assert "aqueue_jobs_enqueued" not in second
    finally:
        await tasks.close()


async def test_the_worker_feeds_the_app_only_while_it_serves(make_tasks: MakeTasks) -> None:
    tasks = register(make_tasks())
    worker = aqueue.Worker(tasks, concurrency=1)
    client: Client = TestClient(TestServer(create_app(tasks, worker=worker)))
    await client.start_server()
    assert len(worker.observers) == 1
    await client.close()
    assert worker.observers == []
