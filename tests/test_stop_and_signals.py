"""Stopping a worker: a stop requested before ``run()`` has begun, re-running a worker, and SIGINT/SIGTERM that
reach a worker twice (a terminal's Ctrl-C or systemd's control-group kill under ``aqueue worker --processes N``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

import aqueue
from tests.helpers import REDIS_URL, MakeTasks, StartWorker, delete_queue, wait_until

ROOT = Path(__file__).resolve().parent.parent
FORCED = "cancelling running jobs now"


Background = Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]]


@contextlib.asynccontextmanager
async def background_runs() -> AsyncIterator[Background]:
    """``asyncio.create_task`` for worker runs; any still running at the end (a failed test) is cancelled before the
    queue is cleaned up, so a failure does not leave a worker serving."""
    started: list[asyncio.Task[None]] = []

    def start(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        started.append(asyncio.create_task(coro))
        return started[-1]

    try:
        yield start
    finally:
        for task in started:
            task.cancel()
        await asyncio.gather(*started, return_exceptions=True)


def _echo_tasks(make_tasks: MakeTasks) -> tuple[aqueue.Tasks, Any]:
    tasks = make_tasks()

    @tasks.task
    async def echo(n: int) -> int:
        return n

    return tasks, echo


async def _untouched(job: aqueue.Job[Any]) -> bool:
    record = await job.record()
    return record.status is aqueue.JobStatus.QUEUED and record.attempts == 0


# -- a stop requested before run() has begun --------------------------------------------------------------------


@pytest.mark.parametrize("yields", [0, 1, 3])
async def test_stop_right_after_create_task_returns_once_run_has_returned(make_tasks: MakeTasks, yields: int) -> None:
    """``stop()`` before the run task's first step (``yields`` 0), or during its start-up: run() returns after
    start-up without claiming anything, and stop() returns only once it has."""
    tasks, echo = _echo_tasks(make_tasks)
    job = await echo.enqueue(1)
    worker = aqueue.Worker(tasks, concurrency=2)
    async with background_runs() as background:
        running = background(worker.run())
        for _ in range(yields):
            await asyncio.sleep(0)
        await worker.stop()  # awaited directly: asyncio.wait_for would run it in a task of its own, a step later
        assert running.done()
        await running
    assert await _untouched(job)
    assert (await tasks.info()).workers == []


async def test_request_stop_right_after_create_task_makes_run_return(make_tasks: MakeTasks) -> None:
    tasks, echo = _echo_tasks(make_tasks)
    job = await echo.enqueue(1)
    worker = aqueue.Worker(tasks, concurrency=2)
    async with background_runs() as background:
        running = background(worker.run())
        worker.request_stop()  # as a signal handler or a host's shutdown callback would
        await asyncio.wait_for(running, 5)
    assert await _untouched(job)
    assert not worker.is_running


async def test_stop_before_run_is_called_makes_that_run_return_after_start_up(make_tasks: MakeTasks) -> None:
    tasks, echo = _echo_tasks(make_tasks)
    job = await echo.enqueue(1)
    worker = aqueue.Worker(tasks, concurrency=2)
    await asyncio.wait_for(worker.stop(), 1)  # nothing runs yet: returns at once, and does not hang
    async with background_runs() as background:
        await asyncio.wait_for(background(worker.run()), 5)
        assert await _untouched(job)
        # The request was used up by that run: the next one serves.
        running = background(worker.run())
        assert await job.result(timeout=5) == 1
        await worker.stop()
        await running


async def test_a_worker_runs_again_after_a_completed_run(
    make_tasks: MakeTasks, caplog: pytest.LogCaptureFixture
) -> None:
    tasks, echo = _echo_tasks(make_tasks)
    worker = aqueue.Worker(tasks, concurrency=2)
    first = await echo.enqueue(1)
    await worker.run(burst=True)
    assert await first.result(timeout=1) == 1
    with caplog.at_level(logging.WARNING, logger="aqueue"):
        await worker.stop()  # finished: a quiet no-op that leaves nothing behind for the next run
        worker.request_stop()
    assert not caplog.records, caplog.text

    async with background_runs() as background:
        running = background(worker.run())
        assert await (await echo.enqueue(2)).result(timeout=5) == 2
        assert worker.is_running
        await asyncio.wait_for(worker.stop(), 5)
        await running

        # A stop() right after scheduling a new run of a worker that ran before reaches that run too.
        job = await echo.enqueue(3)
        running = background(worker.run())
        await worker.stop()
        assert running.done()
        await running
    assert await _untouched(job)
    assert worker.processed == 2


async def test_run_twice_at_once_is_refused(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks, _ = _echo_tasks(make_tasks)
    rw = await start_worker(tasks)
    with pytest.raises(RuntimeError, match="already running"):
        await rw.worker.run()
    assert rw.worker.is_running


# -- the same signal twice ----------------------------------------------------------------------------------------


async def test_a_signal_repeated_within_a_second_is_the_same_stop_request(
    make_tasks: MakeTasks, start_worker: StartWorker, caplog: pytest.LogCaptureFixture
) -> None:
    """What a child of ``--processes`` gets on Ctrl-C or a systemd control-group kill: the signal itself, then the
    parent's forwarded copy. Running jobs still get their ``shutdown_timeout``."""
    tasks = make_tasks()

    @tasks.task
    async def nap() -> str:
        await asyncio.sleep(1.0)
        return "finished"

    rw = await start_worker(tasks, concurrency=2, shutdown_timeout=10)
    jobs = await tasks.enqueue_many([nap.spec() for _ in range(2)])
    await wait_until(lambda: rw.worker.running_jobs == 2, 5)
    with caplog.at_level(logging.INFO, logger="aqueue"):
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.05)  # two deliveries, not one coalesced pending signal
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.wait_for(rw.task, 10)
    for job in jobs:
        record = await job.record()
        assert (record.status, record.attempts, record.result) == (aqueue.JobStatus.SUCCEEDED, 1, "finished")
    assert FORCED not in caplog.text
    assert "still running" not in caplog.text


