"""Fixtures: every integration test runs on in-process ``memory://`` and on the real Redis at 127.0.0.1:6379.

A test module that sets ``ON_CLUSTER = True`` runs on a third backend as well: a 3-master Redis Cluster on loopback
ports, started once per session by :func:`redis_cluster` (``redis-server --cluster-enabled yes`` x3, then
``redis-cli --cluster create``) and shut down at the end.

A test marked ``no_redis`` (a unit test: ``pytestmark = pytest.mark.no_redis`` in its module) runs without the
real Redis: nothing checks for it or starts it. Every other test gets it through :func:`real_redis`, and so do the
fixtures of a wider scope that use it. Plain helpers and types are in :mod:`tests.helpers`.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import aqueue
from tests.helpers import (
    REDIS_URL,
    Client,
    LocalCluster,
    MakeTasks,
    RedisProcess,
    RunningWorker,
    Serve,
    StartWorker,
    delete_queue,
    redis_answers,
    wait_until,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "no_redis: a unit test that needs no Redis (the real one is not started)")


@pytest.fixture(scope="session")
def real_redis() -> Iterator[str]:
    """The real Redis at 127.0.0.1:6379 (its URL), started if none answers and shut down again at the end."""
    started = False
    if not redis_answers():
        server = shutil.which("redis-server")
        assert server, "no Redis on 127.0.0.1:6379 and no redis-server binary to start one"
        subprocess.run(
            [server, "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379", "--save", "", "--appendonly", "no"],
            check=True,
        )
        deadline = time.monotonic() + 10
        while not redis_answers():
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        started = True
    yield REDIS_URL
    if started:
        subprocess.run([shutil.which("redis-cli") or "redis-cli", "-p", "6379", "shutdown", "nosave"], check=False)


@pytest.fixture(autouse=True)
def _real_redis_unless_no_redis(request: pytest.FixtureRequest) -> None:
    """Every test but those marked ``no_redis`` gets the real Redis (before its own function-scoped fixtures)."""
    if request.node.get_closest_marker("no_redis") is None:
        request.getfixturevalue("real_redis")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A 3-master Redis Cluster on loopback, for the session: its ``redis+cluster://`` URL."""
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.stop()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``backend``: memory and the real Redis everywhere, plus the cluster in modules that set ``ON_CLUSTER``."""
    chosen = any("backend" in str(mark.args[0]) for mark in metafunc.definition.iter_markers("parametrize"))
    if "backend" in metafunc.fixturenames and not chosen:  # a test may pick its backends itself
        names = ["memory", "redis", *(["cluster"] if getattr(metafunc.module, "ON_CLUSTER", False) else [])]
        metafunc.parametrize("backend", names, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The URL of one backend: a fresh in-process memory server, the real Redis, or the test cluster."""
    if request.param == "memory":
        return f"memory://test-{uuid.uuid4().hex[:8]}"
    if request.param == "cluster":
        url: str = request.getfixturevalue("redis_cluster")
        return url
    redis_url: str = request.getfixturevalue("real_redis")
    return redis_url


@pytest.fixture
def queue_name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def make_tasks(backend: str, queue_name: str) -> AsyncIterator[MakeTasks]:
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


@pytest.fixture
async def start_worker() -> AsyncIterator[StartWorker]:
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


@pytest.fixture
async def start_app() -> AsyncIterator[Callable[[Any], Awaitable[Any]]]:
    """``await start_app(app)``: an aiohttp ``TestClient`` on a real test server for ``app``, closed after the test."""
    from aiohttp.test_utils import TestClient, TestServer

    clients: list[Any] = []

    async def start(app: Any) -> Any:
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
def app_tasks(make_tasks: MakeTasks) -> Callable[[], aqueue.Tasks]:
    """The registry :func:`serve` gives the app when a test names none: a plain one from ``make_tasks``. A module
    whose app needs its tasks registered overrides this fixture."""
    return make_tasks


@pytest.fixture
async def serve(
    app_tasks: Callable[[], aqueue.Tasks], start_app: Callable[[Any], Awaitable[Client]]
) -> AsyncIterator[Serve]:
    """``await serve(tasks=None, **create_app_kwargs)``: ``create_app`` of ``tasks`` (else of ``app_tasks()``) on a
    test server, as a ``TestClient`` (closed after the test)."""
    from aqueue.web import create_app

    async def start(tasks: aqueue.Tasks | None = None, **kwargs: Any) -> Client:
        return await start_app(create_app(tasks or app_tasks(), **kwargs))

    yield start


def _own_redis(tmp_path: Path, appendonly: bool) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path, appendonly=appendonly)
    server.start()
    yield server
    if server.proc is not None:
        if server.proc.poll() is None:
            server.proc.send_signal(signal.SIGCONT)  # a test may leave it stopped (SIGSTOP)
        server.stop(kill=not appendonly)


@pytest.fixture
def empty_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of the test's own that keeps nothing on disk: a restart brings it back empty."""
    yield from _own_redis(tmp_path, appendonly=False)


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of the test's own with an append-only file (fsync always): a restart keeps every write it
    acknowledged."""
    yield from _own_redis(tmp_path, appendonly=True)
