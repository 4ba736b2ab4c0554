"""One web app over several queues: ``/queues/{queue}/…`` routes, the unprefixed overviews (``/status``,
``/metrics``, ``/ws``, ``GET /jobs/{id}``), unknown queues, and the concurrency limits shown in each."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

import aqueue
from aqueue._core.info import LimitUsage
from aqueue.web import create_app
from aqueue.web.metrics import WebMetrics
from aqueue.web.state import WebConfig
from aqueue.web.status import build_status, limits_view, queue_summary
from aqueue.web.ws import CLOSE_BAD_REQUEST, WS_OPTIONS, WsOptions
from tests.helpers import MakeTasks, StartWorker, json_of, next_of, wait_until

ON_CLUSTER = True


def register(tasks: aqueue.Tasks) -> aqueue.Tasks:
    @tasks.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    return tasks


@pytest.fixture
def two(make_tasks: MakeTasks, queue_name: str) -> tuple[aqueue.Tasks, aqueue.Tasks]:
    """Two registries on two queues of this test's backend: ``orders`` and ``emails`` (by role)."""
    return register(make_tasks(queue=f"{queue_name}-orders")), register(make_tasks(queue=f"{queue_name}-emails"))


@asynccontextmanager
async def serve(app: Any) -> AsyncIterator[TestClient[Any, Any]]:
    app[WS_OPTIONS] = WsOptions(metrics_interval=0.05)
    async with TestClient(TestServer(app)) as client:
        yield client


def test_two_registries_of_one_queue_are_refused(make_tasks: MakeTasks) -> None:
    with pytest.raises(aqueue.ConfigurationError, match="given twice"):
        create_app([make_tasks(), make_tasks()])
    with pytest.raises(aqueue.ConfigurationError, match="at least one"):
        create_app([])


async def test_every_route_exists_under_the_queue_name(two: tuple[aqueue.Tasks, aqueue.Tasks]) -> None:
    orders, emails = two
    async with serve(create_app([orders, emails])) as client:
        for tasks in (orders, emails):
            created = await json_of(
                await client.post(f"/queues/{tasks.queue}/jobs", json={"task": "add", "args": [1, 2]}), 201
            )
            job = await json_of(await client.get(f"/queues/{tasks.queue}/jobs/{created['id']}"), 200)
            assert job["task"] == "add"
            status = await json_of(await client.get(f"/queues/{tasks.queue}/status"), 200)
            assert status["queue"] == tasks.queue and status["queued"] == 1 and "queues" not in status
            # The health checks are the process's, not a queue's: served once, unprefixed.
            assert (await client.get(f"/queues/{tasks.queue}/health/live")).status == 404
        assert (await orders.info()).queued["normal"] == 1 and (await emails.info()).queued["normal"] == 1
        # Unprefixed mutating routes act on the first queue.
        await json_of(await client.post("/jobs", json={"task": "add", "args": [3, 4]}), 201)
        assert (await orders.info()).queued["normal"] == 2 and (await emails.info()).queued["normal"] == 1


async def test_one_queue_is_also_served_under_its_name(make_tasks: MakeTasks) -> None:
    tasks = register(make_tasks())
    async with serve(create_app(tasks)) as client:
        plain = await json_of(await client.get("/status"), 200)
        named = await json_of(await client.get(f"/queues/{tasks.queue}/status"), 200)
        assert plain.keys() == named.keys() and "queues" not in plain
        assert (await client.get(f"/queues/{tasks.queue}/openapi.json")).status == 200


async def test_an_unknown_queue_is_a_404_naming_the_queues(two: tuple[aqueue.Tasks, aqueue.Tasks]) -> None:
    orders, emails = two
    async with serve(create_app([orders, emails])) as client:
        for method, path in (
            ("GET", "/queues/nope/status"),
            ("GET", "/queues/nope/jobs/x"),
            ("POST", "/queues/nope/pause"),
        ):
            body = await json_of(await client.request(method, path), 404)
            assert body == {"error": f"no queue 'nope' here; queues: {orders.queue}, {emails.queue}"}
        assert "no queue 'nope' here" in (await json_of(await client.get("/queues/nope/ws"), 404))["error"]
        assert (await client.get("/queues/nope")).status == 404


async def test_unprefixed_status_gives_every_queue_summary(two: tuple[aqueue.Tasks, aqueue.Tasks]) -> None:
    orders, emails = two
    add = emails.get("add")
    assert add is not None
    await add.enqueue(1, 1)
    await add.enqueue(2, 2)
    async with serve(create_app([orders, emails])) as client:
        status = await json_of(await client.get("/status"), 200)
    assert status["queue"] == orders.queue  # the first queue's status, as a one-queue app gives it
    assert list(status["queues"]) == [orders.queue, emails.queue]
    assert status["queues"][emails.queue]["queued"] == 2 and status["queues"][orders.queue]["queued"] == 0
    assert status["queues"][emails.queue]["counters"]["enqueued"] == 2
    assert status["limits"] == [] and status["groups"] == 0 and status["grouped"] == 0