async def test_a_signal_repeated_after_a_second_cancels_running_jobs_and_the_log_says_when(
    make_tasks: MakeTasks, start_worker: StartWorker, caplog: pytest.LogCaptureFixture
) -> None:
    tasks = make_tasks()

    @tasks.task
    async def endless() -> None:
        await asyncio.sleep(600)

    rw = await start_worker(tasks, shutdown_timeout=60)
    job = await endless.enqueue()
    await wait_until(lambda: rw.worker.running_jobs == 1, 5)
    with caplog.at_level(logging.INFO, logger="aqueue"):
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(1.3)
        assert not rw.task.done()
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(rw.task, 5)
    assert (await job.record()).status is aqueue.JobStatus.QUEUED
    assert FORCED in caplog.text
    assert "after 60.0s" not in caplog.text  # the log states the real wait, not the timeout
    [line] = [r.getMessage() for r in caplog.records if "putting them back" in r.getMessage()]
    assert "after 1." in line, line


_APP = """
import asyncio
import aqueue

tasks = aqueue.Tasks("stop-signals-default", "redis://127.0.0.1:6379/0")

@tasks.task(name="nap")
async def nap(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_to_the_process_group_of_a_multi_process_worker_lets_jobs_finish(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """``systemctl stop`` with ``KillMode=control-group`` (SIGTERM) and Ctrl-C in a terminal (SIGINT) signal every
    process of the ``--processes`` tree, and the parent forwards the signal as well: the children must not take that
    as a second stop request."""
    (tmp_path / "app.py").write_text(textwrap.dedent(_APP))
    queue = f"stop-sig-{uuid.uuid4().hex[:10]}"
    producer = aqueue.Tasks(queue, REDIS_URL)

    @producer.task(name="nap")
    async def nap(seconds: float) -> float:
        raise AssertionError("runs in the CLI worker only")

    env = {k: v for k, v in os.environ.items() if not k.startswith("AQUEUE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    log_path = tmp_path / "worker.log"
    cmd = [sys.executable, "-m", "aqueue", "worker", "app:tasks", "--processes", "2", "--concurrency", "1",
           "--redis", REDIS_URL, "--queue", queue, "--shutdown-timeout", "10"]  # fmt: skip
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        jobs = await producer.enqueue_many([nap.spec(2.0) for _ in range(2)])

        async def both_running() -> bool:
            return (await producer.info()).active == 2

        await wait_until(both_running, 15, 0.02)
        os.killpg(proc.pid, sig)  # the parent and both children, as systemd or a terminal does
        signalled = time.monotonic()
        while proc.poll() is None:
            assert time.monotonic() - signalled < 10, "the workers did not exit within the shutdown timeout"
            await asyncio.sleep(0.05)
        output = log_path.read_text()
        assert proc.returncode == 0, output
        records = [await job.record() for job in jobs]
        assert [(r.status, r.attempts) for r in records] == [(aqueue.JobStatus.SUCCEEDED, 1)] * 2, output
        assert len({r.worker for r in records}) == 2, output  # one job in each child
        assert FORCED not in output and "Traceback" not in output, output
        assert output.count(" down: ") == 2, output
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        await producer.close()
        await delete_queue(REDIS_URL, queue)


_CRASHING_HOST = """
import asyncio
import contextlib
import logging
import sys

import aqueue

logging.basicConfig(level=logging.INFO, format="%(message)s")
tasks = aqueue.Tasks(sys.argv[1], sys.argv[2])


