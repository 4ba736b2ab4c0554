"""Plain helpers and types the test files share: ``from tests.helpers import ...``.

Fixtures live in :mod:`tests.conftest`; this module holds what a test calls or annotates with: the real Redis's
URL, Redis servers and clusters of a test's own, polling, a worker running in the background, a loop in a thread,
reading a queue's events, and the JSON body of a web response.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import aiohttp
import orjson
import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient

import aqueue
from aqueue._redis.connect import open_connection

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

T = TypeVar("T")

#: The real Redis every integration test shares (started by the ``real_redis`` fixture if none answers).
REDIS_URL = "redis://127.0.0.1:6379/0"

#: ``make_tasks(settings=None, queue=None)``: a registry on the test's queue and backend (a conftest fixture).
MakeTasks = Callable[..., aqueue.Tasks]


def redis_answers(port: int = 6379) -> bool:
    """Whether a Redis answers PING on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


# -- Redis servers of a test's own -------------------------------------------------------------------------------


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


def cap_memory(admin: redis.Redis, headroom: int) -> None:
    """Set ``noeviction`` and a ``maxmemory`` of what the server uses now plus ``headroom`` bytes: once that much
    more is stored, writes are refused (OOM) instead of evicting keys."""
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) + headroom)


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
        while not redis_answers(port):
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


# -- queues and workers ------------------------------------------------------------------------------------------


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


async def finished(job: aqueue.Job[Any], timeout: float = 15.0) -> aqueue.JobRecord:
    """The job's record once it reached a final status (succeeded, dead, cancelled or expired)."""

    async def done() -> bool:
        return (await job.record()).status.finished

    await wait_until(done, timeout)
    return await job.record()


def load_example(name: str) -> ModuleType:
    """A fresh copy of ``examples/<name>.py`` (its module-level ``Tasks`` is new), registered as ``examples.<name>``."""
    spec = importlib.util.spec_from_file_location(f"examples.{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def is_active(job: aqueue.Job[Any]) -> bool:
    """Whether a worker runs ``job`` now (for :func:`wait_until`)."""
    return await job.status() is aqueue.JobStatus.ACTIVE


class RunningWorker:
    """A worker running in a background task of the test's loop."""

    def __init__(self, worker: aqueue.Worker, burst: bool = False) -> None:
        self.worker = worker
        self.task = asyncio.create_task(worker.run(burst=burst))

    async def stop(self) -> None:
        await self.worker.stop()
        await self.task


#: ``await start_worker(tasks, **worker_kwargs)``: a registered worker running in the background (a fixture).
StartWorker = Callable[..., Awaitable[RunningWorker]]


async def events_of(tasks: aqueue.Tasks, kind: str | None = None, *, job: str | None = None) -> list[dict[str, str]]:
    """The fields of every event in the queue's event stream, oldest first: those of type ``kind`` and of job
    ``job`` when given."""
    broker = await tasks._broker()
    entries = await broker.redis.xrange(tasks._keys.events)
    return [
        fields
        for _, fields in entries
        if (kind is None or fields.get("type") == kind) and (job is None or fields.get("job") == job)
    ]


class LoopThread:
    """An event loop running in a background thread, so that synchronous code (hypothesis, schemathesis) in the
    test's thread can drive async code: ``run(coro)`` waits for its result; ``close()`` runs :meth:`stop` there,
    then stops the loop and joins the thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` in the thread's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def stop(self) -> None:
        """What to tear down in the loop before it stops (nothing here)."""

    def close(self) -> None:
        try:
            self.run(self.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


# -- the web app -------------------------------------------------------------------------------------------------

#: A client of the web app on a test server.
Client = TestClient[web.Request, web.Application]
#: ``await serve(tasks=None, **create_app_kwargs)``: the web app on a test server (the ``serve`` fixture).
Serve = Callable[..., Awaitable[Client]]


async def json_of(resp: Any, status: int) -> Any:
    """The JSON body of ``resp``, after checking its status (the body is in the failure message)."""
    text = await resp.text()
    assert resp.status == status, text
    assert resp.content_type == "application/json", resp.content_type
    return orjson.loads(text)


def worker_flag_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str]
) -> str:
    """Run ``aqueue worker`` with bad ``args``/``env`` in-process: it must exit 2 with one ``aqueue: error:`` line,
    before the app is imported or Redis is reached; that line."""
    from aqueue.cli.main import main

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["worker", "no_such_module:tasks", "--redis", REDIS_URL, *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("aqueue: error: "), err
    return err


#: A JSON message of the web app's WebSocket.
Message = dict[str, Any]


async def next_of(ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 5.0) -> Message:
    """The next message of type ``kind`` (others are skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            message: Message = await ws.receive_json()
            if message["type"] == kind:
                return message
