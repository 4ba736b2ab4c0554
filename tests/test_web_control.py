"""The web sub-app's job control: cancel, pause/resume, cleanup, workflows, and what /status says about them.

Every test runs on ``memory://`` and on the real Redis (the ``backend`` fixture behind ``make_tasks``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

import aqueue
from tests.helpers import Client, MakeTasks, Serve, StartWorker, json_of, wait_until

ON_CLUSTER = True

TOKEN = "control-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}


class Registry:
    """A Tasks with the tasks these tests use, and what they saw."""

    def __init__(self, tasks: aqueue.Tasks) -> None:
        self.tasks = tasks
        self.ran: list[str] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled: list[str] = []

        @tasks.task(name="note")
        async def note(label: str) -> str:
            self.ran.append(label)
            return label

        @tasks.task(name="hold", max_attempts=1)
        async def hold(label: str) -> str:
            self.started.set()
            try:
                await aqueue.progress(40, "waiting for the release")
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled.append(label)
                raise
            return label

        @tasks.task(name="boom", max_attempts=1)
        async def boom() -> None:
            raise RuntimeError("boom")

        self.note, self.hold, self.boom = note, hold, boom


@pytest.fixture
def app_tasks(make_tasks: MakeTasks) -> Callable[[], aqueue.Tasks]:
    """What ``serve()`` serves when a test names no registry: one with this module's tasks registered."""
    return lambda: Registry(make_tasks()).tasks


async def status_of(client: Client, job_id: str) -> str:
    return str((await json_of(await client.get(f"/jobs/{job_id}"), 200))["status"])


async def enqueue(client: Client, task: str, *args: Any, **options: Any) -> str:
    body: dict[str, Any] = {"task": task, "args": list(args)}
    if options:
        body["options"] = options
    return str((await json_of(await client.post("/jobs", json=body), 201))["id"])


async def reports_progress(client: Client, job_id: str) -> bool:
    """True once the ``hold`` job ``job_id`` has recorded its progress."""
    return bool((await json_of(await client.get(f"/jobs/{job_id}"), 200))["progress"] == 40)


# -- cancel ----------------------------------------------------------------------------------------------------