@tasks.task(name="nap")
async def nap(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


async def main() -> None:
    async with tasks if sys.argv[3] == "async-with" else contextlib.nullcontext():
        worker = aqueue.Worker(tasks, concurrency=2, shutdown_timeout=30)
        asyncio.create_task(worker.run(handle_signals=False))
        await nap.enqueue(60.0)
        while (await tasks.info()).active != 1:
            await asyncio.sleep(0.02)
        raise RuntimeError("the host application crashed")


asyncio.run(main())
"""


@pytest.mark.parametrize("host", ["async-with", "bare"])
async def test_a_host_that_crashes_while_a_job_runs_puts_it_back_without_waiting_for_the_shutdown_timeout(
    tmp_path: Path, host: str
) -> None:
    """An exception while a worker runs a job in the host's event loop. Out of ``async with tasks:``, leaving the
    block stops the worker, cancelling its running job; without it, ``asyncio.run`` cancels every task, the job's
    among them. Either way the shutdown must not wait ``shutdown_timeout`` (30 s) for a job that no longer runs,
    must reach Redis (not log it as unavailable), and must put the job back in the queue."""
    (tmp_path / "host.py").write_text(textwrap.dedent(_CRASHING_HOST))
    queue = f"stop-crash-{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AQUEUE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    probe = aqueue.Tasks(queue, REDIS_URL)
    try:
        began = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "host.py", queue, REDIS_URL, host, cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        took = time.monotonic() - began
        output = out.decode()
        assert proc.returncode == 1 and "RuntimeError: the host application crashed" in output, output
        assert took < 20, f"exit took {took:.1f}s: the shutdown waited for a cancelled job\n{output}"
        assert "put 1 unfinished jobs back in the queue" in output, output
        assert "not answering" not in output and "unavailable" not in output, output
        info = await probe.info()
        assert (info.active, sum(info.queued.values()), info.workers) == (0, 1, []), info
    finally:
        await probe.close()
        await delete_queue(REDIS_URL, queue)


async def test_leaving_async_with_tasks_stops_its_running_worker_and_lets_the_job_finish(
    make_tasks: MakeTasks, caplog: pytest.LogCaptureFixture
) -> None:
    """Leaving ``async with tasks:`` normally while a worker still runs on it: the worker is stopped gracefully
    (its running job finishes and is settled) before the connections close, not cut off from Redis."""
    tasks = make_tasks()
    finished = asyncio.Event()

    @tasks.task
    async def slow() -> str:
        await asyncio.sleep(0.3)
        finished.set()
        return "done"

    worker = aqueue.Worker(tasks, concurrency=1, shutdown_timeout=10)
    caplog.set_level(logging.INFO, logger="aqueue")
    async with background_runs() as background:
        async with tasks:
            running = background(worker.run(handle_signals=False))
            job = await slow.enqueue()
            await wait_until(lambda: _active(tasks, 1), 5, 0.01)
        assert running.done() and finished.is_set()
        await running
    assert await job.result(timeout=5) == "done"
    assert (await tasks.info()).workers == []
    assert "not answering" not in caplog.text and "unavailable" not in caplog.text, caplog.text


async def test_a_job_that_closes_its_own_registry_does_not_wait_for_its_own_worker(make_tasks: MakeTasks) -> None:
    """A job calling ``tasks.close()`` is not made to wait for the worker that runs it (which would wait for the
    job): the registry closes, the job returns, and the worker settles it on a new connection."""
    tasks = make_tasks()

    @tasks.task
    async def closer() -> str:
        await tasks.close()
        return "closed"

    worker = aqueue.Worker(tasks, concurrency=1, shutdown_timeout=10)
    async with background_runs() as background:
        running = background(worker.run(handle_signals=False))
        job = await closer.enqueue()

        async def settled() -> bool:
            return (await job.record()).status is aqueue.JobStatus.SUCCEEDED

        await wait_until(settled, 5, 0.02)
        assert worker.is_running
        await worker.stop()
        await running


async def _active(tasks: aqueue.Tasks, n: int) -> bool:
    return (await tasks.info()).active == n


async def test_stop_after_request_stop_waits_for_the_running_job_instead_of_forcing(
    make_tasks: MakeTasks, caplog: pytest.LogCaptureFixture
) -> None:
    """A host that calls ``request_stop()`` (say, from its own signal handler) and then awaits ``stop()``: the wait
    is not a second stop request, so the running job finishes instead of being cancelled."""
    tasks = make_tasks()

    @tasks.task
    async def slow() -> str:
        await asyncio.sleep(0.3)
        return "done"

    worker = aqueue.Worker(tasks, concurrency=1, shutdown_timeout=10)
    async with background_runs() as background:
        running = background(worker.run(handle_signals=False))
        job = await slow.enqueue()
        await wait_until(lambda: _active(tasks, 1), 5, 0.01)
        worker.request_stop()
        await worker.stop()
        await running
    assert await job.result(timeout=5) == "done"
    assert FORCED not in caplog.text, caplog.text
