"""One worker for several queues (``Worker([orders, emails])``): one lane per queue sharing one budget of slots by
weight; pause, stop and recovery per queue; the CLI's several targets. On memory://, the real Redis, and the
3-master cluster with the two queues on different masters."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

import aqueue
from aqueue._worker.budget import Budget
from aqueue.cli.main import main
from tests.helpers import REDIS_URL, MakeTasks, RunningWorker, delete_queue, wait_until


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """``main()`` run in this process sets up logging (a stderr handler on the root logger, its level): undo it,
    or later tests log to a closed capture stream at the wrong level."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


ROOT = Path(__file__).resolve().parent.parent


def two_queues(make_tasks: MakeTasks, queue_name: str) -> tuple[aqueue.Tasks, aqueue.Tasks]:
    return make_tasks(queue=f"{queue_name}-orders"), make_tasks(queue=f"{queue_name}-emails")


def recorder(tasks: aqueue.Tasks, starts: list[str], seconds: float = 0.0) -> aqueue.Task[[int], str]:
    """A task ``work(n)`` that notes its queue in ``starts`` when it starts, then sleeps ``seconds``."""

    @tasks.task(name="work")
    async def work(n: int) -> str:
        starts.append(tasks.queue)
        await asyncio.sleep(seconds)
        return f"{tasks.queue}:{n}"

    return work


def blocker(tasks: aqueue.Tasks, release: asyncio.Event) -> aqueue.Task[[int], int]:
    """A task ``hold(n)`` that runs until ``release`` is set."""

    @tasks.task(name="hold")
    async def hold(n: int) -> int:
        await release.wait()
        return n

    return hold


async def test_one_worker_drains_two_queues(make_tasks: MakeTasks, queue_name: str) -> None:
    orders, emails = two_queues(make_tasks, queue_name)
    starts: list[str] = []
    works = [recorder(t, starts) for t in (orders, emails)]
    jobs = [await t.enqueue_many([w.spec(i) for i in range(150)]) for t, w in zip((orders, emails), works, strict=True)]
    worker = aqueue.Worker([orders, emails], concurrency=10)
    await worker.run(burst=True, handle_signals=False)
    for t, js in zip((orders, emails), jobs, strict=True):
        assert [await j.result(timeout=5) for j in js] == [f"{t.queue}:{i}" for i in range(150)]
    assert worker.processed == 300
    assert worker.lane(orders.queue).processed == worker.lane(emails.queue).processed == 150
    assert (await orders.info()).stats["succeeded"] == (await emails.info()).stats["succeeded"] == 150


async def test_weights_share_the_slots_while_both_queues_are_backlogged(make_tasks: MakeTasks, queue_name: str) -> None:
    orders, emails = two_queues(make_tasks, queue_name)
    starts: list[str] = []
    for t in (orders, emails):
        work = recorder(t, starts, 0.002)
        await t.enqueue_many([work.spec(i) for i in range(1000)])
    worker = aqueue.Worker([orders, emails], concurrency=20, weights={orders.queue: 3})
    assert worker.weights == {orders.queue: 3, emails.queue: 1}
    await worker.run(burst=True, handle_signals=False)
    assert len(starts) == 2000
    assert 675 <= starts[:1000].count(orders.queue) <= 825  # 3:1 → 750 ± 10 %


async def test_a_quiet_queue_starts_its_job_at_once_while_the_other_is_flooded(
    make_tasks: MakeTasks, queue_name: str
) -> None:
    orders, emails = two_queues(make_tasks, queue_name)
    release = asyncio.Event()
    hold = blocker(orders, release)
    starts: list[str] = []
    work = recorder(emails, starts)
    await orders.enqueue_many([hold.spec(i) for i in range(100)])
    worker = aqueue.Worker([orders, emails], concurrency=10)
    running = RunningWorker(worker)
    try:
        flooded = worker.lane(orders.queue)
        await wait_until(lambda: flooded.busy == 10)  # the flood holds every slot: emails had nothing to do
        job = await work.enqueue(1)
        assert await job.result(timeout=5) == f"{emails.queue}:1"
        assert flooded.busy == 10 and flooded.processed == 0  # no flooded job had to end first
    finally:
        release.set()
        await running.stop()


