"""The ACL documented in docs/deployment.md is exact: a Redis the test starts gets the user made from that very line,
and a producer, a worker (results, retry, delay, dead-letter, cancel, progress, cron), the web app and every
``aqueue`` command run under it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import textwrap
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

import aqueue
from aqueue.web import create_app
from tests.helpers import RedisProcess, StartWorker, wait_until

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary")

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "acl-test-secret"


def documented_acl(cluster: bool = False) -> list[str]:
    """The arguments of the ``ACL SETUSER`` line in docs/deployment.md, with the test's password (``cluster``: with
    the second line's, for a Redis Cluster)."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    lines = re.findall(r"^ACL SETUSER .*$", text, flags=re.MULTILINE)
    assert len(lines) == 2, lines
    words = lines[0].split()[2:]
    assert ">CHANGE-ME" in words and lines[1].split()[2] == words[0]
    if cluster:
        words += lines[1].split()[3:]
    return [f">{PASSWORD}" if w == ">CHANGE-ME" else w for w in words]


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[tuple[RedisProcess, str]]:
    """A Redis of the test's own with the documented user; (the server, the user's URL)."""
    server = RedisProcess(tmp_path, appendonly=False)
    server.start()
    admin = redis.Redis(port=server.port)
    try:
        args = documented_acl()
        admin.execute_command("ACL", "SETUSER", *args)  # type: ignore[no-untyped-call]  # the line as documented
        yield server, f"redis://{args[0]}:{PASSWORD}@127.0.0.1:{server.port}/0"
        denied = admin.acl_log()
        assert not denied, f"the documented user was denied: {denied}"
    finally:
        admin.close()
        server.stop()


async def test_a_user_lacking_time_gets_an_error_naming_it(tmp_path: Path) -> None:
    server = RedisProcess(tmp_path, appendonly=False)
    server.start()
    admin = redis.Redis(port=server.port)
    tasks = aqueue.Tasks("acl-no-time", f"redis://aqueue:{PASSWORD}@127.0.0.1:{server.port}/0")

    @tasks.task
    async def echo(n: int) -> int:
        return n

    try:
        admin.execute_command("ACL", "SETUSER", *(w for w in documented_acl() if w != "+time"))  # type: ignore[no-untyped-call]
        with pytest.raises(aqueue.AqueueError, match=r"(?i)time"):
            await echo.enqueue(1)
        with pytest.raises(aqueue.AqueueError, match=r"(?i)time"):
            await tasks.enqueue_many([echo.spec(i) for i in range(1_000)])
    finally:
        await tasks.close()
        admin.close()
        server.stop()


async def test_the_documented_acl_user_can_produce_and_run_jobs(
    acl_redis: tuple[RedisProcess, str], start_worker: StartWorker
) -> None:
    _, url = acl_redis
    tasks = aqueue.Tasks("acl", url)
    tries: dict[int, int] = {}
    started = asyncio.Event()

    @tasks.task
    async def echo(n: int) -> int:
        return n

    @tasks.task(max_attempts=3, backoff_base=0)
    async def flaky(n: int) -> int:
        tries[n] = tries.get(n, 0) + 1
        if tries[n] < 2:
            raise aqueue.Retry("once more", after=0.05)
        return n

    @tasks.task
    async def doomed() -> None:
        raise aqueue.Reject("no")

    @tasks.task
    async def slow() -> None:
        await aqueue.progress(0.5, "half")
        started.set()
        await asyncio.sleep(30)

    tasks.add_cron(echo, every=0.5, name="tick", args=[7])
    try:
        queued_then_cancelled = await echo.with_options(delay=60).enqueue(0)
        assert await queued_then_cancelled.cancel()
        await start_worker(tasks, concurrency=4)
        assert await (await echo.enqueue(1)).result(timeout=10) == 1
        assert await (await echo.with_options(delay=0.2).enqueue(2)).result(timeout=10) == 2
        assert await (await flaky.enqueue(3)).result(timeout=10) == 3
        with pytest.raises(aqueue.JobFailed):
            await (await doomed.enqueue()).result(timeout=10)
        running = await slow.enqueue()
        await asyncio.wait_for(started.wait(), 10)
        assert (await running.record()).progress == 0.5
        assert await running.cancel()
        with pytest.raises(aqueue.JobCancelled):
            await running.result(timeout=10)
        jobs = await tasks.enqueue_many([echo.spec(i) for i in range(10)])
        assert [await j.result(timeout=10) for j in jobs] == list(range(10))
        await wait_until(lambda: _cron_ran(tasks), 10)
        info = await tasks.info()
        assert info.stats["dead"] == 1 and info.stats["cancelled"] == 2 and info.workers
    finally:
        await tasks.close()


