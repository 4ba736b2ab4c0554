"""``aqueue demo``: a self-contained tour of aqueue on in-process ``memory://`` (no Redis needed).

It registers a few example tasks, enqueues a mixed load (three priorities, some delayed jobs, a few jobs
that always fail and end in the dead-letter queue), runs a :class:`Worker` in the same event loop, prints a
one-line summary every second and ends with a per-task table, the throughput and enqueue→finish latencies.

With ``web=(host, port)`` (``aqueue demo --web``) it also serves the web sub-app (dashboard, ``/status``,
``/metrics``, REST, WebSocket) for that worker and, once the batch is done, keeps a mixed load of about ``rate``
jobs/s with a burst every 30 s running so the dashboard stays live, until SIGINT/SIGTERM (Ctrl-C) stops the
worker. The batch runs at ``concurrency``; after it the worker autoscales between 2 and ``concurrency``.
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any, TextIO

from aiohttp import web

from aqueue._core.errors import ConfigurationError
from aqueue._core.job import Job
from aqueue._core.record import JobStatus
from aqueue._core.specs import JobSpec
from aqueue._core.task import Task
from aqueue._core.tasks import Tasks
from aqueue._worker.worker import Worker

__all__ = ["build_tasks", "plan_jobs", "run_demo"]

_PRIORITIES = ("high", "normal", "low")
_PRIORITY_WEIGHTS = (2, 6, 2)


async def fast(n: int) -> int:
    """Returns at once."""
    return n * 2


async def slow(ms: float) -> float:
    """Sleeps a few milliseconds on the event loop."""
    await asyncio.sleep(ms / 1000)
    return ms


def blocking(n: int) -> int:
    """A plain function: the worker runs it in a thread, off the event loop."""
    time.sleep(0.002)
    return sum(range(n))


async def fails(n: int) -> None:
    """Always raises, so after its attempts the job lands in the dead-letter stream."""
    raise RuntimeError(f"demo job {n} always fails")


def build_tasks(redis_url: str) -> Tasks:
    """A registry (queue ``demo``) with the demo's tasks: ``fast``, ``slow``, ``blocking`` and ``fails``."""
    tasks = Tasks("demo", redis_url)
    # The plain form: the keyword form (@tasks.task(name=...)) does not type-check under mypy --strict.
    tasks.task(fast)
    tasks.task(slow)
    tasks.task(blocking)
    tasks.task(fails)
    return tasks


def _short(task_name: str) -> str:
    return task_name.rsplit(".", 1)[-1]