async def test_pausing_one_queue_leaves_the_other_running(make_tasks: MakeTasks, queue_name: str) -> None:
    orders, emails = two_queues(make_tasks, queue_name)
    starts: list[str] = []
    works = [recorder(t, starts) for t in (orders, emails)]
    worker = aqueue.Worker([orders, emails], concurrency=10)
    running = RunningWorker(worker)
    try:
        await orders.pause()
        await wait_until(lambda: worker.lane(orders.queue).paused)
        assert not worker.paused  # only when every queue is
        paused_job = await works[0].enqueue(1)
        jobs = [await works[1].enqueue(i) for i in range(20)]
        assert [await j.result(timeout=5) for j in jobs] == [f"{emails.queue}:{i}" for i in range(20)]
        assert await paused_job.status() is aqueue.JobStatus.QUEUED
        await emails.pause()
        await wait_until(lambda: worker.paused)
        await orders.resume()
        assert await paused_job.result(timeout=5) == f"{orders.queue}:1"
    finally:
        await running.stop()


async def test_graceful_stop_gives_back_the_jobs_of_both_queues(make_tasks: MakeTasks, queue_name: str) -> None:
    orders, emails = two_queues(make_tasks, queue_name)
    release = asyncio.Event()
    holds = [blocker(t, release) for t in (orders, emails)]
    worker = aqueue.Worker([orders, emails], concurrency=6, shutdown_timeout=0.2)
    running = RunningWorker(worker)
    jobs = [await h.enqueue(i) for h in holds for i in range(3)]
    await wait_until(lambda: worker.running_jobs == 6)
    assert worker.lane(orders.queue).busy == worker.lane(emails.queue).busy == 3
    await running.stop()
    assert [await j.status() for j in jobs] == [aqueue.JobStatus.QUEUED] * 6
    for t in (orders, emails):  # given back, the interrupted attempt uncounted, and the worker gone from each queue
        info = await t.info()
        assert info.workers == [] and info.active == 0
    assert {(await j.record()).attempts for j in jobs} == {0}
    release.set()
    again = aqueue.Worker([orders, emails], concurrency=6)
    await again.run(burst=True, handle_signals=False)
    assert [await j.result(timeout=5) for j in jobs] == [0, 1, 2, 0, 1, 2]


async def test_closing_any_registry_stops_the_whole_worker(make_tasks: MakeTasks, queue_name: str) -> None:
    orders, emails = two_queues(make_tasks, queue_name)
    worker = aqueue.Worker([orders, emails], concurrency=4)
    running = RunningWorker(worker)
    await wait_until(lambda: worker.is_running and all(lane.is_running for lane in worker._lanes))
    await emails.close()
    await asyncio.wait_for(running.task, 10)
    assert not worker.is_running
    assert not any(lane.is_running for lane in worker._lanes)


async def test_each_lane_enters_its_own_lifespan_once(make_tasks: MakeTasks, queue_name: str) -> None:
    orders, emails = two_queues(make_tasks, queue_name)
    entered: list[str] = []
    for t in (orders, emails):

        def lifespan_of(t: aqueue.Tasks) -> Callable[[], AsyncIterator[dict[str, str]]]:
            async def lifespan() -> AsyncIterator[dict[str, str]]:
                entered.append(t.queue)
                yield {}

            return lifespan

        t.lifespan(lifespan_of(t))
        recorder(t, [])
    worker = aqueue.Worker([orders, emails])
    await worker.run(burst=True, handle_signals=False)
    assert sorted(entered) == sorted([orders.queue, emails.queue])


async def test_a_lane_that_fails_to_start_stops_the_others(make_tasks: MakeTasks, queue_name: str) -> None:
    orders, emails = two_queues(make_tasks, queue_name)
    release = asyncio.Event()
    hold = blocker(orders, release)
    job = await hold.enqueue(1)

    @emails.lifespan
    async def broken() -> AsyncIterator[None]:
        await wait_until(lambda: worker.lane(orders.queue).busy == 1)  # orders is running a job by then
        raise RuntimeError("no SMTP server")
        yield

    worker = aqueue.Worker([orders, emails], concurrency=4, shutdown_timeout=0.1)
    with pytest.raises(aqueue.LifespanError):
        await asyncio.wait_for(worker.run(handle_signals=False), 10)
    assert not worker.is_running and not worker.lane(orders.queue).is_running
    assert await job.status() is aqueue.JobStatus.QUEUED  # orders stopped too, and gave its job back


