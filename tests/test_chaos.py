"""Worker kills: three worker processes drain 20,000 jobs while one is SIGKILLed every second, ten times.

Every job records each execution in Redis (a counter per job id). Afterwards every job succeeded once in its
record, none is dead or pending, the ready streams are empty, and only jobs that were in flight at a kill ran
again: right after each kill the test reads which jobs the killed worker held (its consumer's pending messages in
the group: claimed, not yet settled), and a job runs at most once more than the number of kills that caught it so
(a killed worker's jobs are taken back after the lease and run again: at-least-once). A job re-run without having
been in flight at a kill fails the test, and so do more duplicates than the jobs measured in flight.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import sys
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

import aqueue
from aqueue._redis.keys import GROUP
from tests.helpers import REDIS_URL, delete_queue

ROOT = Path(__file__).resolve().parent.parent
JOBS = 20_000
CONCURRENCY = 25
KILLS = 10
LEASE = "1.5"

APP = """
import asyncio
import aqueue
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

tasks = aqueue.Tasks("chaos", "redis://127.0.0.1:6379/0")
_r = None

@tasks.task(name="work")
async def work(n: int) -> int:
    global _r
    if _r is None:
        _r = aioredis.Redis.from_url("redis://127.0.0.1:6379/0", decode_responses=True)
    job = aqueue.current_job()
    await asyncio.sleep(0.05)
    await _r.hincrby(f"chaos:{tasks.queue}:runs", job.job_id, 1)
    return n
"""


@pytest.fixture
async def chaos_queue(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    (tmp_path / "chaos_app.py").write_text(textwrap.dedent(APP))
    queue = f"chaos-{uuid.uuid4().hex[:8]}"
    yield queue, tmp_path
    await delete_queue(REDIS_URL, queue)
    r = aioredis.Redis.from_url(REDIS_URL)
    await r.delete(f"chaos:{queue}:runs")
    await r.aclose()


async def _spawn(app_dir: Path, queue: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AQUEUE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), str(app_dir), env.get("PYTHONPATH")]))
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aqueue", "worker", "chaos_app:tasks", "--queue", queue,
        "--concurrency", str(CONCURRENCY), "--lease", LEASE, "--log-level", "warning",
        cwd=app_dir, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def _held_by(r: aioredis.Redis, tasks: aqueue.Tasks, pid: int) -> list[str]:
    """The ids of the jobs the worker process ``pid`` holds: its consumer's pending messages (claimed, not yet
    settled) on every ready stream. Read right after the process died, before the lease lets another worker take
    them back, this is what it had in flight when it was killed."""
    held: list[str] = []
    for stream in tasks._keys.streams:
        if not await r.exists(stream):
            continue
        try:
            consumers = await r.xinfo_consumers(stream, GROUP)  # a worker's name is host-pid-random
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            continue  # killed before any worker had made the group (a slow start on a loaded machine): held nothing
        for consumer in consumers:
            if not re.search(rf"-{pid}-[0-9a-f]+$", consumer["name"]) or not consumer["pending"]:
                continue
            pending = await r.xpending_range(stream, GROUP, "-", "+", consumer["pending"], consumer["name"])
            for message in pending:
                entries = await r.xrange(stream, message["message_id"], message["message_id"])
                held += [fields["j"] for _, fields in entries]
    return held


async def test_sigkilled_workers_lose_no_job(chaos_queue: tuple[str, Path]) -> None:
    queue, app_dir = chaos_queue
    tasks = aqueue.Tasks(queue, REDIS_URL)

    @tasks.task(name="work")
    async def work(n: int) -> int:
        raise AssertionError("runs in the worker processes only")

    r = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    procs: list[asyncio.subprocess.Process] = []
    try:
        jobs = await tasks.enqueue_many([work.spec(i) for i in range(JOBS)])
        procs = [await _spawn(app_dir, queue) for _ in range(3)]
        rng = random.Random(7)
        caught: Counter[str] = Counter()  # job id: how many kills caught it in flight
        in_flight: list[int] = []  # per kill: how many jobs the killed worker held
        for _ in range(KILLS):
            await asyncio.sleep(1.0)
            victim = rng.randrange(len(procs))
            procs[victim].send_signal(signal.SIGKILL)
            await procs[victim].wait()
            held = await _held_by(r, tasks, procs[victim].pid)
            caught.update(held)
            in_flight.append(len(held))
            procs[victim] = await _spawn(app_dir, queue)
        deadline = time.monotonic() + 90
        while (await tasks.info()).stats.get("succeeded", 0) < JOBS:
            assert time.monotonic() < deadline, await tasks.info()
            await asyncio.sleep(0.25)
        info = await tasks.info()
        runs = await r.hgetall(f"chaos:{queue}:runs")
        executions = sum(int(v) for v in runs.values())
        duplicates = executions - len(runs)
        print(f"\n{KILLS} kills, {executions} executions of {JOBS} jobs: {duplicates} duplicates (bound: "
              f"{sum(in_flight)} in flight at the kills: {in_flight})")  # fmt: skip
        assert len(runs) == JOBS  # every job ran
        assert info.stats["succeeded"] == JOBS and info.stats.get("dead", 0) == 0
        assert info.queued == {"high": 0, "normal": 0, "low": 0} and info.scheduled == 0 and info.dead == 0
        assert info.active == 0  # nothing pending in the group: killed workers' jobs were all taken back
        assert duplicates <= sum(in_flight)
        rerun = {job: int(n) for job, n in runs.items() if int(n) - 1 > caught[job]}
        assert rerun == {}, f"ran again more often than kills caught them in flight: {rerun}"
        sample = rng.sample(jobs, 200)
        assert {await j.status() for j in sample} == {aqueue.JobStatus.SUCCEEDED}
        lengths = [await r.xlen(s) for s in tasks._keys.streams]
        assert lengths == [0, 0, 0]
    finally:
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                await asyncio.wait_for(p.wait(), 20)
            except TimeoutError:
                p.kill()
        await tasks.close()
        await r.aclose()
