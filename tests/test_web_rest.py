"""The web sub-app's REST side: status, health, the job API, dead letters, scaling, auth, errors, OpenAPI.

Every test runs on ``memory://`` and on the real Redis (the ``backend`` fixture behind ``make_tasks``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import aqueue
from aqueue.web import create_app
from tests.helpers import Client, MakeTasks, RunningWorker, Serve, StartWorker, json_of, wait_until

ON_CLUSTER = True

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def register(tasks: aqueue.Tasks) -> aqueue.Tasks:
    """The tasks every test here uses: ``add``, ``echo``, ``boom`` (always fails, one attempt), ``flaky``."""

    @tasks.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    @tasks.task(name="echo")
    async def echo(*args: Any, **kwargs: Any) -> list[Any]:
        return [list(args), kwargs]

    @tasks.task(name="boom", max_attempts=1)
    async def boom() -> None:
        raise RuntimeError("boom")

    failures: dict[str, int] = {}

    @tasks.task(name="flaky", max_attempts=1)
    async def flaky(key: str, fail_times: int) -> str:
        failures[key] = failures.get(key, 0) + 1
        if failures[key] <= fail_times:
            raise RuntimeError(f"failure {failures[key]}")
        return "ok"

    return tasks


@pytest.fixture
def app_tasks(make_tasks: MakeTasks) -> Callable[[], aqueue.Tasks]:
    """What ``serve()`` serves when a test names no registry: one with this module's tasks registered."""
    return lambda: register(make_tasks())


def tasks_of(client: Client) -> aqueue.Tasks:
    from aqueue.web.state import CONFIG

    return client.app[CONFIG].tasks  # type: ignore[index]


async def dead_job(client: Client, rw: RunningWorker, task: str, *args: Any) -> str:
    """Enqueue ``task`` through the API and wait until it is dead-lettered; returns its id."""
    job_id: str = (await json_of(await client.post("/jobs", json={"task": task, "args": list(args)}), 201))["id"]

    async def is_dead() -> bool:
        return (await json_of(await client.get(f"/jobs/{job_id}"), 200))["status"] == "dead"

    await wait_until(is_dead)
    return job_id


# -- status and health -----------------------------------------------------------------------------------------