def plan_jobs(tasks: Tasks, jobs: int, rng: random.Random) -> tuple[list[JobSpec[Any]], set[int]]:
    """The mixed load: specs in enqueue order, and the indexes of the delayed ones.

    About 1% of the jobs always fail and 5% are delayed by 0.5-2 s; the rest are fast, slow or blocking jobs
    spread over the three priorities (20% high, 60% normal, 20% low).
    """
    failing, delayed = max(1, jobs // 100), max(1, jobs // 20)
    pool = [_get(tasks, "fast"), _get(tasks, "slow"), _get(tasks, "blocking")]
    # Three attempts with a small backoff: the failing jobs are dead-lettered well under a second in.
    failing_task = _get(tasks, "fails").with_options(max_attempts=3, backoff_base=0.05, backoff_max=0.2)
    kinds = ["fails"] * failing + ["delayed"] * delayed + ["plain"] * max(0, jobs - failing - delayed)
    rng.shuffle(kinds)
    specs: list[JobSpec[Any]] = []
    delayed_at: set[int] = set()
    for i, kind in enumerate(kinds[:jobs]):
        task = failing_task if kind == "fails" else rng.choices(pool, weights=(5, 3, 2))[0]
        delay = 0.0
        if kind == "delayed":
            delay = rng.uniform(0.5, 2.0)
            delayed_at.add(i)
        priority = rng.choices(_PRIORITIES, weights=_PRIORITY_WEIGHTS)[0]
        specs.append(
            task.with_options(priority=priority, delay=delay).spec(rng.uniform(1, 8) if task.fn is slow else i)
        )
    return specs, delayed_at


def _get(tasks: Tasks, name: str) -> Task[Any, Any]:
    task = tasks.get(f"{__name__}.{name}")
    assert task is not None, name
    return task


async def run_demo(
    jobs: int = 2000,
    concurrency: int = 50,
    seconds: float = 60.0,
    out: TextIO | None = None,
    web: tuple[str, int] | None = None,
    rate: float = 100.0,
) -> int:
    """Run the demo; 0 if every job of the batch finished as expected within ``seconds``, else 1.

    ``web``: also serve the web sub-app on ``(host, port)`` and, after the batch, keep about ``rate`` jobs/s
    of the same mix running until SIGINT/SIGTERM.
    """
    out = out or sys.stdout
    url = f"memory://demo-{uuid.uuid4().hex}"  # a fresh in-process server: nothing else shares it
    tasks = build_tasks(url)
    try:
        return await _run(tasks, jobs, concurrency, seconds, out, web, rate)
    finally:
        await tasks.close()


async def _serve(tasks: Tasks, worker: Worker, bind: tuple[str, int]) -> web.AppRunner:
    from aqueue.web import create_app

    runner = web.AppRunner(create_app(tasks, worker), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, *bind).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigurationError(f"cannot serve the web app on {bind[0]}:{bind[1]}: {exc.strerror or exc}") from None
    return runner


#: The steady load of ``demo --web`` repeats this: ``BURST_EVERY`` seconds, the last ``BURST_FOR`` of them at
#: ``BURST_FACTOR`` times the rate, so the autoscaler has something to answer on the dashboard.
BURST_EVERY, BURST_FOR, BURST_FACTOR = 30.0, 10.0, 3.0


async def _keep_busy(tasks: Tasks, running: asyncio.Task[None], rate: float, say: Callable[[str], None]) -> None:
    """Enqueue the demo's mix at about ``rate`` jobs/s, with a burst of ``BURST_FACTOR`` times that for the last
    ``BURST_FOR`` s of every ``BURST_EVERY`` s, until the worker stops; a line every 10 s."""
    rng = random.Random()
    sent, last_said = 0, time.monotonic()
    began = due = last_said
    mix: list[JobSpec[Any]] = []
    while not running.done():
        now_rate = rate * (BURST_FACTOR if (time.monotonic() - began) % BURST_EVERY >= BURST_EVERY - BURST_FOR else 1)
        batch = max(1, round(now_rate * 0.1))
        if len(mix) < batch:  # drawn 1,000 at a time so every slice keeps the batch's proportions
            mix += plan_jobs(tasks, 1000, rng)[0]
        specs, mix = mix[:batch], mix[batch:]
        await tasks.enqueue_many(specs)
        sent += batch
        due += batch / now_rate  # paced by the clock, so the time enqueue_many takes does not lower the rate
        await asyncio.wait({running}, timeout=max(0.0, due - time.monotonic()))
        if time.monotonic() - last_said >= 10.0:
            info = await tasks.info()
            say(f"steady load: {sent} more jobs enqueued; queued {sum(info.queued.values())}, "
                f"active {info.active}, dead {info.dead}")  # fmt: skip
            last_said = time.monotonic()


def _headline(tasks: Tasks, specs: list[JobSpec[Any]], delayed: set[int], concurrency: int, seconds: float,
              autoscaled: bool) -> str:  # fmt: skip
    """The demo's first line: the load it is about to run, and how the worker is sized."""
    failing = sum(1 for s in specs if _short(s.task) == "fails")
    sizing = f"concurrency {concurrency}"
    if autoscaled:
        sizing += f", then autoscaled within {min(2, concurrency)}..{concurrency}"
    return (f"aqueue demo on {tasks.redis_url}: {len(specs)} jobs ({failing} always failing, {len(delayed)} delayed "
            f"0.5-2 s), {sizing}, at most {seconds:g} s")  # fmt: skip


async def _make_worker(tasks: Tasks, concurrency: int, autoscaled: bool) -> Worker:
    """The demo's worker. With the dashboard it autoscales, so its scaling decisions show there: the batch runs at
    the top (a manual override, as POST /scale sets), then the supervisor sizes it for the steady load."""
    if not autoscaled:
        return Worker(tasks, concurrency=concurrency, shutdown_timeout=2.0)
    low = min(2, concurrency)
    worker = Worker(tasks, min_concurrency=low, max_concurrency=concurrency, shutdown_timeout=2.0)
    await worker.scale_to(concurrency)
    return worker


async def _watch(
    tasks: Tasks, running: asyncio.Task[None], jobs: int, seconds: float, start: float, say: Callable[[str], None]
) -> None:
    """Until the batch is done, ``seconds`` have passed or the worker stopped: a progress line every second."""
    last_time, last_done, done = start, 0, 0
    while done < jobs and time.monotonic() - start < seconds and not running.done():
        # Waiting on the worker task (not a plain sleep) notices at once if it stops or crashes.
        await asyncio.wait({running}, timeout=0.05)
        info = await tasks.info()
        done = info.stats.get("succeeded", 0) + info.stats.get("dead", 0)
        now = time.monotonic()
        if now - last_time >= 1.0 or done >= jobs:
            speed = (done - last_done) / (now - last_time)
            queued = " ".join(f"{name} {n}" for name, n in info.queued.items())
            say(f"[{now - start:5.1f}s] done {done}/{jobs}  {speed:6.0f} jobs/s  queued {queued}  "
                f"scheduled {info.scheduled}  active {info.active}  dead {info.dead}")  # fmt: skip
            last_time, last_done = now, done


async def _run(
    tasks: Tasks,
    jobs: int,
    concurrency: int,
    seconds: float,
    out: TextIO,
    bind: tuple[str, int] | None,
    rate: float,
) -> int:
    def say(line: str) -> None:
        print(line, file=out, flush=True)

    specs, delayed = plan_jobs(tasks, jobs, random.Random())
    say(_headline(tasks, specs, delayed, concurrency, seconds, autoscaled=bind is not None))
    worker = await _make_worker(tasks, concurrency, autoscaled=bind is not None)
    site = None if bind is None else await _serve(tasks, worker, bind)
    if site is not None and bind is not None:
        host, port = site.addresses[0][:2] if site.addresses else bind
        say(f"dashboard: http://{f'[{host}]' if ':' in host else host}:{port}/  (Ctrl-C stops the demo)")
    start = time.monotonic()
    handles = await tasks.enqueue_many(specs)
    running = asyncio.create_task(worker.run(), name="aqueue-demo-worker")
    try:
        await _watch(tasks, running, jobs, seconds, start, say)
        code = await _summary(handles, delayed, time.monotonic() - start, say)
        if site is not None and not running.done():
            worker.release_scale()
            say(f"the batch is done; now about {rate:g} jobs/s of the same mix, {BURST_FACTOR:g}x that for "
                f"{BURST_FOR:g} s of every {BURST_EVERY:g} s, keep the dashboard moving (Ctrl-C stops)")  # fmt: skip
            await _keep_busy(tasks, running, rate, say)
            say("stopped")
    finally:
        await worker.stop()
        try:
            await running  # re-raises if the worker crashed
        finally:
            if site is not None:
                await site.cleanup()
    return code


_Counts = Counter[tuple[str, str]]  # (task's short name, succeeded | dead | unfinished) -> jobs


async def _tally(handles: list[Job[Any]], delayed: set[int]) -> tuple[_Counts, list[float], list[float]]:
    """Each job's outcome by task, and the enqueue→finish latencies of all finished jobs and of the undelayed ones."""
    counts: _Counts = Counter()
    latencies: list[float] = []
    immediate: list[float] = []
    for i, job in enumerate(handles):
        rec = await job.record()
        state = rec.status.value if rec.status in (JobStatus.SUCCEEDED, JobStatus.DEAD) else "unfinished"
        counts[_short(rec.task), state] += 1
        if rec.status.finished and rec.enqueued_at is not None and rec.finished_at is not None:
            latencies.append(rec.finished_at - rec.enqueued_at)
            if i not in delayed:
                immediate.append(latencies[-1])
    return counts, latencies, immediate


def _outcome_table(counts: _Counts, say: Callable[[str], None]) -> None:
    names = sorted({task for task, _ in counts}, key=["fast", "slow", "blocking", "fails"].index)
    rows: list[tuple[str, ...]] = [("task", "succeeded", "dead", "unfinished")]
    for name in [*names, "total"]:
        pick = names if name == "total" else [name]
        rows.append((name, *(str(sum(counts[n, s] for n in pick)) for s in rows[0][1:])))
    say("")
    for row in rows:
        say(f"{row[0]:<10}" + "".join(f"{cell:>12}" for cell in row[1:]))


def _verdict(counts: _Counts, say: Callable[[str], None]) -> int:
    """0 if every job ended as it should (only the ``fails`` jobs dead, none unfinished), else 1; says which."""
    unfinished = sum(n for (_, state), n in counts.items() if state == "unfinished")
    wrong = sum(
        n for (task, state), n in counts.items() if state != "unfinished" and (state == "dead") != (task == "fails")
    )
    if wrong:
        say(f"demo FAILED: {wrong} jobs ended wrongly (only the 'fails' jobs should be dead)")
    if unfinished:
        say(f"demo incomplete: {unfinished} jobs had not finished when it stopped")
    if wrong or unfinished:
        return 1
    say("demo ok: every job finished as expected")
    return 0


async def _summary(handles: list[Job[Any]], delayed: set[int], elapsed: float, say: Callable[[str], None]) -> int:
    counts, latencies, immediate = await _tally(handles, delayed)
    _outcome_table(counts, say)
    finished = len(latencies)
    say(f"throughput {finished / elapsed:.0f} jobs/s ({finished} jobs finished in {elapsed:.2f} s)")
    for label, values in (("immediate jobs", immediate), ("all jobs", latencies)):
        if values:
            say(f"enqueue->finish latency, {label}: p50 {_pct(values, 50) * 1000:.0f} ms, "
                f"p99 {_pct(values, 99) * 1000:.0f} ms")  # fmt: skip
    return _verdict(counts, say)


def _pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]