async def test_scale_to_sets_the_shared_budget(make_tasks: MakeTasks, queue_name: str) -> None:
    orders, emails = two_queues(make_tasks, queue_name)
    worker = aqueue.Worker([orders, emails], min_concurrency=2, max_concurrency=40)
    assert (worker.min_concurrency, worker.max_concurrency) == (2, 40) and worker.autoscaling
    await worker.scale_to(8)
    assert worker.scale_override == 8 and worker.concurrency == 8
    assert [worker.lane(t.queue).concurrency for t in (orders, emails)] == [8, 8]
    worker.release_scale()
    assert worker.scale_override is None


@pytest.mark.no_redis
def test_the_budget_shares_by_weight_among_the_queues_with_work() -> None:
    budget = Budget(100, [3, 1])
    busy = [0, 0]
    woken: list[int] = []
    for lane in (0, 1):
        budget.join(lane, functools.partial(busy.__getitem__, lane), functools.partial(woken.append, lane))
    assert [budget.claimable(0, 100), budget.claimable(1, 100)] == [75, 25]
    busy[:] = [75, 25]
    assert [budget.claimable(0, 100), budget.claimable(1, 100)] == [0, 0]
    budget.competing(1, False)  # emails found its queue empty: orders may use its share, and is woken to
    assert woken == [0, 1] and budget.idle(1)
    busy[:] = [75, 0]
    assert budget.claimable(0, 100) == 25 and budget.claimable(0, 10) == 10
    busy[:] = [100, 1]  # emails took a job that arrived although the budget was spent
    budget.competing(1, True)
    assert [budget.claimable(0, 100), budget.claimable(1, 100)] == [-25, -1]
    busy[:] = [70, 1]  # orders' jobs end: it claims nothing until below its share; the freed slots go to emails
    assert [budget.claimable(0, 100), budget.claimable(1, 100)] == [5, 24]
    budget.scale_to(40, None)
    assert budget.total == budget.override == 40 and budget.claimable(0, 100) == -40  # share 30
    budget.release()
    assert budget.total == 100 and budget.override is None


# -- the constructor's checks ------------------------------------------------------------------------------------


@pytest.mark.no_redis
def test_the_public_surface_of_one_queue_and_of_several() -> None:
    url = f"memory://{uuid.uuid4().hex[:8]}"
    orders, emails = aqueue.Tasks(queue="orders", redis_url=url), aqueue.Tasks(queue="emails", redis_url=url)
    one = aqueue.Worker(orders)
    assert one.registries == (orders,) and one.tasks is orders and one.lane("orders") is one
    assert one.weights == {"orders": 1}
    both = aqueue.Worker([orders, emails], concurrency=7, name="w1", weights={"emails": 2})
    assert both.registries == (orders, emails) and both.tasks is orders
    assert both.weights == {"orders": 1, "emails": 2} and both.concurrency == 7
    lane = both.lane("emails")
    assert lane.tasks is emails and lane.id == both.id == "w1" and lane.lane("emails") is lane
    assert "queues=('orders', 'emails')" in repr(both)
    with pytest.raises(KeyError, match="does not run queue 'sms'"):
        both.lane("sms")
    assert aqueue.Worker([orders]).lane("orders").tasks is orders  # a one-element sequence: one queue


@pytest.mark.no_redis
@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda o, e: aqueue.Worker([o, aqueue.Tasks(queue="orders")]), "'orders' given twice"),
        (lambda o, e: aqueue.Worker([]), "at least one Tasks"),
        (lambda o, e: aqueue.Worker([o, "emails"]), "got a str"),  # type: ignore[list-item]
        (lambda o, e: aqueue.Worker([o, e], weights={"sms": 2}), "does not run: 'sms'"),
        (lambda o, e: aqueue.Worker([o, e], weights={"orders": 0}), "integer >= 1, got 0"),
        (lambda o, e: aqueue.Worker([o, e], weights={"orders": 1.5}), "got 1.5"),  # type: ignore[dict-item]
    ],
)
def test_invalid_queues_or_weights_are_refused(build: Callable[..., Any], message: str) -> None:
    orders, emails = aqueue.Tasks(queue="orders"), aqueue.Tasks(queue="emails")
    with pytest.raises(aqueue.ConfigurationError, match=message):
        build(orders, emails)


