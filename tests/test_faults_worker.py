"""Faults at the edges, produced for real against redis-server processes the tests start: a Redis stalled longer
than the lease (SIGSTOP/SIGCONT), a Redis restarted empty (no persistence), an event loop blocked by a job, a worker
SIGKILLed mid-job, a permission taken away at run time. Each test asserts the promise: nothing lost, nothing run
twice by the same worker, nothing stuck, the worker at full capacity afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis

import aqueue
from tests.helpers import MakeTasks, RedisProcess, delete_queue, is_active, wait_until


def _capacity_task(tasks: aqueue.Tasks) -> aqueue.Task[[int, int], int]:
    """A task whose jobs of one ``round`` each wait until ``size`` of them run at once: a round of ``size`` jobs
    finishes only if the worker really runs ``size`` jobs together (else each fails after 10 s)."""
    running: dict[int, int] = defaultdict(int)
    full: dict[int, asyncio.Event] = defaultdict(asyncio.Event)

    @tasks.task(name="capacity", max_attempts=1)
    async def capacity(round_: int, size: int) -> int:
        running[round_] += 1
        if running[round_] >= size:
            full[round_].set()
        await asyncio.wait_for(full[round_].wait(), 10)
        return running[round_]

    return capacity


async def _assert_full_capacity(task: aqueue.Task[[int, int], int], concurrency: int) -> None:
    round_ = int(time.monotonic() * 1000)
    jobs = await task.tasks.enqueue_many([task.spec(round_, concurrency) for _ in range(concurrency)])
    results = [await job.result(timeout=15) for job in jobs]
    assert results == [concurrency] * concurrency


async def _registered(tasks: aqueue.Tasks, worker: aqueue.Worker) -> bool:
    try:
        info = await tasks.info()
    except aqueue.BrokerUnavailable:
        return False
    return any(w["id"] == worker.id for w in info.workers)


async def test_a_redis_stall_longer_than_the_lease_runs_no_job_twice_and_keeps_full_capacity(
    empty_redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aqueue")
    lease = 3.0
    tasks = aqueue.Tasks("stall", empty_redis.url, settings=aqueue.QueueSettings(lease=lease))
    runs: Counter[int] = Counter()

    @tasks.task(name="long")
    async def long(n: int) -> int:
        runs[n] += 1
        await asyncio.sleep(12)
        return n

    @tasks.task(name="one_second")
    async def one_second() -> None:
        await asyncio.sleep(1.0)

    capacity = _capacity_task(tasks)
    worker = aqueue.Worker(tasks, concurrency=20, shutdown_timeout=5)
    running = asyncio.create_task(worker.run())
    try:
        jobs = [await long.enqueue(n) for n in range(10)]
        await wait_until(lambda: len(runs) == 10, 10)
        assert empty_redis.proc is not None
        empty_redis.proc.send_signal(signal.SIGSTOP)
        await asyncio.sleep(8)  # well past the lease: every running job's message goes overdue
        empty_redis.proc.send_signal(signal.SIGCONT)
        assert sorted([await job.result(timeout=30) for job in jobs]) == list(range(10))
        assert runs == Counter({n: 1 for n in range(10)}), "a job ran twice in one worker"
        records = [await job.record() for job in jobs]
        assert {(r.attempts, r.worker) for r in records} == {(1, worker.id)}
        await _assert_full_capacity(capacity, 20)
        began = time.monotonic()
        after = await tasks.enqueue_many([one_second.spec() for _ in range(40)])
        for job in after:
            await job.result(timeout=10)
        print(f"\nafter the stall: 40 one-second jobs at concurrency 20 took {time.monotonic() - began:.2f} s")
        await wait_until(lambda: worker.busy == 0, 5)
        assert not running.done()
        assert worker.failing == {}
    finally:
        await worker.stop()
        await running
        await tasks.close()


async def test_a_redis_restarted_empty_is_survived_the_worker_registers_again_and_jobs_flow(
    empty_redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aqueue")
    lease = 3.0  # a heartbeat every second
    tasks = aqueue.Tasks("empty", empty_redis.url, settings=aqueue.QueueSettings(lease=lease))
    ran: Counter[int] = Counter()

    @tasks.task(name="work")
    async def work(n: int, seconds: float) -> int:
        ran[n] += 1
        await asyncio.sleep(seconds)
        return n

    capacity = _capacity_task(tasks)
    worker = aqueue.Worker(tasks, concurrency=10, shutdown_timeout=5)
    running = asyncio.create_task(worker.run())
    loop = asyncio.get_running_loop()
    try:
        await wait_until(lambda: _registered(tasks, worker), 5)
        for n in range(5):
            await work.enqueue(n, 4.0)  # running when Redis loses everything
        await wait_until(lambda: len(ran) == 5, 5)
        await loop.run_in_executor(None, lambda: empty_redis.stop(kill=True))
        await loop.run_in_executor(None, empty_redis.start)
        restarted = time.monotonic()
        await wait_until(lambda: _registered(tasks, worker), 2 * worker.lease / 3 + 1.0)
        registered_after = time.monotonic() - restarted
        jobs = []
        for n in range(100, 140):
            while True:  # the producer's circuit may still be open for a moment after the restart
                try:
                    jobs.append(await work.enqueue(n, 0.01))
                    break
                except aqueue.BrokerUnavailable:
                    await asyncio.sleep(0.1)
        assert sorted([await job.result(timeout=10) for job in jobs]) == list(range(100, 140))
        flowing_after = time.monotonic() - restarted
        assert all(ran[n] == 1 for n in range(100, 140))
        await _assert_full_capacity(capacity, 10)
        assert not running.done(), "the worker exited"
        await wait_until(lambda: worker.busy == 0, 6)  # the 4 s jobs of before the restart finished
        assert all(ran[n] == 1 for n in range(5)), "a job lost with Redis' memory must not run again here"
        assert worker.failing == {}
        print(f"\nempty restart: registered again after {registered_after:.2f} s, 40 new jobs done after "
              f"{flowing_after:.2f} s")  # fmt: skip
    finally:
        await worker.stop()
        await running
        await tasks.close()


_BLOCKING = 3.0


@pytest.mark.parametrize("kind", ["sleep-in-async-def", "gil-holding-def"])
async def test_a_job_that_blocks_the_loop_is_named_and_neither_it_nor_an_innocent_job_runs_twice(
    kind: str, empty_redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aqueue")
    lease = 1.0  # the block lasts three leases
    tasks = aqueue.Tasks("blocked", empty_redis.url, settings=aqueue.QueueSettings(lease=lease))
    runs: Counter[str] = Counter()
    started = asyncio.Event()

    @tasks.task(name="innocent")
    async def innocent() -> str:
        runs["innocent"] += 1
        started.set()
        await asyncio.sleep(1.0)
        return "innocent"

    if kind == "sleep-in-async-def":

        @tasks.task(name="culprit")
        async def culprit() -> str:
            runs["culprit"] += 1
            time.sleep(_BLOCKING)  # the fault under test
            return "culprit"

    else:
        # One C call holds the GIL throughout: sum() over a range never lets another thread run.
        began = time.perf_counter()
        sum(range(2_000_000))
        n = int(2_000_000 * _BLOCKING / max(1e-6, time.perf_counter() - began))

        @tasks.task(name="culprit")
        def culprit_sync() -> str:
            runs["culprit"] += 1
            sum(range(n))
            return "culprit"

    worker = aqueue.Worker(tasks, concurrency=5, shutdown_timeout=5)
    running = asyncio.create_task(worker.run())
    try:
        first = await tasks.get("innocent").enqueue()  # type: ignore[union-attr]
        await asyncio.wait_for(started.wait(), 5)
        blocker = await tasks.get("culprit").enqueue()  # type: ignore[union-attr]
        assert await first.result(timeout=20) == "innocent"
        assert await blocker.result(timeout=20) == "culprit"
        await asyncio.sleep(2 * lease)  # time for a wrong take-back to show
        assert runs == Counter({"innocent": 1, "culprit": 1})
        for job in (first, blocker):
            record = await job.record()
            assert (record.status, record.attempts) == (aqueue.JobStatus.SUCCEEDED, 1)
        blocks = [r.getMessage() for r in caplog.records if "event loop was blocked" in r.getMessage()]
        assert blocks and blocker.id in blocks[0], blocks
        assert worker.loop_blocks >= 1
    finally:
        await worker.stop()
        await running
        await tasks.close()


async def test_a_burst_worker_drains_past_a_batch_of_stale_entries(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()
    done: list[str] = []

    @tasks.task(name="job")
    async def job(label: str) -> str:
        done.append(label)
        return label

    stale = [await job.enqueue(f"stale-{n}") for n in range(15)]
    for handle in stale:
        assert await handle.cancel()
    good = await job.enqueue("good")
    await asyncio.wait_for(aqueue.Worker(tasks, concurrency=10).run(burst=True), 20)
    assert done == ["good"]
    assert await good.status() is aqueue.JobStatus.SUCCEEDED


def _hanging_task(tasks: aqueue.Tasks, started: asyncio.Event) -> aqueue.Task[[], str]:
    """A task whose jobs set ``started`` and then run for a minute."""

    @tasks.task(name="slow")
    async def slow() -> str:
        started.set()
        await asyncio.sleep(60)
        return "done"

    return slow


async def test_cancelling_the_task_of_run_puts_running_jobs_back_at_once(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()
    started = asyncio.Event()
    slow = _hanging_task(tasks, started)

    job = await slow.enqueue()
    worker = aqueue.Worker(tasks, concurrency=2, shutdown_timeout=30)
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 10)
    began = time.monotonic()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert time.monotonic() - began < 5, "cancelling run() waited for the running job"
    record = await job.record()
    assert (record.status, record.attempts) == (aqueue.JobStatus.QUEUED, 0)
    info = await tasks.info()
    assert (sum(info.queued.values()), info.active, info.workers) == (1, 0, [])


_KILLED_APP = """
import asyncio, sys
import aqueue

