"""Fixtures: every integration test runs on in-process ``memory://`` and on the real Redis at 127.0.0.1:6379."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

import aqueue

REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session", autouse=True)
def real_redis() -> Iterator[None]:
    """The integration tests need the real Redis: start one on 127.0.0.1:6379 if none answers."""
    started = False
    if not _redis_answers():
        server = shutil.which("redis-server")
        assert server, "no Redis on 127.0.0.1:6379 and no redis-server binary to start one"
        subprocess.run(
            [server, "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379", "--save", "", "--appendonly", "no"],
            check=True,
        )
        deadline = time.monotonic() + 10
        while not _redis_answers():
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        started = True
    yield
    if started:
        subprocess.run([shutil.which("redis-cli") or "redis-cli", "-p", "6379", "shutdown", "nosave"], check=False)


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    """The URL of one backend: a fresh in-process memory server, or the real Redis."""
    if request.param == "memory":
        return f"memory://test-{uuid.uuid4().hex[:8]}"
    return REDIS_URL


@pytest.fixture
def queue_name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


async def delete_queue(url: str, queue: str) -> None:
    """Remove every key of a queue from the real Redis (memory servers are thrown away with the test)."""
    if not url.startswith("redis"):
        return
    r = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in r.scan_iter(match=f"aqueue:{{{queue}}}:*", count=1000)]
        for i in range(0, len(keys), 500):
            await r.delete(*keys[i : i + 500])
    finally:
        await r.aclose()


@pytest.fixture
async def make_tasks(backend: str, queue_name: str) -> AsyncIterator[Callable[..., aqueue.Tasks]]:
    """Factory of Tasks registries on this test's queue and backend; closed and cleaned up afterwards."""
    made: list[aqueue.Tasks] = []

    def make(settings: aqueue.QueueSettings | None = None, queue: str | None = None) -> aqueue.Tasks:
        t = aqueue.Tasks(queue=queue or queue_name, redis_url=backend, settings=settings)
        made.append(t)
        return t

    yield make
    for t in made:
        await t.close()
    for q in {t.queue for t in made}:
        await delete_queue(backend, q)


async def wait_until(cond: Callable[[], Awaitable[bool] | bool], timeout: float = 5.0, step: float = 0.01) -> None:
    """Poll ``cond`` until true, failing the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value: Any = cond()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(step)


class RunningWorker:
    """A worker running in a background task of the test's loop."""

    def __init__(self, worker: aqueue.Worker, burst: bool = False) -> None:
        self.worker = worker
        self.task = asyncio.create_task(worker.run(burst=burst))

    async def stop(self) -> None:
        await self.worker.stop()
        await self.task


@pytest.fixture
async def start_worker() -> AsyncIterator[Callable[..., Awaitable[RunningWorker]]]:
    """Start workers in the background; all are stopped at the end of the test."""
    running: list[RunningWorker] = []

    async def registered(rw: RunningWorker) -> bool:
        info = await rw.worker.tasks.info()
        return any(w["id"] == rw.worker.id for w in info.workers)

    async def start_and_wait(tasks: aqueue.Tasks, **kwargs: Any) -> RunningWorker:
        rw = RunningWorker(aqueue.Worker(tasks, **kwargs))
        running.append(rw)
        await wait_until(lambda: registered(rw), 5.0)
        return rw

    yield start_and_wait
    for rw in running:
        if not rw.task.done():
            await rw.stop()
        elif not rw.task.cancelled():  # a crashed worker was cancelled on purpose; any other error surfaces
            await rw.task