async def test_max_jobs_is_for_a_worker_of_one_queue() -> None:
    url = f"memory://{uuid.uuid4().hex[:8]}"
    worker = aqueue.Worker([aqueue.Tasks(queue="a", redis_url=url), aqueue.Tasks(queue="b", redis_url=url)])
    with pytest.raises(aqueue.ConfigurationError, match="max_jobs applies to a worker of one queue"):
        await worker.run(burst=True, max_jobs=3)


# -- Redis Cluster: two queues on two masters --------------------------------------------------------------------


async def test_one_worker_drains_two_queues_on_different_cluster_masters(redis_cluster: str) -> None:
    ports = [int(node.rsplit(":", 1)[1]) for node in redis_cluster.split("://", 1)[1].split(",")]
    node = aioredis.Redis(port=ports[0], decode_responses=True)
    masters: dict[int, str] = {}
    try:
        while len(masters) < 2:  # two queue names whose slots are on different masters
            name = f"mq-{uuid.uuid4().hex[:8]}"
            key = f"aqueue:{{{name}}}:stream:normal"
            slot = int(await node.execute_command("CLUSTER", "KEYSLOT", key))  # type: ignore[no-untyped-call]
            slots = await node.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
            for first, last, master, *_ in slots:
                if int(first) <= slot <= int(last):
                    masters.setdefault(int(master[1]), name)
    finally:
        await node.aclose()
    orders, emails = (aqueue.Tasks(queue=q, redis_url=redis_cluster) for q in masters.values())
    try:
        starts: list[str] = []
        works = [recorder(t, starts) for t in (orders, emails)]
        jobs = [
            await t.enqueue_many([w.spec(i) for i in range(200)]) for t, w in zip((orders, emails), works, strict=True)
        ]
        worker = aqueue.Worker([orders, emails], concurrency=16, weights={orders.queue: 3})
        await worker.run(burst=True, handle_signals=False)
        for t, js in zip((orders, emails), jobs, strict=True):
            assert [await j.result(timeout=10) for j in js] == [f"{t.queue}:{i}" for i in range(200)]
        assert (await orders.info()).stats["succeeded"] == (await emails.info()).stats["succeeded"] == 200
    finally:
        for t in (orders, emails):
            await t.close()
            await delete_queue(redis_cluster, t.queue)


# -- the CLI -----------------------------------------------------------------------------------------------------

APP = """
import aqueue

orders = aqueue.Tasks(queue="{q}-orders", redis_url="redis://127.0.0.1:6379/0")
emails = aqueue.Tasks(queue="{q}-emails", redis_url="redis://127.0.0.1:6379/0")

@orders.task(name="work")
async def order(n: int) -> str:
    return f"order {{n}}"

@emails.task(name="work")
async def email(n: int) -> str:
    return f"email {{n}}"
"""


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module ``mq_app_<id>`` with registries ``orders`` and ``emails`` on the real Redis; returns its name."""
    name = f"mq_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(APP.format(q=name)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


@pytest.fixture
async def registries(app: str) -> AsyncIterator[list[aqueue.Tasks]]:
    """Producer-side registries of the app's two queues, with its task names; their queues deleted afterwards."""
    made = [aqueue.Tasks(queue=f"{app}-{q}", redis_url=REDIS_URL) for q in ("orders", "emails")]
    for t in made:
        recorder(t, [])
    yield made
    for t in made:
        await t.close()
        await delete_queue(REDIS_URL, t.queue)