async def test_cancelled_queued_job_never_runs(serve: Serve, make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    reg = Registry(make_tasks())
    client = await serve(reg.tasks)
    doomed = await enqueue(client, "note", "doomed")
    later = await enqueue(client, "note", "later", delay=60)
    reply = await json_of(await client.delete(f"/jobs/{doomed}", json={"reason": "not wanted"}), 200)
    assert reply == {"id": doomed, "status": "cancelled"}
    assert (await json_of(await client.delete(f"/jobs/{later}"), 200))["status"] == "cancelled"  # no body at all

    job = await json_of(await client.get(f"/jobs/{doomed}"), 200)
    assert job["status"] == "cancelled" and job["error"] == "not wanted" and job["finished_at"] is not None
    assert (await json_of(await client.get(f"/jobs/{later}"), 200))["error"] == "cancelled"

    await start_worker(reg.tasks, concurrency=2)
    control = await enqueue(client, "note", "control")
    await wait_until(lambda: "control" in reg.ran)
    await asyncio.sleep(0.1)
    assert reg.ran == ["control"], "a cancelled job ran"
    assert await status_of(client, doomed) == "cancelled"
    assert await status_of(client, control) == "succeeded"

    conflict = await json_of(await client.delete(f"/jobs/{doomed}"), 409)
    assert "already finished" in conflict["error"] and "cancelled" in conflict["error"]
    conflict = await json_of(await client.delete(f"/jobs/{control}"), 409)
    assert "succeeded" in conflict["error"]
    assert "no job" in (await json_of(await client.delete("/jobs/nope"), 404))["error"]
    await json_of(await client.delete("/jobs/" + "x" * 300), 404)


async def test_cancelling_a_running_job_stops_it_within_a_second(
    serve: Serve, make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    reg = Registry(make_tasks())
    rw = await start_worker(reg.tasks, concurrency=2)
    client = await serve(reg.tasks, worker=rw.worker)
    job_id = await enqueue(client, "hold", "long")
    await asyncio.wait_for(reg.started.wait(), 5)

    await wait_until(lambda: reports_progress(client, job_id))
    view = await json_of(await client.get(f"/jobs/{job_id}"), 200)
    assert view["status"] == "active" and view["progress_message"] == "waiting for the release"
    assert view["cancel_requested"] is False
    listed = await json_of(await client.get("/jobs", params={"status": "active"}), 200)
    assert [(j["id"], j["progress"]) for j in listed["jobs"]] == [(job_id, 40)]

    began = time.monotonic()
    reply = await json_of(await client.delete(f"/jobs/{job_id}", json={"reason": "too slow"}), 200)
    assert reply == {"id": job_id, "status": "cancelling"}

    async def settled() -> bool:
        return await status_of(client, job_id) == "cancelled"

    await wait_until(settled, timeout=1.0)
    assert time.monotonic() - began < 1.0
    assert reg.cancelled == ["long"]
    view = await json_of(await client.get(f"/jobs/{job_id}"), 200)
    assert view["cancel_requested"] is True and view["finished_at"] is not None
    assert "succeeded" not in str(view["result"])
    assert "cancelled" in (await json_of(await client.delete(f"/jobs/{job_id}"), 409))["error"]


async def test_cancel_bodies_are_checked(serve: Serve) -> None:
    client = await serve()
    job_id = await enqueue(client, "note", "x", delay=60)
    for body, status, complaint in [
        ({"reason": ""}, 422, "reason must be a non-empty string"),
        ({"reason": 5}, 422, "reason must be a non-empty string"),
        ({"reason": "r" * 501}, 422, "at most 500"),
        ({"why": "typo"}, 422, "unknown field(s) in the body: why"),
    ]:
        assert complaint in (await json_of(await client.delete(f"/jobs/{job_id}", json=body), status))["error"]
    assert (
        "malformed JSON"
        in (await json_of(await client.delete(f"/jobs/{job_id}", data=b"{nope", headers=JSON), 400))["error"]
    )
    resp = await client.delete(f"/jobs/{job_id}", data=b'{"reason": "x"}', headers={"Content-Type": "text/plain"})
    assert "Content-Type" in (await json_of(resp, 415))["error"]
    resp = await client.delete(f"/jobs/{job_id}", data=b"[1]", headers=JSON)
    assert "JSON object" in (await json_of(resp, 400))["error"]
    assert await status_of(client, job_id) == "scheduled", "a refused request changed nothing"


# -- pause and resume ------------------------------------------------------------------------------------------


async def test_paused_queue_starts_nothing_until_resumed(
    serve: Serve, make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    reg = Registry(make_tasks())
    rw = await start_worker(reg.tasks, concurrency=2)
    client = await serve(reg.tasks, worker=rw.worker)
    before = time.time()
    paused = await json_of(await client.post("/pause", json={"by": "ops on call"}), 200)
    assert paused["paused"] is True and paused["changed"] is True and paused["by"] == "ops on call"
    assert before - 1 <= paused["at"] <= time.time() + 1
    again = await json_of(await client.post("/pause"), 200)  # no body: the pause in force is reported
    assert (again["paused"], again["changed"], again["by"]) == (True, False, "ops on call")

    job_id = await enqueue(client, "note", "while paused")
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        assert await status_of(client, job_id) == "queued"
        await asyncio.sleep(0.02)
    assert reg.ran == []
    shown = (await json_of(await client.get("/status"), 200))["paused"]
    assert shown == {"at": paused["at"], "by": "ops on call"}

    resumed = await json_of(await client.post("/resume", json={}), 200)
    assert resumed == {"paused": False, "changed": True, "at": None, "by": None}

    async def ran() -> bool:
        return await status_of(client, job_id) == "succeeded"

    await wait_until(ran)
    assert reg.ran == ["while paused"]
    assert (await json_of(await client.post("/resume"), 200))["changed"] is False
    assert (await json_of(await client.get("/status"), 200))["paused"] is None


async def test_pause_bodies_are_checked(serve: Serve) -> None:
    client = await serve()
    for path, body, complaint in [
        ("/pause", {"by": ""}, "by must be a non-empty string"),
        ("/pause", {"by": ["me"]}, "by must be a non-empty string"),
        ("/pause", {"who": "me"}, "unknown field(s) in the body: who"),
        ("/resume", {"by": "me"}, "unknown field(s) in the body: by"),
    ]:
        assert complaint in (await json_of(await client.post(path, json=body), 422))["error"]
    assert "malformed JSON" in (await json_of(await client.post("/pause", data=b"{", headers=JSON), 400))["error"]
    assert (await json_of(await client.get("/status"), 200))["paused"] is None, "a refused pause paused"
    pause = await json_of(await client.post("/pause"), 200)
    assert pause["by"] == "web"


# -- cleanup ---------------------------------------------------------------------------------------------------


async def test_cleanup_deletes_finished_records(serve: Serve, make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    reg = Registry(make_tasks())
    rw = await start_worker(reg.tasks, concurrency=2)
    client = await serve(reg.tasks, worker=rw.worker)
    done = [await enqueue(client, "note", f"n{i}") for i in range(3)]
    dead = await enqueue(client, "boom")
    waiting = await enqueue(client, "note", "later", delay=60)

    async def finished() -> bool:
        states = [await status_of(client, j) for j in [*done, dead]]
        return states == ["succeeded"] * 3 + ["dead"]

    await wait_until(finished)
    # Nothing finished an hour ago yet.
    assert (await json_of(await client.post("/cleanup", json={"older_than": 3600}), 200))["deleted"] == 0
    reply = await json_of(await client.post("/cleanup", json={"statuses": ["succeeded"]}), 200)
    assert reply == {"deleted": 3, "older_than": 0.0, "statuses": ["succeeded"]}
    for job_id in done:
        assert "no job" in (await json_of(await client.get(f"/jobs/{job_id}"), 404))["error"]
    assert await status_of(client, dead) == "dead"
    assert (await json_of(await client.post("/cleanup"), 200))["deleted"] == 1  # no body: every finished status
    await json_of(await client.get(f"/jobs/{dead}"), 404)
    assert (await json_of(await client.get("/dead-letter"), 200))["total"] == 0
    assert await status_of(client, waiting) == "scheduled", "cleanup never touches unfinished jobs"


async def test_cleanup_bodies_are_checked(serve: Serve) -> None:
    client = await serve()
    for body, complaint in [
        ({"older_than": -1}, "older_than must be a number at least 0"),
        ({"older_than": "1h"}, "older_than must be a number"),
        ({"older_than": True}, "older_than must be a number"),
        ({"statuses": []}, "statuses must be a non-empty array"),
        ({"statuses": "dead"}, "statuses must be a non-empty array"),
        (
            {"statuses": ["queued"]},
            "may only name finished statuses (succeeded, dead, cancelled, expired), got 'queued'",
        ),
        ({"statuses": ["dead", 3]}, "got 3"),
        ({"older_than": 1, "status": ["dead"]}, "unknown field(s) in the body: status"),
    ]:
        assert complaint in (await json_of(await client.post("/cleanup", json=body), 422))["error"], body
    assert (
        "malformed JSON" in (await json_of(await client.post("/cleanup", data=b"{older", headers=JSON), 400))["error"]
    )
    reply = await json_of(await client.post("/cleanup", json={"statuses": ["dead", "dead"], "older_than": 5}), 200)
    assert reply == {"deleted": 0, "older_than": 5.0, "statuses": ["dead"]}


# -- workflows -------------------------------------------------------------------------------------------------


async def test_workflow_view_shows_each_steps_job_and_state(
    serve: Serve, make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    reg = Registry(make_tasks())
    client = await serve(reg.tasks)
    wf = reg.tasks.workflow("nightly")
    first = wf.step(reg.note.spec("first"), name="first")
    failing = first.then(reg.boom.spec(), name="failing")
    failing.then(reg.note.spec("never"), name="never")
    failing.on_failure(reg.note.spec("alert"), name="alert")
    handle = await wf.enqueue()

    view = await json_of(await client.get(f"/workflows/{handle.id}"), 200)
    assert (view["id"], view["name"], view["finished"], view["left"]) == (handle.id, "nightly", False, 4)
    steps = {s["name"]: s for s in view["steps"]}
    assert list(steps) == ["first", "failing", "never", "alert"]
    assert {n: s["job"] for n, s in steps.items()} == {n: j.id for n, j in handle.jobs.items()}
    assert steps["first"]["status"] == "queued" and steps["never"]["status"] == "waiting"
    assert steps["failing"]["after"] == ["first"] and steps["never"]["after"] == ["failing"]
    assert steps["alert"]["on_failure_of"] == ["failing"] and steps["alert"]["after"] == []
    assert view["counts"] == {"queued": 1, "waiting": 3}
    job = await json_of(await client.get(f"/jobs/{handle.jobs['failing'].id}"), 200)
    assert (job["workflow"], job["step"]) == (handle.id, "failing")

    await start_worker(reg.tasks, concurrency=2)
    await handle.wait(timeout=5)

    async def finished() -> bool:
        return bool((await json_of(await client.get(f"/workflows/{handle.id}"), 200))["finished"])

    await wait_until(finished)
    view = await json_of(await client.get(f"/workflows/{handle.id}"), 200)
    steps = {s["name"]: s for s in view["steps"]}
    assert {n: s["status"] for n, s in steps.items()} == {
        "first": "succeeded",
        "failing": "dead",
        "never": "cancelled",
        "alert": "succeeded",
    }
    assert "boom" in steps["failing"]["error"] and steps["failing"]["attempts"] == 1
    assert view["left"] == 0 and view["finished_at"] >= view["created_at"]
    assert "no workflow" in (await json_of(await client.get("/workflows/nope"), 404))["error"]


# -- status: pause and cron ------------------------------------------------------------------------------------


async def test_status_shows_pause_and_cron_jobs(serve: Serve, make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    reg = Registry(make_tasks())

    @reg.tasks.cron(every=3600, name="hourly")
    async def hourly() -> None:
        pass

    client = await serve(reg.tasks)
    status = await json_of(await client.get("/status"), 200)
    assert status["paused"] is None
    assert status["cron"] == [
        {
            "name": "hourly",
            "task": "hourly",
            "schedule": "every 3600s",
            "next_run": None,
            "last_run": None,
            "last_job": None,
            "registered": True,
        }
    ]
    await start_worker(reg.tasks, concurrency=1)

    async def recorded() -> bool:
        return (await json_of(await client.get("/status"), 200))["cron"][0]["next_run"] is not None

    await wait_until(recorded)
    await json_of(await client.post("/pause", json={"by": "tester"}), 200)
    status = await json_of(await client.get("/status"), 200)
    (cron,) = status["cron"]
    now = time.time()
    assert now < cron["next_run"] <= now + 3600 and cron["next_run"] % 3600 == 0
    assert cron["last_run"] is None and cron["last_job"] is None
    assert status["paused"]["by"] == "tester" and abs(status["paused"]["at"] - now) < 5

    # An app whose Tasks does not register the cron job still lists what the workers recorded.
    other = make_tasks()
    listed = (await json_of(await (await serve(other)).get("/status"), 200))["cron"]
    assert [(c["name"], c["task"], c["schedule"], c["registered"]) for c in listed] == [
        ("hourly", "hourly", "every 3600s", False)
    ]
    assert listed[0]["next_run"] == cron["next_run"]


# -- the live feed ---------------------------------------------------------------------------------------------


def test_every_core_event_type_is_a_valid_filter() -> None:
    from multidict import MultiDict

    from aqueue._core.events import EVENT_TYPES
    from aqueue.web.ws import parse_query

    query = parse_query(MultiDict({"types": ",".join(sorted(EVENT_TYPES))}))
    assert query.filter.types == EVENT_TYPES


async def test_control_events_reach_websocket_clients_that_ask_for_them(
    serve: Serve, make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    reg = Registry(make_tasks())
    rw = await start_worker(reg.tasks, concurrency=2)
    client = await serve(reg.tasks, worker=rw.worker)
    wanted = "paused,resumed,progress,cancelling,cancelled,cleanup,workflow_started,workflow_finished"
    async with client.ws_connect("/ws", params={"types": wanted}) as ws:
        snapshot = await asyncio.wait_for(ws.receive_json(), 5)
        assert snapshot["type"] == "snapshot" and snapshot["status"]["paused"] is None
        assert snapshot["status"]["cron"] == []
        await json_of(await client.post("/pause", json={"by": "feed test"}), 200)
        await json_of(await client.post("/resume"), 200)
        job_id = await enqueue(client, "hold", "watched")
        await asyncio.wait_for(reg.started.wait(), 5)
        await wait_until(lambda: reports_progress(client, job_id))
        wf = reg.tasks.workflow("fed")
        wf.step(reg.note.spec("step"))
        handle = await wf.enqueue()
        await handle.wait(timeout=5)
        await json_of(await client.delete(f"/jobs/{job_id}"), 200)
        seen: list[dict[str, str]] = []

        async def read_until(kind: str) -> None:
            async with asyncio.timeout(5):
                while not any(e["type"] == kind for e in seen):
                    message = await ws.receive_json()
                    if message["type"] == "event":
                        seen.append(message["event"])

        await read_until("cancelled")
        assert (await json_of(await client.post("/cleanup", json={"statuses": ["cancelled"]}), 200))["deleted"] == 1
        # On memory:// the events reader sleeps until the next write that signals it, and the cleanup script's
        # write does not (Broker.cleanup has no _bump): another write wakes it. Real Redis needs no nudge.
        await enqueue(client, "note", "nudge")
        await read_until("cleanup")
    types = [e["type"] for e in seen]
    assert set(types) == set(wanted.split(",")), types
    assert types.index("paused") < types.index("resumed") < types.index("cancelling") < types.index("cancelled")
    paused = next(e for e in seen if e["type"] == "paused")
    assert orjson.loads(paused["info"])["by"] == "feed test"
    progress = next(e for e in seen if e["type"] == "progress")
    assert (progress["job"], float(progress["progress"]), progress["message"]) == (
        job_id,
        40.0,
        "waiting for the release",
    )
    assert next(e for e in seen if e["type"] == "workflow_finished")["workflow"] == handle.id


# -- auth and the OpenAPI document -----------------------------------------------------------------------------

CONTROL = [
    ("DELETE", "/jobs/abc", {"reason": "r"}),
    ("DELETE", "/jobs/abc", None),
    ("POST", "/pause", {"by": "me"}),
    ("POST", "/pause", None),
    ("POST", "/resume", None),
    ("POST", "/cleanup", {"older_than": 60}),
    ("POST", "/cleanup", None),
]


@pytest.mark.parametrize("protect_reads", [False, True])
async def test_every_control_route_needs_the_token(serve: Serve, protect_reads: bool) -> None:
    client = await serve(token=TOKEN, protect_reads=protect_reads)
    for method, path, body in CONTROL:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            resp = await client.request(method, path, json=body, headers=headers)
            assert resp.headers["WWW-Authenticate"] == "Bearer"
            assert "bearer token" in (await json_of(resp, 401))["error"], (method, path)
        resp = await client.request(method, path, json=body, params={"token": TOKEN})
        await json_of(resp, 401)
    assert (await json_of(await client.get("/status", headers=AUTH), 200))["paused"] is None, "a 401 paused"
    for method, path, body in CONTROL:
        resp = await client.request(method, path, json=body, headers=AUTH)
        assert resp.status in (200, 404), (method, path, await resp.text())
    workflow = await client.get("/workflows/abc")
    assert workflow.status == (401 if protect_reads else 404)
    await json_of(await client.get("/workflows/abc", headers=AUTH), 404)


async def test_openapi_describes_the_control_routes(serve: Serve) -> None:
    client = await serve(token=TOKEN)
    doc = await json_of(await client.get("/openapi.json"), 200)
    paths, schemas = doc["paths"], doc["components"]["schemas"]
    body_errors = ("400", "413", "415", "422")
    for path, method, body, codes in [
        ("/jobs/{id}", "delete", "CancelRequest", {"200", "401", "403", "404", "409", *body_errors, "503"}),
        ("/pause", "post", "PauseRequest", {"200", "401", "403", "400", "413", "415", "422", "503"}),
        ("/resume", "post", "Empty", {"200", "401", "403", "400", "413", "415", "422", "503"}),
        ("/cleanup", "post", "CleanupRequest", {"200", "401", "403", "400", "413", "415", "422", "503"}),
    ]:
        op = paths[path][method]
        assert op["security"] == [{"bearer": []}], path
        assert set(op["responses"]) == codes, path
        assert op["requestBody"]["required"] is False
        assert op["requestBody"]["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{body}"}
    assert "security" not in paths["/workflows/{id}"]["get"]
    assert set(paths["/workflows/{id}"]["get"]["responses"]) == {"200", "404", "503"}
    assert not [
        p for p, item in paths.items() for m, op in item.items() if m != "parameters" and "501" in op["responses"]
    ]
    assert schemas["CleanupRequest"]["properties"]["statuses"]["items"]["enum"] == [
        "succeeded",
        "dead",
        "cancelled",
        "expired",
    ]
    for name in ("paused", "cron"):
        assert name in schemas["Status"]["required"]
    for name in ("progress", "progress_message", "workflow", "step", "expires_at"):
        assert name in schemas["Job"]["properties"]
