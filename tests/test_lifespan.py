"""The worker lifespan (``@tasks.lifespan``) and ``aqueue.resources()``: entered once per run before the first
claim, exited after the last settle (also on a stop, a signal, a cancelled run), one per registry, and what it
yields reachable from every task of the run, async or plain."""

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
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import aqueue
from aqueue._worker.lifecycle import WorkerState
from tests.helpers import REDIS_URL, MakeTasks, StartWorker, delete_queue, wait_until

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Deps:
    name: str


@dataclass
class Other:
    value: int


def test_a_second_lifespan_or_a_plain_function_is_refused() -> None:
    tasks = aqueue.Tasks("lifespan-config", "memory://lifespan-config")

    @tasks.lifespan
    async def first() -> AsyncIterator[Deps]:
        yield Deps("first")

    async def second() -> AsyncIterator[Deps]:
        yield Deps("second")

    with pytest.raises(aqueue.ConfigurationError, match="already has a lifespan"):
        tasks.lifespan(second)

    async def not_a_generator() -> None:
        return None

    other = aqueue.Tasks("lifespan-config-2", "memory://lifespan-config")
    with pytest.raises(aqueue.ConfigurationError, match="async generator function"):
        other.lifespan(not_a_generator)  # type: ignore[arg-type]
    assert tasks.lifespan.__doc__ and tasks.middleware.__doc__


async def test_lifespan_is_entered_before_the_first_job_and_exited_after_the_last_settled(
    make_tasks: MakeTasks,
) -> None:
    tasks = make_tasks()
    events: list[tuple[str, float]] = []

    @tasks.lifespan
    async def deps() -> AsyncIterator[Deps]:
        events.append(("enter", time.monotonic()))
        await asyncio.sleep(0.05)  # a slow start-up must still come before the first job
        try:
            yield Deps("http")
        finally:
            await asyncio.sleep(0)
            events.append(("exit", time.monotonic()))

    @tasks.task(name="work")
    async def work(i: int) -> str:
        events.append(("job", time.monotonic()))
        await asyncio.sleep(0.01 * i)
        return f"{aqueue.resources(Deps).name}-{i}"

    jobs = [await work.enqueue(i) for i in range(5)]
    await aqueue.Worker(tasks, concurrency=3).run(burst=True)
    assert [kind for kind, _ in events] == ["enter", *["job"] * 5, "exit"]
    assert [await job.result(timeout=1) for job in jobs] == [f"http-{i}" for i in range(5)]
    # Every job had settled (recorded as succeeded) before the exit: the records say when they finished.
    records = [await job.record() for job in jobs]
    assert all(r.status is aqueue.JobStatus.SUCCEEDED for r in records)
    exit_wall = time.time() - (time.monotonic() - events[-1][1])
    assert all(r.finished_at is not None and r.finished_at <= exit_wall + 0.05 for r in records)