async def test_the_cli_runs_one_worker_for_several_targets(app: str, registries: list[aqueue.Tasks]) -> None:
    jobs = [await t.enqueue(_work(t).spec(i)) for t in registries for i in range(5)]
    code = await asyncio.to_thread(
        main, ["worker", f"{app}:orders", f"{app}:emails", "--weights", f"{app}-orders=3", "--burst",
               "--concurrency", "4", "--log-level", "warning"],
    )  # fmt: skip
    assert code == 0
    assert [await j.result(timeout=5) for j in jobs] == [f"{k} {i}" for k in ("order", "email") for i in range(5)]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--weights", "nope"], "argument --weights: expected QUEUE=N"),
        (["--weights", "sms=2"], "weights name queues this worker does not run: 'sms'"),
        (["--queue", "other"], "--queue renames the queue of one MODULE:ATTR"),
        (["--burst", "--max-jobs", "3"], "--max-jobs applies to a worker of one queue"),
    ],
)
def test_cli_mistakes_with_several_targets_are_one_line_errors(
    app: str, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["worker", f"{app}:orders", f"{app}:emails", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aqueue: error: ") and message in err and err.count("\n") == 1, err


def test_the_cli_refuses_the_same_queue_twice(app: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", f"{app}:orders", f"{app}:orders"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aqueue: error: ") and "given twice" in err and err.count("\n") == 1, err


async def start_cli(cwd: Path, *args: str) -> asyncio.subprocess.Process:
    """``python -m aqueue ARGS`` in the background (no AQUEUE_* variable of the shell leaks in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AQUEUE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aqueue", *args, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def answers(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def test_each_of_several_worker_processes_runs_every_queue(
    app: str, registries: list[aqueue.Tasks], tmp_path: Path
) -> None:
    jobs = [await t.enqueue(_work(t).spec(i)) for t in registries for i in range(40)]
    proc = await start_cli(tmp_path, "worker", f"{app}:orders", f"{app}:emails", "--processes", "2", "--burst",
                           "--weights", f"{app}-emails=2", "--concurrency", "4")  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert [await j.result(timeout=5) for j in jobs] == [f"{k} {i}" for k in ("order", "email") for i in range(40)]
    ids = {w["id"] for t in registries for w in (await t.info()).workers}
    assert ids == set()  # both processes stopped and left both queues' registries


@pytest.mark.parametrize("command", ["worker", "web"])
async def test_the_web_app_serves_several_targets(
    app: str, registries: list[aqueue.Tasks], tmp_path: Path, command: str
) -> None:
    port = free_port()
    flag = "--web" if command == "worker" else "--bind"
    proc = await start_cli(tmp_path, command, f"{app}:orders", f"{app}:emails", flag, f"127.0.0.1:{port}")
    try:
        await wait_until(lambda: answers(f"http://127.0.0.1:{port}/status"), 20)
        if command == "worker":
            jobs = [await t.enqueue(_work(t).spec(1)) for t in registries]
            assert [await j.result(timeout=10) for j in jobs] == ["order 1", "email 1"]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()


def _work(tasks: aqueue.Tasks) -> aqueue.Task[..., Any]:
    """The registry's task ``work``, to enqueue for the app's worker."""
    task = tasks.get("work")
    assert task is not None
    return task


async def test_observers_of_a_lane_see_its_queue_and_the_workers_see_every_queue(make_tasks: MakeTasks) -> None:
    orders, emails = make_tasks(queue=f"o-{uuid.uuid4().hex[:8]}"), make_tasks(queue=f"e-{uuid.uuid4().hex[:8]}")
    for tasks in (orders, emails):

        @tasks.task(name="same")  # the same task name on both queues
        async def same() -> None:
            return None

    worker = aqueue.Worker([orders, emails], concurrency=4)
    everything: list[str] = []
    only_emails: list[str] = []
    worker.observers.append(lambda task, took, wait, kind: everything.append(task))
    worker.lane(emails.queue).observers.append(lambda task, took, wait, kind: only_emails.append(task))
    await orders.enqueue_many([orders.get("same").spec() for _ in range(3)])  # type: ignore[union-attr]
    await emails.enqueue_many([emails.get("same").spec() for _ in range(2)])  # type: ignore[union-attr]
    await worker.run(burst=True, handle_signals=False)
    assert len(everything) == 5 and len(only_emails) == 2