async def test_unprefixed_job_lookup_searches_every_queue(two: tuple[aqueue.Tasks, aqueue.Tasks]) -> None:
    orders, emails = two
    add = emails.get("add")
    assert add is not None
    job = await add.enqueue(1, 1)
    async with serve(create_app([orders, emails])) as client:
        found = await json_of(await client.get(f"/jobs/{job.id}"), 200)
        assert found["queue"] == emails.queue and found["id"] == job.id
        await json_of(await client.get(f"/queues/{orders.queue}/jobs/{job.id}"), 404)
        await json_of(await client.get("/jobs/never-was"), 404)


async def test_one_scrape_covers_every_queue_with_a_queue_label(two: tuple[aqueue.Tasks, aqueue.Tasks]) -> None:
    orders, emails = two
    add = emails.get("add")
    assert add is not None
    await add.enqueue(1, 1)
    async with serve(create_app([orders, emails])) as client:
        text = await (await client.get("/metrics")).text()
        scoped = await (await client.get(f"/queues/{orders.queue}/metrics")).text()
    families = {m.name: m for m in text_string_to_metric_families(text)}
    depth = {
        s.labels["queue"]: s.value for s in families["aqueue_queue_depth"].samples if s.labels["priority"] == "normal"
    }
    assert depth == {orders.queue: 0, emails.queue: 1}
    for name in ("aqueue_redis_up", "aqueue_workers", "aqueue_dead_letter_jobs", "aqueue_grouped_jobs"):
        assert {s.labels["queue"] for s in families[name].samples} == {orders.queue, emails.queue}, name
    for name in ("aqueue_limit", "aqueue_limit_running", "aqueue_limit_waiting", "aqueue_groups_waiting"):
        assert name in families, name
    scoped_families = {m.name: m for m in text_string_to_metric_families(scoped)}
    assert {s.labels["queue"] for s in scoped_families["aqueue_queue_depth"].samples} == {orders.queue}


async def test_limits_show_in_status_and_metrics(make_tasks: MakeTasks) -> None:
    """The format of the limits, from a real QueueInfo whose limits are filled in by hand."""
    tasks = register(make_tasks())
    info = await tasks.info()
    limits = (LimitUsage("task", "add", 2, 3, 5), LimitUsage("group", "customer-7", 1, None, 4))
    filled = type(info)(info.queued, info.active, info.scheduled, info.dead, info.workers, info.stats, limits, 1, 4)
    assert limits_view(filled) == [
        {"kind": "task", "name": "add", "running": 2, "limit": 3, "waiting": 5},
        {"kind": "group", "name": "customer-7", "running": 1, "limit": None, "waiting": 4},
    ]
    config = WebConfig(tasks, None, None, False, 1 << 20)
    status = await build_status(config)
    assert queue_summary(status)["limits"] == status["limits"]

    metrics = WebMetrics([config])
    await metrics.read()
    source = metrics._sources[0]
    assert source.reading is not None
    source.reading = type(source.reading)(filled, source.reading.sample, source.reading.per_task)
    text = metrics.expose("")[0].decode()
    families = {m.name: m for m in text_string_to_metric_families(text)}
    q = tasks.queue
    running = {(s.labels["kind"], s.labels["name"]): s.value for s in families["aqueue_limit_running"].samples}
    assert running == {("task", "add"): 2, ("group", "customer-7"): 1}
    limit = {(s.labels["kind"], s.labels["name"]): s.value for s in families["aqueue_limit"].samples}
    assert limit == {("task", "add"): 3}  # a group with no limit has none to show
    waiting = {(s.labels["queue"], s.labels["name"]): s.value for s in families["aqueue_limit_waiting"].samples}
    assert waiting == {(q, "add"): 5, (q, "customer-7"): 4}
    assert [s.value for s in families["aqueue_grouped_jobs"].samples] == [4]
    assert [s.value for s in families["aqueue_groups_waiting"].samples] == [1]


async def test_ws_without_a_queue_follows_every_queue(two: tuple[aqueue.Tasks, aqueue.Tasks]) -> None:
    orders, emails = two
    async with serve(create_app([orders, emails])) as client, client.ws_connect("/ws") as ws:
        snapshot = await next_of(ws, "snapshot")
        assert set(snapshot["last_ids"]) == {orders.queue, emails.queue}
        assert set(snapshot["status"]["queues"]) == {orders.queue, emails.queue}
        seen: dict[str, str] = {}
        for tasks in (emails, orders):
            add = tasks.get("add")
            assert add is not None
            job = await add.enqueue(1, 2)
            seen[job.id] = tasks.queue
        events = [await next_of(ws, "event") for _ in range(2)]
        assert {e["event"]["job"]: e["queue"] for e in events} == seen
        metrics = await next_of(ws, "metrics")
        assert set(metrics["status"]["queues"]) == {orders.queue, emails.queue}
        await ws.send_json({"op": "job", "id": next(iter(seen))})
        job_reply = await next_of(ws, "job")
        assert job_reply["job"]["task"] == "add" and job_reply["queue"] == emails.queue