async def test_each_run_enters_its_own_lifespan_and_a_producer_never_does(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()
    entered: list[int] = []

    @tasks.lifespan
    async def deps() -> AsyncIterator[Other]:
        entered.append(len(entered) + 1)
        yield Other(len(entered))

    @tasks.task(name="which")
    async def which() -> int:
        return aqueue.resources(Other).value

    job = await which.enqueue()
    assert entered == []  # enqueueing never runs it
    worker = aqueue.Worker(tasks)
    await worker.run(burst=True)
    again = await which.enqueue()
    await worker.run(burst=True)
    assert entered == [1, 2]
    assert (await job.result(timeout=1), await again.result(timeout=1)) == (1, 2)


async def test_a_lifespan_failing_to_enter_stops_the_worker_before_it_claims_anything(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()

    @tasks.lifespan
    async def deps() -> AsyncIterator[Deps]:
        raise ConnectionRefusedError("database at db:5432 refused")
        yield Deps("never")  # pragma: no cover

    @tasks.task(name="work")
    async def work() -> None:
        raise AssertionError("must not run")

    job = await work.enqueue()
    worker = aqueue.Worker(tasks)
    with pytest.raises(aqueue.LifespanError, match="database at db:5432 refused") as caught:
        await asyncio.wait_for(worker.run(burst=True), 10)
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    assert "failed while starting" in str(caught.value)
    assert worker._life.state is WorkerState.STOPPED
    record = await job.record()
    assert (record.status, record.attempts, record.worker) == (aqueue.JobStatus.QUEUED, 0, None)
    assert (await tasks.info()).workers == []  # never registered


async def test_an_error_while_exiting_is_logged_and_does_not_hide_the_run(
    make_tasks: MakeTasks, caplog: pytest.LogCaptureFixture
) -> None:
    tasks = make_tasks()

    @tasks.lifespan
    async def deps() -> AsyncIterator[Deps]:
        yield Deps("x")
        raise OSError("pool close failed")

    @tasks.task(name="work")
    async def work() -> str:
        return aqueue.resources(Deps).name

    job = await work.enqueue()
    with caplog.at_level(logging.INFO, logger="aqueue"):
        await aqueue.Worker(tasks).run(burst=True)  # returns normally: the run itself went well
    assert await job.result(timeout=1) == "x"
    failed = [r for r in caplog.records if "failed while stopping" in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelno == logging.ERROR
    assert failed[0].exc_info is not None and "pool close failed" in str(failed[0].exc_info[1])


async def test_a_lifespan_that_yields_twice_is_reported_at_exit(
    make_tasks: MakeTasks, caplog: pytest.LogCaptureFixture
) -> None:
    tasks = make_tasks()

    @tasks.lifespan
    async def deps() -> AsyncIterator[Deps]:
        yield Deps("one")
        yield Deps("two")

    with caplog.at_level(logging.ERROR, logger="aqueue"):
        await aqueue.Worker(tasks).run(burst=True)
    assert any("failed while stopping" in r.getMessage() and "didn't stop" in str(r.exc_info and r.exc_info[1])
               for r in caplog.records)  # fmt: skip


async def test_lifespan_exits_on_stop_and_when_run_is_cancelled(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()
    log: list[str] = []

    @tasks.lifespan
    async def deps() -> AsyncIterator[Deps]:
        log.append("enter")
        try:
            yield Deps("x")
        finally:
            log.append("exit")

    @tasks.task(name="nap")
    async def nap() -> None:
        log.append("nap")
        await asyncio.sleep(30)

    rw = await start_worker(tasks, shutdown_timeout=0.2)
    assert log == ["enter"]
    await rw.stop()
    assert log == ["enter", "exit"]

    # run() cancelled while a job runs: the job is put back, then the lifespan exits.
    job = await nap.enqueue()
    worker = aqueue.Worker(tasks)
    run = asyncio.create_task(worker.run())
    await wait_until(lambda: "nap" in log, 5)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert log == ["enter", "exit", "enter", "nap", "exit"]
    assert (await job.record()).status is aqueue.JobStatus.QUEUED  # given back before the exit


async def test_a_stop_during_a_slow_lifespan_start_claims_nothing_and_exits_it(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()
    log: list[str] = []
    starting = asyncio.Event()

    @tasks.lifespan
    async def deps() -> AsyncIterator[Deps]:
        starting.set()
        await asyncio.sleep(0.3)  # connecting to a slow database
        log.append("entered")
        try:
            yield Deps("x")
        finally:
            log.append("exited")

    @tasks.task(name="work")
    async def work() -> None:
        log.append("job")

    job = await work.enqueue()
    worker = aqueue.Worker(tasks)
    run = asyncio.create_task(worker.run())
    await starting.wait()
    await asyncio.wait_for(worker.stop(), 10)
    await run
    assert log == ["entered", "exited"]
    assert (await job.record()).status is aqueue.JobStatus.QUEUED


async def test_resources_outside_a_worker_without_a_lifespan_or_of_the_wrong_type_raise(
    make_tasks: MakeTasks,
) -> None:
    with pytest.raises(RuntimeError, match="only available while a worker runs"):
        aqueue.resources(Deps)
    bare = make_tasks(queue=f"bare-{uuid.uuid4().hex[:8]}")

    @bare.task(name="bare")
    async def bare_task() -> str:
        try:
            aqueue.resources(Deps)
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    typed = make_tasks()

    @typed.lifespan
    async def deps() -> AsyncIterator[Deps]:
        yield Deps("x")

    @typed.task(name="wrong", max_attempts=1)
    async def wrong() -> str:
        aqueue.resources(Other)
        return "no error"

    # Called directly (not by a worker), a task has no resources either.
    with pytest.raises(RuntimeError, match="only available while a worker runs"):
        await wrong()
    first = await bare_task.enqueue()
    second = await wrong.enqueue()
    await aqueue.Worker(bare).run(burst=True)
    await aqueue.Worker(typed).run(burst=True)
    assert "has no lifespan" in await first.result(timeout=1)
    record = await second.record()
    assert record.status is aqueue.JobStatus.DEAD
    assert record.error == (
        f"TypeError: aqueue.resources(Other): the lifespan of queue {typed.queue!r} yielded a Deps, not a Other"
    )


async def test_a_plain_function_task_in_a_thread_gets_the_resources(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()

    @tasks.lifespan
    async def deps() -> AsyncIterator[Deps]:
        yield Deps("from-the-lifespan")

    @tasks.task(name="plain", timeout=5)
    def plain(suffix: str) -> str:
        import threading

        assert threading.current_thread() is not threading.main_thread()
        return aqueue.resources(Deps).name + suffix

    job = await plain.enqueue("!")
    await aqueue.Worker(tasks).run(burst=True)
    assert await job.result(timeout=1) == "from-the-lifespan!"


async def test_slots_added_by_scale_to_from_another_task_see_the_resources(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()

    @tasks.lifespan
    async def deps() -> AsyncIterator[Deps]:
        yield Deps("shared")

    release = asyncio.Event()

    @tasks.task(name="hold")
    async def hold() -> str:
        await release.wait()
        return aqueue.resources(Deps).name

    rw = await start_worker(tasks, min_concurrency=1, max_concurrency=4, scale_interval=60)
    await asyncio.create_task(rw.worker.scale_to(4))  # another task's context, as a web handler's
    jobs = [await hold.enqueue() for _ in range(4)]
    await wait_until(lambda: rw.worker.running_jobs == 4, 5)
    release.set()
    assert [await job.result(timeout=5) for job in jobs] == ["shared"] * 4


# -- the CLI: SIGTERM, --processes, a failing lifespan -------------------------------------------------------

_APP = """
import asyncio
import os
import sys
from collections.abc import AsyncIterator

import aqueue

tasks = aqueue.Tasks("lifespan-cli")
MARKS = os.environ["LIFESPAN_MARKS"]


def mark(what: str) -> None:
    with open(MARKS, "a") as f:
        f.write(f"{what} {os.getpid()}\\n")


@tasks.lifespan
async def deps() -> AsyncIterator[str]:
    if os.environ.get("LIFESPAN_FAIL"):
        raise ConnectionRefusedError("the database refused")
    mark("enter")
    try:
        yield "deps"
    finally:
        await asyncio.sleep(0.05)  # an async clean-up, as closing a pool is
        mark("exit")


@tasks.task(name="nap")
async def nap(seconds: float) -> str:
    mark("job")
    await asyncio.sleep(seconds)
    return aqueue.resources(str)
"""


def _cli(tmp_path: Path, queue: str, *extra: str, fail: bool = False) -> subprocess.Popen[bytes]:
    (tmp_path / "lifespan_app.py").write_text(textwrap.dedent(_APP))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AQUEUE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["LIFESPAN_MARKS"] = str(tmp_path / "marks")
    if fail:
        env["LIFESPAN_FAIL"] = "1"
    cmd = [sys.executable, "-m", "aqueue", "worker", "lifespan_app:tasks", "--redis", REDIS_URL, "--queue", queue,
           "--shutdown-timeout", "10", *extra]  # fmt: skip
    return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _marks(tmp_path: Path) -> list[tuple[str, int]]:
    path = tmp_path / "marks"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(what, int(pid)) for what, pid in (line.split() for line in lines)]


@pytest.mark.parametrize("processes", [1, 2])
async def test_sigterm_exits_the_lifespan_of_every_worker_process(tmp_path: Path, processes: int) -> None:
    queue = f"lifespan-{uuid.uuid4().hex[:10]}"
    producer = aqueue.Tasks(queue, REDIS_URL)

    @producer.task(name="nap")
    async def nap(seconds: float) -> str:
        raise AssertionError("runs in the CLI worker only")

    proc = _cli(tmp_path, queue, "--processes", str(processes), "--concurrency", "1")
    try:
        jobs = await producer.enqueue_many([nap.spec(0.5) for _ in range(processes)])
        await wait_until(lambda: sum(w == "job" for w, _ in _marks(tmp_path)) == processes, 20, 0.05)
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.to_thread(proc.communicate, timeout=20)
        output = out.decode()
        assert proc.returncode == 0, output
        marks = _marks(tmp_path)
        enters = [pid for what, pid in marks if what == "enter"]
        exits = [pid for what, pid in marks if what == "exit"]
        assert len(enters) == processes and sorted(exits) == sorted(enters), (marks, output)
        # Each process: enter, its job, exit, in that order; the running job finished first.
        for pid in enters:
            assert [what for what, p in marks if p == pid] == ["enter", "job", "exit"], (marks, output)
        assert [await job.result(timeout=1) for job in jobs] == ["deps"] * processes
        assert "Traceback" not in output, output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        await producer.close()
        await delete_queue(REDIS_URL, queue)


async def test_the_cli_exits_non_zero_with_one_line_when_the_lifespan_fails(tmp_path: Path) -> None:
    queue = f"lifespan-{uuid.uuid4().hex[:10]}"
    producer = aqueue.Tasks(queue, REDIS_URL)

    @producer.task(name="nap")
    async def nap(seconds: float) -> str:
        raise AssertionError("runs in the CLI worker only")

    try:
        job = await nap.enqueue(0.0)
        proc = _cli(tmp_path, queue, "--burst", fail=True)
        out, _ = await asyncio.to_thread(proc.communicate, timeout=30)
        output = out.decode()
        assert proc.returncode != 0, output
        errors = [line for line in output.splitlines() if line.startswith("aqueue: error:")]
        assert len(errors) == 1 and "ConnectionRefusedError: the database refused" in errors[0], output
        assert "Traceback" not in output, output
        assert _marks(tmp_path) == []
        assert (await job.record()).status is aqueue.JobStatus.QUEUED  # nothing claimed
    finally:
        await producer.close()
        await delete_queue(REDIS_URL, queue)