async def _cron_ran(tasks: aqueue.Tasks) -> bool:
    state = await (await tasks._broker()).cron_state()
    return bool(state.get("tick", {}).get("job"))


async def test_the_documented_acl_user_can_serve_the_web_app(
    acl_redis: tuple[RedisProcess, str],
    start_worker: StartWorker,
    start_app: Callable[[Any], Awaitable[Any]],
) -> None:
    _, url = acl_redis
    tasks = aqueue.Tasks("acl-web", url)

    @tasks.task(name="echo")
    async def echo(n: int) -> int:
        return n

    try:
        await start_worker(tasks, concurrency=2)
        client = await start_app(create_app(tasks))
        reply = await client.post("/jobs", json={"task": "echo", "args": [5]})
        assert reply.status == 201, await reply.text()
        job_id = (await reply.json())["id"]
        assert await tasks.job(job_id).result(timeout=10) == 5
        for path in ("/status", "/health/ready", "/metrics", f"/jobs/{job_id}", "/jobs", "/dead-letter"):
            reply = await client.get(path)
            assert reply.status == 200, (path, await reply.text())
    finally:
        await tasks.close()


APP = """
import aqueue

tasks = aqueue.Tasks("unused")

@tasks.task(name="add")
async def add(x: int, y: int) -> int:
    return x + y

@tasks.task(name="boom", max_attempts=1)
async def boom() -> None:
    raise ValueError("boom")
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    name = tmp_path / "cliapp"
    name.mkdir()
    (name / "acl_app.py").write_text(textwrap.dedent(APP))
    return name


async def test_every_cli_command_runs_as_the_documented_acl_user(
    acl_redis: tuple[RedisProcess, str], app_dir: Path
) -> None:
    _, url = acl_redis
    queue = f"acl-cli-{uuid.uuid4().hex[:6]}"

    async def cli(*words: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AQUEUE_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env |= {"AQUEUE_REDIS_URL": url, "AQUEUE_QUEUE": queue}
        command, rest = (words[:2], words[2:]) if words[0] == "dead-letter" else (words[:1], words[1:])
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "aqueue", *command, "acl_app:tasks", *rest, cwd=app_dir, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, (words, out.decode(), err.decode())
        return out.decode()

    added = (await cli("enqueue", "add", "--args", "[1, 2]")).strip()
    failed = (await cli("enqueue", "boom")).strip()
    later = (await cli("enqueue", "add", "--args", "[3, 4]", "--delay", "600")).strip()
    await cli("pause")
    assert "paused" in (await cli("info")).lower()
    await cli("resume")
    await cli("cancel", later)
    await cli("worker", "--burst")
    shown = orjson.loads(await cli("job", added, "--json"))["jobs"][0]
    assert shown["status"] == "succeeded" and shown["result"] == 3, shown
    assert failed in await cli("dead-letter", "list")
    await cli("dead-letter", "reprocess", "--all")
    await cli("worker", "--burst")
    await cli("cleanup", "--older-than", "0")
    info = orjson.loads(await cli("info", "--json"))
    assert info["stats"]["dead"] == 2 and info["stats"]["cancelled"] == 1, info


async def test_the_documented_acl_user_can_use_a_redis_cluster(redis_cluster: str) -> None:
    ports = [int(node.rsplit(":", 1)[1]) for node in redis_cluster.removeprefix("redis+cluster://").split(",")]
    user = f"acl{uuid.uuid4().hex[:6]}"
    for port in ports:
        with redis.Redis(port=port) as admin:
            admin.acl_log_reset()
            admin.execute_command("ACL", "SETUSER", user, *documented_acl(cluster=True)[1:])
    url = redis_cluster.replace("redis+cluster://", f"redis+cluster://{user}:{PASSWORD}@", 1)
    tasks = aqueue.Tasks(f"acl-{user}", url)

    @tasks.task
    async def echo(n: int) -> int:
        return n

    try:
        job = await echo.enqueue(1)
        jobs = await tasks.enqueue_many([echo.spec(i) for i in range(600)])
        assert await tasks.pause() and await tasks.resume()
        worker = aqueue.Worker(tasks, concurrency=4)
        running = asyncio.create_task(worker.run(handle_signals=False))
        assert await job.result(timeout=10) == 1 and await jobs[-1].result(timeout=10) == 599
        assert (await tasks.info()).workers
        await worker.stop()
        await running
    finally:
        await tasks.close()
        for port in ports:
            with redis.Redis(port=port) as admin:
                denied = admin.acl_log()
                admin.execute_command("ACL", "DELUSER", user)
            assert not denied, f"the documented user was denied on a cluster node: {denied}"