async def test_ws_queue_filter_gives_one_queue(two: tuple[aqueue.Tasks, aqueue.Tasks]) -> None:
    orders, emails = two
    add_orders, add_emails = orders.get("add"), emails.get("add")
    assert add_orders is not None and add_emails is not None
    async with serve(create_app([orders, emails])) as client:
        for path in (f"/ws?queue={emails.queue}", f"/queues/{emails.queue}/ws"):
            async with client.ws_connect(path) as ws:
                snapshot = await next_of(ws, "snapshot")
                assert snapshot["status"]["queue"] == emails.queue
                await add_orders.enqueue(1, 1)
                job = await add_emails.enqueue(2, 2)
                event = await next_of(ws, "event")
                assert event["queue"] == emails.queue and event["event"]["job"] == job.id


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/ws?queue=nope", "no queue 'nope' here"),
        ("/ws?since=1-0", "name it with queue="),
        ("/queues/{orders}/ws?queue={emails}", "serves queue"),
    ],
)
async def test_ws_refuses_what_it_cannot_serve(two: tuple[aqueue.Tasks, aqueue.Tasks], path: str, why: str) -> None:
    orders, emails = two
    async with serve(create_app([orders, emails])) as client:
        async with client.ws_connect(path.format(orders=orders.queue, emails=emails.queue)) as ws:
            error = await next_of(ws, "error")
            assert why in error["error"]
            await ws.receive()
        assert ws.close_code == CLOSE_BAD_REQUEST


async def test_each_queue_worker_feeds_its_own_histograms(
    two: tuple[aqueue.Tasks, aqueue.Tasks], start_worker: StartWorker
) -> None:
    orders, emails = two
    rw = await start_worker(emails, concurrency=1)
    app = create_app([orders, emails], worker=rw.worker)
    async with serve(app) as client:
        add = emails.get("add")
        assert add is not None
        await add.enqueue(1, 1)
        await wait_until(lambda: rw.worker.processed == 1)
        text = await (await client.get("/metrics")).text()
        status = await json_of(await client.get(f"/queues/{emails.queue}/status"), 200)
        orders_status = await json_of(await client.get(f"/queues/{orders.queue}/status"), 200)
    families = {m.name: m for m in text_string_to_metric_families(text)}
    counts = [s for s in families["aqueue_job_duration_seconds"].samples if s.name.endswith("_count")]
    assert [(s.labels["queue"], s.value) for s in counts] == [(emails.queue, 1)]
    assert status["attached_worker"] == rw.worker.id and orders_status["attached_worker"] is None


async def test_a_worker_of_another_queue_is_refused(make_tasks: MakeTasks, queue_name: str) -> None:
    served, other = make_tasks(queue=f"{queue_name}-a"), make_tasks(queue=f"{queue_name}-b")
    with pytest.raises(aqueue.ConfigurationError):
        create_app([served], worker=aqueue.Worker(other, concurrency=1))


async def test_a_task_concurrency_limit_shows_in_status_and_metrics(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()

    @tasks.task(name="slow", concurrency_limit=2)
    async def slow() -> None:
        return None

    await slow.enqueue()
    async with serve(create_app(tasks)) as client:
        status = await json_of(await client.get("/status"), 200)
        text = await (await client.get("/metrics")).text()
    (limit,) = [entry for entry in status["limits"] if entry["name"] == "slow"]
    assert limit["kind"] == "task" and limit["limit"] == 2 and limit["running"] == 0
    families = {m.name: m for m in text_string_to_metric_families(text)}
    samples = {(s.labels["kind"], s.labels["name"]): s.value for s in families["aqueue_limit"].samples}
    assert samples[("task", "slow")] == 2
    assert all(s.labels["queue"] == tasks.queue for s in families["aqueue_limit_running"].samples)


async def test_a_worker_of_several_queues_is_attached_to_each(
    make_tasks: MakeTasks, queue_name: str, start_app: Any
) -> None:
    orders, emails = (make_tasks(queue=f"{queue_name}-orders"), make_tasks(queue=f"{queue_name}-emails"))

    @orders.task(name="place")
    async def place() -> None:
        return None

    @emails.task(name="send")
    async def send() -> None:
        return None

    worker = aqueue.Worker([orders, emails], concurrency=2)
    runner = asyncio.create_task(worker.run())
    try:
        client = await start_app(create_app([orders, emails], worker=worker))
        await wait_until(lambda: worker.is_running)
        await place.enqueue()
        await send.enqueue()
        await send.enqueue()
        await wait_until(lambda: worker.processed == 3)
        text = await (await client.get("/metrics")).text()
        for tasks in (orders, emails):
            status = await json_of(await client.get(f"/queues/{tasks.queue}/status"), 200)
            assert status["attached_worker"] == worker.lane(tasks.queue).id
        assert (await json_of(await client.get("/health/ready"), 200))["status"] == "ready"
    finally:
        await worker.stop()
        await runner
    families = {m.name: m for m in text_string_to_metric_families(text)}
    counts = {
        (s.labels["queue"], s.labels["task"]): s.value
        for s in families["aqueue_job_duration_seconds"].samples
        if s.name.endswith("_count")
    }
    assert counts == {(orders.queue, "place"): 1, (emails.queue, "send"): 2}
