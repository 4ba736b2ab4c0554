"""Concurrency limits and fair groups: enforced in the claim script across workers, permits that come back with a
killed worker's lease, groups served in turns. Every test runs on memory://, the real Redis and the 3-master
cluster (the limits and groups live in the queue's keys)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import aqueue
from tests.helpers import REDIS_URL, MakeTasks, StartWorker, delete_queue, finished, wait_until

ON_CLUSTER = True


class Gauge:
    """Jobs running now and the most ever at once, as the task itself measures them."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.by: dict[str, int] = {}
        self.peak_by: dict[str, int] = {}

    def enter(self, key: str = "") -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)
        self.by[key] = self.by.get(key, 0) + 1
        self.peak_by[key] = max(self.peak_by.get(key, 0), self.by[key])

    def leave(self, key: str = "") -> None:
        self.now -= 1
        self.by[key] -= 1


async def test_concurrency_limit_holds_across_two_workers_and_drains_at_the_limits_rate(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    gauge = Gauge()
    a, b = make_tasks(), make_tasks()  # two registries: two connections, as two worker processes would have
    for tasks in (a, b):

        @tasks.task(name="call_partner", concurrency_limit=3)
        async def call_partner(i: int) -> int:
            gauge.enter()
            await asyncio.sleep(0.05)
            gauge.leave()
            return i

    await start_worker(a, concurrency=20)
    await start_worker(b, concurrency=20)
    task = a.get("call_partner")
    assert task is not None
    began = time.monotonic()
    jobs = await a.enqueue_many([task.spec(i) for i in range(60)])
    assert [await j.result(timeout=30) for j in jobs] == list(range(60))
    took = time.monotonic() - began
    assert gauge.peak == 3  # never more than the limit, and the limit was reached
    # 60 jobs of 50 ms, 3 at a time: 1 s at the limit's rate. Slower than 3x that would mean limited jobs waited
    # for something other than a permit (a slot they held, a poll).
    assert 1.0 <= took < 3.0, took
    info = await a.info()
    assert [(u.kind, u.running, u.limit, u.waiting) for u in info.limits] == [("task", 0, 3, 0)]


async def test_jobs_waiting_for_a_permit_hold_no_worker_slot(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()
    release = asyncio.Event()

    @tasks.task(concurrency_limit=1)
    async def gated() -> None:
        await release.wait()

    @tasks.task
    async def plain() -> str:
        return "ran"

    await start_worker(tasks, concurrency=2)
    held = await tasks.enqueue_many([gated.spec() for _ in range(10)])
    await wait_until(lambda: _usage(tasks, running=1, waiting=9), 5)
    # Nine jobs wait for the permit, the worker has two slots: the second is free for other work.
    assert await (await plain.enqueue()).result(timeout=5) == "ran"
    release.set()
    for job in held:
        await job.result(timeout=10)
    assert (await tasks.info()).limits[0].running == 0


async def _running(tasks: aqueue.Tasks, n: int) -> bool:
    info = await tasks.info()
    return bool(info.limits) and info.limits[0].running == n


async def _usage(tasks: aqueue.Tasks, *, running: int, waiting: int) -> bool:
    info = await tasks.info()
    return bool(info.limits) and (info.limits[0].running, info.limits[0].waiting) == (running, waiting)


async def test_cancelling_a_running_limited_job_gives_its_permit_to_a_waiting_one(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()

    @tasks.task(concurrency_limit=1)
    async def slow(i: int) -> int:
        await asyncio.sleep(30 if i == 0 else 0)
        return i

    await start_worker(tasks, concurrency=4)
    first = await slow.enqueue(0)
    await wait_until(lambda: _running(tasks, 1), 5)
    second = await slow.enqueue(1)
    parked = await slow.enqueue(2)
    assert await parked.cancel()  # waiting for a permit: cancelled at once
    assert await first.cancel()
    assert (await finished(first)).status == aqueue.JobStatus.CANCELLED
    assert await second.result(timeout=5) == 1
    assert (await parked.record()).status == aqueue.JobStatus.CANCELLED
    await wait_until(lambda: _running(tasks, 0), 5)


async def test_a_stopped_worker_gives_its_permits_back(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()
    ran: list[int] = []

    @tasks.task(concurrency_limit=2)
    async def long(i: int) -> int:
        ran.append(i)
        await asyncio.sleep(30 if len(ran) <= 2 else 0)
        return i

    rw = await start_worker(tasks, concurrency=5, shutdown_timeout=0.1)
    jobs = await tasks.enqueue_many([long.spec(i) for i in range(4)])
    await wait_until(lambda: _running(tasks, 2), 5)
    await rw.worker.stop()  # gives the two running jobs back: their permits too
    info = await tasks.info()
    assert (info.limits[0].running, info.active) == (0, 0)
    await start_worker(tasks, concurrency=5)
    assert sorted([await j.result(timeout=10) for j in jobs]) == [0, 1, 2, 3]


_KILLED_APP = """
import asyncio, sys
import aqueue

tasks = aqueue.Tasks(queue=sys.argv[1], redis_url=sys.argv[2], settings=aqueue.QueueSettings(lease=2.0))

@tasks.task(name="partner", concurrency_limit=2)
async def partner(i: int) -> str:
    await asyncio.sleep(600)
    return "killed worker"

asyncio.run(aqueue.Worker(tasks, concurrency=10).run())
"""


async def test_a_sigkilled_worker_holding_permits_gives_them_back_with_its_lease(
    queue_name: str, tmp_path: Path
) -> None:
    app = tmp_path / "limited_app.py"
    app.write_text(textwrap.dedent(_KILLED_APP))
    rescuer = aqueue.Tasks(queue=queue_name, redis_url=REDIS_URL, settings=aqueue.QueueSettings(lease=2.0))
    runs: list[int] = []

    @rescuer.task(name="partner", concurrency_limit=2)
    async def partner(i: int) -> str:
        runs.append(i)
        return "rescued"

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, str(app), queue_name, REDIS_URL], env=env)
    try:
        jobs = await rescuer.enqueue_many([partner.spec(i) for i in range(5)])
        # Two run, the other three wait for a permit (not in the killed worker's slots).
        await wait_until(lambda: _usage(rescuer, running=2, waiting=3), 15)
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        killed_at = time.monotonic()
        worker = aqueue.Worker(rescuer, concurrency=10, lease=2.0)
        run = asyncio.create_task(worker.run())
        assert [await j.result(timeout=10) for j in jobs] == ["rescued"] * 5
        assert time.monotonic() - killed_at <= 2.0 + 1.5  # the lease, then a take-back turn
        assert sorted(runs) == [0, 1, 2, 3, 4]  # each once here: the two taken back, the three that waited
        info = await rescuer.info()
        assert (info.limits[0].running, info.limits[0].waiting, info.active) == (0, 0, 0)
        # The worker is at full capacity afterwards: the permits are all free again.
        more = await rescuer.enqueue_many([partner.spec(i) for i in range(10, 14)])
        assert [await j.result(timeout=5) for j in more] == ["rescued"] * 4
        await worker.stop()
        await run
    finally:
        if proc.poll() is None:
            proc.kill()
        await rescuer.close()
        await delete_queue(REDIS_URL, queue_name)


async def test_a_small_group_enqueued_after_a_huge_one_is_served_within_its_first_turns(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()
    starts: list[str] = []

    @tasks.task
    async def work(group: str) -> None:
        starts.append(group)
        await asyncio.sleep(0.001)

    big = await tasks.enqueue_many([work.with_options(group="big").spec("big") for _ in range(10_000)])
    assert (await tasks.info()).grouped == 10_000
    await start_worker(tasks, concurrency=4)
    await wait_until(lambda: len(starts) >= 50, 10)
    arrived = len(starts)
    small = await tasks.enqueue_many([work.with_options(group="small").spec("small") for _ in range(10)])
    for job in small:
        await job.result(timeout=10)
    after = starts[arrived:]
    last_small = max(i for i, g in enumerate(after) if g == "small")
    # Turns alternate between the two groups: the ten small jobs start within about the first 20 starts (plus
    # the few big jobs already given their turn when the small group arrived).
    assert last_small < 20 + 8, after[: last_small + 1]
    assert (await tasks.info()).groups == 1  # only the big group still waits
    for job in big[-3:]:
        await job.result(timeout=60)


async def test_group_concurrency_caps_each_group_and_not_the_others(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks(aqueue.QueueSettings(group_concurrency=2))
    gauge = Gauge()

    @tasks.task
    async def work(group: str) -> None:
        gauge.enter(group)
        await asyncio.sleep(0.02)
        gauge.leave(group)

    await start_worker(tasks, concurrency=20)
    specs = [work.with_options(group=g).spec(g) for g in ("a", "b", "c") for _ in range(10)]
    for job in await tasks.enqueue_many(specs):
        await job.result(timeout=10)
    assert gauge.peak_by == {"a": 2, "b": 2, "c": 2}
    assert gauge.peak == 6  # the groups ran side by side


async def test_group_rate_limit_applies_to_each_group_on_its_own(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks(aqueue.QueueSettings(group_rate_limit="5/s"))
    started: dict[str, list[float]] = {}

    @tasks.task
    async def work(group: str) -> None:
        started.setdefault(group, []).append(time.monotonic())

    await start_worker(tasks, concurrency=10)
    specs = [work.with_options(group=g).spec(g) for g in ("a", "b") for _ in range(6)]
    for job in await tasks.enqueue_many(specs):
        await job.result(timeout=10)
    for group in ("a", "b"):
        times = started[group]
        # 6 starts at 5/s: the sixth no sooner than a second after the first; the groups do not share the rate.
        assert times[-1] - times[0] >= 0.9, (group, times)
        assert times[-1] - times[0] < 2.5, (group, times)


async def test_a_grouped_job_retries_cancels_and_keeps_its_record(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks(aqueue.QueueSettings(group_concurrency=1))
    attempts: list[int] = []

    @tasks.task(retry_delay=0.05)
    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("once")
        return "ok"

    job = await flaky.with_options(group="t-1").enqueue()
    waiting = await flaky.with_options(group="t-2").enqueue()
    assert await waiting.cancel()  # still in its group's list: cancelled at once, never run
    await start_worker(tasks, concurrency=4)
    assert await job.result(timeout=10) == "ok"
    rec = await job.record()
    assert rec.attempts == 2
    assert (await waiting.record()).status == aqueue.JobStatus.CANCELLED
    info = await tasks.info()
    assert (info.groups, info.grouped, info.active) == (0, 0, 0)
    assert len(attempts) == 2


async def test_jobs_routed_to_another_queue_run_there(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    orders = make_tasks()
    eu = make_tasks(queue=f"{orders.queue}-eu")

    @orders.task
    async def ship(order: str) -> str:
        return f"shipped {order}"

    eu.include(orders)
    await start_worker(eu, concurrency=2)
    job = await ship.with_options(queue=eu.queue).enqueue("o-1")
    assert await job.result(timeout=5) == "shipped o-1"
    jobs = await orders.enqueue_many([ship.spec("here"), ship.with_options(queue=eu.queue).spec("there")])
    assert await jobs[1].result(timeout=5) == "shipped there"
    assert (await orders.info()).queued["normal"] == 1  # the unrouted one waits on its own queue
    with pytest.raises(aqueue.ConfigurationError, match="workflow's queue"):
        orders.workflow().step(ship.with_options(queue=eu.queue).spec("y"))
    clash = make_tasks(queue=f"{orders.queue}-clash")

    @clash.task(name=ship.name)
    async def other(order: str) -> str:
        return order

    with pytest.raises(aqueue.ConfigurationError, match="already registered"):
        clash.include(orders)


async def test_a_group_over_rest_and_the_cli_and_bad_groups_refused(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from aqueue.web import create_app

    tasks = make_tasks()

    @tasks.task(name="echo")
    async def echo(x: int) -> int:
        return x

    client = TestClient(TestServer(create_app(tasks)))
    await client.start_server()
    try:
        resp = await client.post("/jobs", json={"task": "echo", "args": [1], "options": {"group": "tenant-9"}})
        assert resp.status == 201, await resp.text()
        job = tasks.job((await resp.json())["id"])
        bad = await client.post("/jobs", json={"task": "echo", "args": [1], "options": {"group": "two words"}})
        assert bad.status == 422 and "group" in (await bad.json())["error"]
    finally:
        await client.close()
    assert (await tasks.info()).grouped == 1
    await start_worker(tasks, concurrency=2)
    assert await job.result(timeout=5) == 1
    with pytest.raises(aqueue.ConfigurationError, match="group"):
        echo.with_options(group="")


async def test_grouped_jobs_share_the_slots_with_plain_ones_by_the_default_levels_weight(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()
    starts: list[str] = []

    @tasks.task
    async def work(kind: str) -> None:
        starts.append(kind)
        await asyncio.sleep(0.002)

    await tasks.enqueue_many([work.spec("plain") for _ in range(400)])
    await tasks.enqueue_many([work.with_options(group=f"g{i % 7}").spec("grouped") for i in range(400)])
    await start_worker(tasks, concurrency=4)
    await wait_until(lambda: len(starts) >= 300, 20)
    # The groups' level has the default level's weight (3 of 6 + 3 + 1 + 3): its share of the slots, never
    # starved by a flood of plain jobs (the empty high and low levels' shares go to the first level with work, as
    # between priority levels).
    share = starts[:300].count("grouped") / 300
    assert 0.16 <= share <= 0.30, share


def test_aqueue_enqueue_group_puts_the_job_in_its_group(queue_name: str) -> None:
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AQUEUE_")}
    cmd = [sys.executable, "-m", "aqueue", "enqueue", "examples.tenants:reports", "examples.tenants.render_report",
           "--args", '["t-1", 1]', "--group", "t-1", "--redis", REDIS_URL, "--queue", queue_name]  # fmt: skip
    try:
        done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        bad = subprocess.run([*cmd[:-4], "--group", "a b", *cmd[-4:]], cwd=root, env=env, capture_output=True,
                             text=True, timeout=30)  # fmt: skip
        assert bad.returncode == 2 and bad.stderr.startswith("aqueue: error: group must not contain whitespace")

        async def grouped() -> int:
            tasks = aqueue.Tasks(queue=queue_name, redis_url=REDIS_URL)
            try:
                return (await tasks.info()).grouped
            finally:
                await tasks.close()

        assert asyncio.run(grouped()) == 1
    finally:
        asyncio.run(delete_queue(REDIS_URL, queue_name))


_KILLED_GROUPS_APP = """
import asyncio, sys
import aqueue

settings = aqueue.QueueSettings(lease=2.0, group_concurrency=1)
tasks = aqueue.Tasks(queue=sys.argv[1], redis_url=sys.argv[2], settings=settings)

@tasks.task(name="render")
async def render(tenant: str, i: int) -> str:
    await asyncio.sleep(600)
    return "killed worker"

asyncio.run(aqueue.Worker(tasks, concurrency=10).run())
"""


async def test_a_sigkilled_worker_holding_grouped_jobs_leaves_no_group_stuck(queue_name: str, tmp_path: Path) -> None:
    """Two groups at ``group_concurrency=1``, each with its one permit held by a job of a worker that is then
    SIGKILLed: after the lease both jobs are taken back and run once more, every other job of both groups runs
    (one at a time per group), and nothing is left held or waiting."""
    app = tmp_path / "groups_app.py"
    app.write_text(textwrap.dedent(_KILLED_GROUPS_APP))
    settings = aqueue.QueueSettings(lease=2.0, group_concurrency=1)
    rescuer = aqueue.Tasks(queue=queue_name, redis_url=REDIS_URL, settings=settings)
    gauge = Gauge()
    runs: list[tuple[str, int]] = []

    @rescuer.task(name="render")
    async def render(tenant: str, i: int) -> str:
        gauge.enter(tenant)
        runs.append((tenant, i))
        await asyncio.sleep(0.01)
        gauge.leave(tenant)
        return "rescued"

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, str(app), queue_name, REDIS_URL], env=env)
    try:
        specs = [render.with_options(group=t).spec(t, i) for t in ("a", "b") for i in range(4)]
        jobs = await rescuer.enqueue_many(specs)
        await wait_until(lambda: _active(rescuer, 2), 15)  # one job of each group, held by the doomed worker
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        worker = aqueue.Worker(rescuer, concurrency=10, lease=2.0)
        run = asyncio.create_task(worker.run())
        assert [await j.result(timeout=15) for j in jobs] == ["rescued"] * 8
        assert sorted(runs) == sorted((t, i) for t in ("a", "b") for i in range(4))  # each once here
        assert gauge.peak_by == {"a": 1, "b": 1}
        info = await rescuer.info()
        assert (info.groups, info.grouped, info.active) == (0, 0, 0)
        assert all(u.running == 0 for u in info.limits)
        await worker.stop()
        await run
    finally:
        if proc.poll() is None:
            proc.kill()
        await rescuer.close()
        await delete_queue(REDIS_URL, queue_name)


async def _active(tasks: aqueue.Tasks, n: int) -> bool:
    return (await tasks.info()).active == n
