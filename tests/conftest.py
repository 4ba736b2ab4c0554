"""Fixtures: every integration test runs on in-process ``memory://`` and on the real Redis at 127.0.0.1:6379.

A test module that sets ``ON_CLUSTER = True`` runs on a third backend as well: a 3-master Redis Cluster on loopback
ports, started once per session by :func:`redis_cluster` (``redis-server --cluster-enabled yes`` x3, then
``redis-cli --cluster create``) and shut down at the end.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import aqueue
from aqueue._redis.connect import open_connection

REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_answers(port: int = 6379) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
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


class RedisProcess:
    """A redis-server on a free loopback port (the test's own), with an append-only file in ``workdir`` unless
    ``appendonly`` is False."""

    def __init__(self, workdir: Path, appendonly: bool = True) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.workdir = workdir
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis(port=self.port, socket_timeout=1).ping():
                    return
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    def stop(self, kill: bool = False) -> None:
        assert self.proc is not None
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        self.proc.wait(10)
        self.proc = None


def system_binary(names: tuple[str, ...], packages: tuple[str, ...]) -> str:
    """The path of the first of ``names`` on PATH, installing Debian's ``packages`` first when none is there and
    this runs as root with apt-get (so ``python -m pytest`` works on a fresh machine); else the test fails, naming
    the packages."""
    found = next((path for name in names if (path := shutil.which(name))), None)
    if found is None and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
        if subprocess.run(install, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
            subprocess.run(install, env=env, capture_output=True, check=False)
        found = next((path for name in names if (path := shutil.which(name))), None)
    if found is None:
        pytest.fail(f"{names[0]} is missing: install Debian's {' '.join(packages)} (as root: apt-get install -y "
                    f"{' '.join(packages)})")  # fmt: skip
    return found


def _free_port_pair(start: int) -> int:
    """The first port from ``start`` that is free, and whose cluster bus port (+10000) is free too."""
    port = start
    while True:
        try:
            for p in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", p))
            return port
        except OSError:
            port += 1


def _cluster_ok(port: int) -> bool:
    info = subprocess.run(["redis-cli", "-p", str(port), "cluster", "info"], capture_output=True, text=True)
    return "cluster_state:ok" in info.stdout


class LocalCluster:
    """A Redis Cluster of ``masters`` nodes on free loopback ports, each in its own directory under ``root``."""

    def __init__(self, root: Path, masters: int = 3, first_port: int = 7101, appendonly: bool = False) -> None:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        assert server and cli, "the cluster tests need redis-server and redis-cli"
        self.server, self.cli, self.root = server, cli, root
        self.appendonly = appendonly
        self.ports: list[int] = []
        for _ in range(masters):
            self.ports.append(_free_port_pair((self.ports[-1] + 1) if self.ports else first_port))

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start_node(self, port: int) -> None:
        """Start (or restart) one node; its nodes.conf keeps its place in the cluster across restarts."""
        node = self.root / str(port)
        node.mkdir(exist_ok=True)
        subprocess.run(
            [self.server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf", "--save", "", "--appendonly", "yes" if self.appendonly else "no",
             "--appendfsync", "always", "--daemonize", "yes",
             "--dir", str(node), "--logfile", str(node / "log")],
            check=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not _redis_answers(port):
            assert time.monotonic() < deadline, f"cluster node {port} did not start"
            time.sleep(0.05)

    def stop_node(self, port: int) -> None:
        subprocess.run([self.cli, "-p", str(port), "shutdown", "nosave"], check=False, capture_output=True)

    def wait_ok(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(_cluster_ok(p) for p in self.ports):
            assert time.monotonic() < deadline, "the cluster did not reach cluster_state:ok"
            time.sleep(0.1)

    def start(self) -> None:
        for port in self.ports:
            self.start_node(port)
        nodes = [f"127.0.0.1:{p}" for p in self.ports]
        subprocess.run(
            [self.cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
        )
        self.wait_ok()

    def stop(self) -> None:
        for port in self.ports:
            self.stop_node(port)


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
    return REDIS_URL


@pytest.fixture
def queue_name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


async def delete_queue(url: str, queue: str) -> None:
    """Remove every key of a queue from the real Redis (memory servers are thrown away with the test)."""
    if not url.startswith("redis"):
        return
    r = open_connection(url).client
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