tasks = aqueue.Tasks(queue=sys.argv[1], redis_url=sys.argv[2], settings=aqueue.QueueSettings(lease=1.0))

@tasks.task(name="once", max_attempts=1)
async def once() -> str:
    await asyncio.sleep(600)
    return "killed worker"

@tasks.task(name="twice", max_attempts=2)
async def twice() -> str:
    await asyncio.sleep(600)
    return "killed worker"

@tasks.task(name="rerun", max_attempts=1, rerun_lost=True)
async def rerun() -> str:
    await asyncio.sleep(600)
    return "killed worker"

asyncio.run(aqueue.Worker(tasks, concurrency=4, name=sys.argv[3]).run())
"""


def _spawn_worker(tmp_path: Path, queue: str, url: str, name: str) -> subprocess.Popen[bytes]:
    app = tmp_path / "killed_app.py"
    app.write_text(textwrap.dedent(_KILLED_APP))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([sys.executable, str(app), queue, url, name], env=env)


@pytest.mark.parametrize("same_name", [False, True], ids=["another-worker", "restarted-under-its-name"])
async def test_a_take_back_after_sigkill_never_exceeds_max_attempts(
    same_name: bool, empty_redis: RedisProcess, tmp_path: Path
) -> None:
    queue = f"kill-{uuid.uuid4().hex[:8]}"
    name = "fixed-name" if same_name else "doomed"
    rescuer = aqueue.Tasks(queue, empty_redis.url, settings=aqueue.QueueSettings(lease=1.0))
    rescued: list[str] = []

    @rescuer.task(name="once", max_attempts=1)
    async def once() -> str:
        rescued.append("once")
        return "rescued"

    @rescuer.task(name="twice", max_attempts=2)
    async def twice() -> str:
        rescued.append("twice")
        return "rescued"

    @rescuer.task(name="rerun", max_attempts=1, rerun_lost=True)
    async def rerun() -> str:
        rescued.append("rerun")
        return "rescued"

    proc = _spawn_worker(tmp_path, queue, empty_redis.url, name)
    try:
        first, second, third = await once.enqueue(), await twice.enqueue(), await rerun.enqueue()
        for job in (first, second, third):
            await wait_until(lambda j=job: is_active(j), 15)  # type: ignore[misc]
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        worker = aqueue.Worker(rescuer, concurrency=4, name=name if same_name else None)
        running = asyncio.create_task(worker.run())
        try:
            assert await second.result(timeout=10) == "rescued"
            assert await third.result(timeout=10) == "rescued"  # it opted out: run again past max_attempts
            with pytest.raises(aqueue.JobFailed, match="max_attempts 1"):
                await first.result(timeout=10)
        finally:
            await worker.stop()
            await running
        assert sorted(rescued) == ["rerun", "twice"]
        record = await first.record()
        assert (record.status, record.attempts) == (aqueue.JobStatus.DEAD, 1)
        assert "taken back from a stopped worker after its last attempt" in (record.error or "")
        assert (await second.record()).attempts == 2
        assert (await third.record()).attempts == 2
    finally:
        if proc.poll() is None:
            proc.kill()
        await rescuer.close()


async def test_a_sub_task_that_keeps_failing_is_restarted_and_reported_until_it_recovers(
    empty_redis: RedisProcess, start_app: Callable[[Any], Awaitable[Any]]
) -> None:
    from aqueue.web import create_app

    admin = redis.Redis(port=empty_redis.port, decode_responses=True)
    admin.execute_command("ACL", "SETUSER", "w", "on", ">pw", "~*", "&*", "+@all")
    url = f"redis://w:pw@127.0.0.1:{empty_redis.port}/0"
    tasks = aqueue.Tasks("faulty", url)
    ran: list[int] = []

    @tasks.task(name="work")
    async def work(n: int) -> int:
        ran.append(n)
        return n

    worker = aqueue.Worker(tasks, concurrency=4)
    running = asyncio.create_task(worker.run())
    client = await start_app(create_app(tasks, worker))
    try:
        await wait_until(lambda: _registered(tasks, worker), 5)
        assert (await client.get("/health/ready")).status == 200
        admin.execute_command("ACL", "SETUSER", "w", "-xreadgroup")  # every claim now fails with NOPERM
        await wait_until(lambda: "claim" in worker.failing, 10)
        assert "xreadgroup" in worker.failing["claim"].lower()

        async def reported() -> bool:
            info = await tasks.info()
            return any("claim" in (w.get("failing") or {}) for w in info.workers)

        await wait_until(reported, 5)
        ready = await client.get("/health/ready")
        assert ready.status == 503
        assert "claim" in (await ready.json())["error"]
        assert not running.done()
        job = await work.enqueue(1)
        admin.execute_command("ACL", "SETUSER", "w", "+xreadgroup")
        assert await job.result(timeout=10) == 1
        await wait_until(lambda: worker.failing == {}, 15)
        assert (await client.get("/health/ready")).status == 200
    finally:
        await worker.stop()
        await running
        await tasks.close()
        admin.close()
    await delete_queue(url, "faulty")


async def test_a_worker_asked_to_stop_while_redis_hangs_exits_within_its_shutdown_timeout_plus_a_grace(
    empty_redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    tasks = aqueue.Tasks("hang", empty_redis.url, settings=aqueue.QueueSettings(lease=3.0))
    started = asyncio.Event()
    slow = _hanging_task(tasks, started)

    worker = aqueue.Worker(tasks, concurrency=2, shutdown_timeout=1.0)
    running = asyncio.create_task(worker.run())
    assert empty_redis.proc is not None
    try:
        await slow.enqueue()
        await asyncio.wait_for(started.wait(), 10)
        empty_redis.proc.send_signal(signal.SIGSTOP)
        began = time.monotonic()
        worker.request_stop()  # what SIGTERM does
        await asyncio.wait_for(asyncio.shield(running), 20)
        took = time.monotonic() - began
        await asyncio.wait_for(tasks.close(), 5)
        print(f"\nstop with Redis hanging: worker exited after {took:.1f} s (shutdown_timeout 1 s)")
        # shutdown_timeout + the 5 s grace for the last Redis calls + one Redis deadline (5 s: a call in flight when
        # the stop came) + scheduling
        assert took < 1.0 + 5.0 + 5.0 + 1.0
        assert any("at shutdown" in r.getMessage() for r in caplog.records)
    finally:
        empty_redis.proc.send_signal(signal.SIGCONT)
        if not running.done():
            running.cancel()
        await tasks.close()