async def test_status_reports_depths_workers_scaling_and_counters(
    serve: Serve, make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = register(make_tasks())
    rw = await start_worker(tasks, min_concurrency=1, max_concurrency=4, scale_interval=60, lease=0.6)
    client = await serve(tasks, worker=rw.worker)
    await rw.worker.scale_to(3)

    async def heartbeat_shows_it() -> bool:
        return bool((await json_of(await client.get("/status"), 200))["workers"][0]["concurrency"] == 3)

    later = tasks.get("add")
    assert later is not None
    await later.with_options(delay=60).enqueue(1, 2)
    await later.with_options(priority="high").enqueue(1, 2)
    await wait_until(lambda: rw.worker.processed >= 1)
    await wait_until(heartbeat_shows_it)

    status = await json_of(await client.get("/status"), 200)
    assert set(status["depths"]) == {"high", "normal", "low"}
    assert status["scheduled"] == 1
    assert status["dead_letter"] == 0
    assert status["counters"]["enqueued"] == 2
    assert status["tasks"]["add"]["enqueued"] == 2
    assert status["attached_worker"] == rw.worker.id
    (w,) = status["workers"]
    assert w["id"] == rw.worker.id and w["concurrency"] == 3
    assert w["min_concurrency"] == 1 and w["max_concurrency"] == 4 and w["strategy"] == "default"
    assert 0 <= w["heartbeat_age"] < 30
    scaling = status["scaling"][0]
    assert (scaling["worker"], scaling["from"], scaling["to"], scaling["strategy"]) == (rw.worker.id, 1, 3, "manual")
    for key in ("throughput", "arrival_rate", "error_rate", "oldest_wait", "loop_lag", "active", "due"):
        assert isinstance(status[key], int | float), key


async def test_ready_needs_redis_and_a_running_worker(serve: Serve, make_tasks: MakeTasks) -> None:
    tasks = register(make_tasks())
    worker = aqueue.Worker(tasks, concurrency=1)
    client = await serve(tasks, worker=worker)
    assert await json_of(await client.get("/health/live"), 200) == {"status": "alive"}
    assert "not running" in (await json_of(await client.get("/health/ready"), 503))["error"]
    run = asyncio.create_task(worker.run())
    await wait_until(lambda: worker.is_running)
    assert await json_of(await client.get("/health/ready"), 200) == {"status": "ready", "redis_circuit": "closed"}
    await worker.stop()
    await run
    assert "not running" in (await json_of(await client.get("/health/ready"), 503))["error"]


async def test_unreachable_redis_is_503_json_never_500(serve: Serve) -> None:
    tasks = register(aqueue.Tasks("web-down", "redis://127.0.0.1:1/0"))
    try:
        client = await serve(tasks)
        assert await json_of(await client.get("/health/live"), 200) == {"status": "alive"}
        assert "Redis" in (await json_of(await client.get("/health/ready"), 503))["error"]
        for path in ("/status", "/jobs", "/jobs/abc", "/dead-letter"):
            assert "Redis" in (await json_of(await client.get(path), 503))["error"], path
        assert (await json_of(await client.post("/jobs", json={"task": "add", "args": [1, 2]}), 503))["error"]
        metrics = await client.get("/metrics")
        assert metrics.status == 200 and 'aqueue_redis_up{queue="web-down"} 0.0' in await metrics.text()
    finally:
        await tasks.close()


# -- POST /jobs and GET /jobs/{id} ------------------------------------------------------------------------------


async def test_enqueued_job_runs_and_its_record_shows_the_result(
    serve: Serve, make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = register(make_tasks())
    await start_worker(tasks, concurrency=2)
    client = await serve(tasks)
    body = {"task": "echo", "args": [1, "<script>"], "kwargs": {"k": [True, None]}, "options": {"max_attempts": 2}}
    job_id = (await json_of(await client.post("/jobs", json=body), 201))["id"]

    async def succeeded() -> bool:
        return (await json_of(await client.get(f"/jobs/{job_id}"), 200))["status"] == "succeeded"

    await wait_until(succeeded)
    job = await json_of(await client.get(f"/jobs/{job_id}"), 200)
    assert job["result"] == [[1, "<script>"], {"k": [True, None]}]
    assert (job["task"], job["attempts"], job["max_attempts"], job["priority"]) == ("echo", 1, 2, "normal")
    assert job["args"] == [1, "<script>"] and job["kwargs"] == {"k": [True, None]}
    assert job["enqueued_at"] <= job["started_at"] <= job["finished_at"]


async def test_options_shape_the_stored_job(serve: Serve) -> None:
    client = await serve()
    options = {"priority": "high", "delay": 30, "max_attempts": 5, "timeout": 2.5, "backoff_base": 0, "backoff_max": 1}
    job_id = (await json_of(await client.post("/jobs", json={"task": "add", "args": [1, 2], "options": options}), 201))[
        "id"
    ]
    job = await json_of(await client.get(f"/jobs/{job_id}"), 200)
    assert (job["status"], job["priority"], job["max_attempts"]) == ("scheduled", "high", 5)
    assert job["due_at"] >= job["enqueued_at"] + 29
    nulls = {"task": "add", "args": [1, 2], "options": {"priority": None, "timeout": None}}
    assert (await json_of(await client.post("/jobs", json=nulls), 201))["id"]


BAD_ENQUEUES: list[tuple[Any, int, str]] = [
    ({"task": "nope"}, 422, "unknown task 'nope'"),
    ({}, 422, "task must be"),
    ({"task": 5}, 422, "task must be"),
    ({"task": "add", "args": {"x": 1}}, 422, "args must be an array"),
    ({"task": "add", "kwargs": [1]}, 422, "kwargs must be an object"),
    ({"task": "add", "args": [1]}, 422, "missing a required argument"),
    ({"task": "add", "args": [1, 2], "kwargs": {"z": 3}}, 422, "unexpected keyword"),
    ({"task": "add", "args": [1, 2], "extra": 1}, 422, "unknown field(s) in the body: extra"),
    ({"task": "add", "args": [1, 2], "options": {"prio": "high"}}, 422, "unknown field(s) in options: prio"),
    ({"task": "add", "args": [1, 2], "options": 3}, 422, "options must be an object"),
    ({"task": "add", "args": [1, 2], "options": {"priority": "urgent"}}, 422, "unknown priority 'urgent'"),
    ({"task": "add", "args": [1, 2], "options": {"delay": -1}}, 422, "options.delay"),
    ({"task": "add", "args": [1, 2], "options": {"delay": "soon"}}, 422, "options.delay"),
    ({"task": "add", "args": [1, 2], "options": {"delay": 1e300}}, 422, "options.delay"),
    ({"task": "add", "args": [1, 2], "options": {"max_attempts": 0}}, 422, "options.max_attempts"),
    ({"task": "add", "args": [1, 2], "options": {"max_attempts": 2.5}}, 422, "options.max_attempts"),
    ({"task": "add", "args": [1, 2], "options": {"max_attempts": True}}, 422, "options.max_attempts"),
    ({"task": "add", "args": [1, 2], "options": {"timeout": 0}}, 422, "options.timeout"),
    ({"task": "add", "args": [1, 2], "options": {"backoff_base": -1}}, 422, "options.backoff_base"),
    ({"task": "add", "args": [1, 2], "options": {"backoff_max": [1]}}, 422, "options.backoff_max"),
    ([1, 2], 400, "must be a JSON object, not an array"),
    ("add", 400, "must be a JSON object, not a string"),
]


async def test_bad_enqueue_requests_get_4xx_with_a_message(serve: Serve) -> None:
    client = await serve()
    for body, status, fragment in BAD_ENQUEUES:
        reply = await json_of(await client.post("/jobs", json=body), status)
        assert fragment in reply["error"], (body, reply)
    malformed = await client.post("/jobs", data=b'{"task": ', headers={"Content-Type": "application/json"})
    assert "malformed JSON" in (await json_of(malformed, 400))["error"]
    assert "JSON object" in (await json_of(await client.post("/jobs"), 400))["error"]
    form = await client.post("/jobs", data=b'{"task": "add"}', headers={"Content-Type": "text/plain"})
    assert "application/json" in (await json_of(form, 415))["error"]
    nan = await client.post(
        "/jobs", data=b'{"task": "add", "args": [NaN, 1]}', headers={"Content-Type": "application/json"}
    )
    await json_of(nan, 400)
    assert (await tasks_of(client).info()).stats.get("enqueued", 0) == 0  # nothing bad was written


async def test_body_over_the_limit_is_413(serve: Serve) -> None:
    client = await serve(max_body=200)
    assert (await json_of(await client.post("/jobs", json={"task": "echo", "args": ["x" * 50]}), 201))["id"]
    big = {"task": "echo", "args": ["x" * 300]}
    assert "200 bytes" in (await json_of(await client.post("/jobs", json=big), 413))["error"]

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the limit holds while reading
        yield b'{"task": "echo", "args": ["'
        for _ in range(10):
            yield b"y" * 100
        yield b'"]}'

    reply = await client.post("/jobs", data=chunked(), headers={"Content-Type": "application/json"})
    await json_of(reply, 413)


async def test_unknown_job_is_404(serve: Serve) -> None:
    client = await serve()
    assert "no job 'nope'" in (await json_of(await client.get("/jobs/nope"), 404))["error"]
    await json_of(await client.get("/jobs/" + "x" * 500), 404)
    await json_of(await client.post("/jobs/nope/retry"), 404)


# -- GET /jobs -----------------------------------------------------------------------------------------------


async def test_listing_is_newest_first_and_filters_by_status_task_and_limit(serve: Serve) -> None:
    client = await serve()
    ids = [
        (await json_of(await client.post("/jobs", json={"task": "add", "args": [i, i]}), 201))["id"] for i in range(3)
    ]
    later = {"task": "echo", "options": {"delay": 60}}
    scheduled = (await json_of(await client.post("/jobs", json=later), 201))["id"]

    listed = await json_of(await client.get("/jobs"), 200)
    assert [j["id"] for j in listed["jobs"]] == [scheduled, *reversed(ids)]
    assert listed["complete"] is True and listed["scanned_events"] == 4
    only_add = await json_of(await client.get("/jobs", params={"task": "add", "limit": "2"}), 200)
    assert [j["id"] for j in only_add["jobs"]] == [ids[2], ids[1]]
    only_scheduled = await json_of(await client.get("/jobs", params={"status": "scheduled"}), 200)
    assert [(j["id"], j["task"]) for j in only_scheduled["jobs"]] == [(scheduled, "echo")]
    assert (await json_of(await client.get("/jobs", params={"status": "dead"}), 200))["jobs"] == []
    for params in ({"status": "bogus"}, {"limit": "0"}, {"limit": "501"}, {"limit": "ten"}, {"task": "t" * 300}):
        await json_of(await client.get("/jobs", params=params), 422)


# -- retry, dead letters ---------------------------------------------------------------------------------------


async def test_dead_job_retried_through_the_api_runs_again_and_succeeds(
    serve: Serve, make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = register(make_tasks())
    rw = await start_worker(tasks, concurrency=2)
    client = await serve(tasks)
    job_id = await dead_job(client, rw, "flaky", "retry-me", 1)
    dead = await json_of(await client.get("/dead-letter"), 200)
    assert [e["job"] for e in dead["entries"]] == [job_id] and dead["total"] == 1
    assert dead["entries"][0]["reason"] == "RuntimeError: failure 1"

    assert await json_of(await client.post(f"/jobs/{job_id}/retry"), 200) == {"id": job_id, "status": "queued"}
    assert await tasks.job(job_id).result(timeout=5) == "ok"
    job = await json_of(await client.get(f"/jobs/{job_id}"), 200)
    assert (job["attempts"], job["error"], job["traceback"]) == (1, None, None)  # attempts were reset
    assert (await json_of(await client.get("/dead-letter"), 200))["total"] == 0
    assert "succeeded" in (await json_of(await client.post(f"/jobs/{job_id}/retry"), 409))["error"]


async def test_retry_moves_a_failed_job_out_of_its_backoff(serve: Serve) -> None:
    client = await serve()
    tasks = tasks_of(client)
    job_id = (await json_of(await client.post("/jobs", json={"task": "add", "args": [1, 2]}), 201))["id"]
    assert "queued" in (await json_of(await client.post(f"/jobs/{job_id}/retry"), 409))["error"]
    broker = await tasks._broker()
    # Make it look like an attempt failed and is backing off for an hour, as settle.lua leaves it.
    await broker.redis.hset(tasks._keys.job(job_id), mapping={"status": "failed", "attempts": 1, "error": "x"})
    await broker.redis.zadd(tasks._keys.scheduled, {job_id: 2**40})
    await json_of(await client.post(f"/jobs/{job_id}/retry"), 200)
    assert await broker.redis.zscore(tasks._keys.scheduled, job_id) is None
    job = await json_of(await client.get(f"/jobs/{job_id}"), 200)
    assert (job["status"], job["attempts"], job["error"]) == ("queued", 0, None)
    await json_of(await client.post(f"/jobs/{job_id}/retry", json={"x": 1}), 422)


async def test_reprocess_moves_dead_jobs_back_by_id_or_count(
    serve: Serve, make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = register(make_tasks())
    rw = await start_worker(tasks, concurrency=4)
    client = await serve(tasks)
    first = [await dead_job(client, rw, "flaky", f"k{i}", 1) for i in range(3)]
    listed = await json_of(await client.get("/dead-letter", params={"limit": "2"}), 200)
    assert [e["job"] for e in listed["entries"]] == [first[2], first[1]] and listed["total"] == 3

    moved = await json_of(await client.post("/dead-letter/reprocess", json={"ids": [first[1], "nope"]}), 200)
    assert moved["requeued"] == [first[1]]
    assert [s["id"] for s in moved["skipped"]] == ["nope"]
    moved = await json_of(await client.post("/dead-letter/reprocess", json={"max": 5}), 200)
    assert moved == {"requeued": [first[0], first[2]], "skipped": []}  # oldest first
    for job_id in first:
        assert await tasks.job(job_id).result(timeout=5) == "ok"
    assert (await json_of(await client.get("/dead-letter"), 200))["total"] == 0
    assert await json_of(await client.post("/dead-letter/reprocess", json={"max": 5}), 200) == {
        "requeued": [],
        "skipped": [],
    }


async def test_bad_dead_letter_requests_get_422(serve: Serve) -> None:
    client = await serve()
    for body in ({}, {"ids": [], "max": 1}, {"ids": []}, {"ids": "x"}, {"ids": [1]}, {"ids": [""]}, {"max": 0},
                 {"max": 1001}, {"max": "3"}, {"ids": ["a"], "extra": 1}):  # fmt: skip
        await json_of(await client.post("/dead-letter/reprocess", json=body), 422)
    for params in ({"limit": "0"}, {"limit": "1001"}, {"limit": "x"}):
        await json_of(await client.get("/dead-letter", params=params), 422)


# -- scaling and what is not built yet ---------------------------------------------------------------------------


async def test_scale_needs_an_attached_autoscaling_worker(
    serve: Serve, make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    alone = await serve()
    assert "no worker" in (await json_of(await alone.post("/scale", json={"concurrency": 2}), 409))["error"]
    fixed_tasks = register(make_tasks())
    fixed = await serve(fixed_tasks, worker=aqueue.Worker(fixed_tasks, concurrency=3))
    assert "fixed concurrency" in (await json_of(await fixed.post("/scale", json={"concurrency": 2}), 409))["error"]

    tasks = register(make_tasks())
    rw = await start_worker(tasks, min_concurrency=1, max_concurrency=5, scale_interval=60)
    client = await serve(tasks, worker=rw.worker)
    applied = await json_of(await client.post("/scale", json={"concurrency": 4}), 200)
    assert applied == {"worker": rw.worker.id, "concurrency": 4, "min_concurrency": 1, "max_concurrency": 5,
                       "override": 4}  # fmt: skip
    assert rw.worker.concurrency == 4
    assert (await json_of(await client.post("/scale", json={"release": True}), 200))["override"] is None
    assert rw.worker.scale_override is None
    for body in ({"concurrency": 6}, {"concurrency": 0}, {"concurrency": "2"}, {}, {"release": False},
                 {"concurrency": 2, "release": True}, {"concurrency": 2, "ttl": 0}, {"release": True, "ttl": 1},
                 {"concurrency": 2, "bogus": 1}):  # fmt: skip
        await json_of(await client.post("/scale", json=body), 422)


# -- auth, errors, mounting, OpenAPI ---------------------------------------------------------------------------

MUTATING = [
    ("POST", "/jobs", {"task": "add", "args": [1, 2]}),
    ("DELETE", "/jobs/abc", None),
    ("POST", "/jobs/abc/retry", None),
    ("POST", "/dead-letter/reprocess", {"max": 1}),
    ("POST", "/scale", {"release": True}),
    ("POST", "/pause", None),
    ("POST", "/resume", None),
    ("POST", "/cleanup", {"older_than": 60}),
]
READS = ["/status", "/metrics", "/jobs", "/jobs/abc", "/workflows/abc", "/dead-letter", "/openapi.json"]
MISSING = ("/jobs/abc", "/workflows/abc")  # reads of things that do not exist: 404


@pytest.mark.parametrize("protect_reads", [False, True])
async def test_token_guards_every_mutating_route_and_reads_when_asked(serve: Serve, protect_reads: bool) -> None:
    client = await serve(token=TOKEN, protect_reads=protect_reads)
    for method, path, body in MUTATING:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            resp = await client.request(method, path, json=body, headers=headers)
            assert resp.headers["WWW-Authenticate"] == "Bearer"
            await json_of(resp, 401)
        resp = await client.request(method, path, json=body, headers=AUTH)
        assert resp.status != 401, (method, path)
        query = await client.request(method, path, json=body, params={"token": TOKEN})
        assert query.status == 401, "REST routes take the token from the header only"
    for path in READS:
        resp = await client.get(path)
        assert resp.status == (401 if protect_reads else 404 if path in MISSING else 200), path
        assert (await client.get(path, headers=AUTH)).status in (200, 404)
    for path in ("/health/live", "/health/ready"):
        assert (await client.get(path)).status == 200, path


async def test_without_a_token_nothing_asks_for_one(serve: Serve) -> None:
    client = await serve(protect_reads=True)
    for method, path, body in MUTATING:
        assert (await client.request(method, path, json=body)).status != 401, (method, path)
    for path in READS:
        assert (await client.get(path)).status in (200, 404), path


async def test_routing_errors_are_json(serve: Serve) -> None:
    client = await serve()
    assert (await json_of(await client.get("/nowhere"), 404))["error"]
    resp = await client.put("/status")
    assert "not allowed" in (await json_of(resp, 405))["error"]
    assert "GET" in resp.headers["Allow"]
    assert "Access-Control-Allow-Origin" not in resp.headers  # CORS stays off
    options = await client.options(
        "/jobs", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "Access-Control-Allow-Origin" not in options.headers


async def test_mounted_under_a_prefix(make_tasks: MakeTasks) -> None:
    parent = web.Application()
    parent.add_subapp("/aqueue", create_app(register(make_tasks()), token=TOKEN))
    async with TestClient(TestServer(parent)) as client:
        assert (await json_of(await client.get("/aqueue/status"), 200))["queue"]
        job = await json_of(await client.post("/aqueue/jobs", json={"task": "add", "args": [1, 2]}, headers=AUTH), 201)
        assert (await json_of(await client.get(f"/aqueue/jobs/{job['id']}"), 200))["task"] == "add"
        await json_of(await client.post("/aqueue/jobs", json={"task": "add", "args": [1, 2]}), 401)
        doc = await json_of(await client.get("/aqueue/openapi.json"), 200)
        assert doc["servers"] == [{"url": "/aqueue"}]


async def test_openapi_documents_every_route_with_its_security(serve: Serve) -> None:
    client = await serve(token=TOKEN)
    doc = await json_of(await client.get("/openapi.json"), 200)
    assert doc["openapi"].startswith("3.")
    routes = {
        (r.resource.canonical, r.method.lower())
        for r in client.app.router.routes()  # type: ignore[union-attr]
        if r.method != "HEAD" and r.resource is not None and not r.resource.canonical.endswith((".js", ".css"))
    }
    documented = {(path, m) for path, item in doc["paths"].items() for m in item if m != "parameters"}
    assert routes == documented, routes ^ documented  # every API route, the page and /ws; not the page's assets
    assert doc["paths"]["/jobs"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in doc["paths"]["/status"]["get"]
    assert doc["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EnqueueRequest"
    }
    try:
        from openapi_spec_validator import validate
    except ImportError:
        return  # the structural checks above still ran
    validate(doc)  # pragma: no cover - only where the validator is installed


async def test_create_app_rejects_a_bad_configuration(make_tasks: MakeTasks) -> None:
    tasks = register(make_tasks())
    with pytest.raises(aqueue.ConfigurationError, match="same Tasks"):
        create_app(tasks, aqueue.Worker(make_tasks(), concurrency=1))
    with pytest.raises(aqueue.ConfigurationError, match="token"):
        create_app(tasks, token="")
    with pytest.raises(aqueue.ConfigurationError, match="max_body"):
        create_app(tasks, max_body=0)
