"""Connection faults, produced for real against redis-server processes the tests start on free ports (and the shared
Redis on 6379): a busy client, a Redis that stops answering (SIGSTOP), error replies, missing ACL rights, a request
too large, TLS and password mistakes, bad URLs at the command line, and a ``Tasks`` used from several event loops."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

import aqueue
from aqueue._redis.connect import open_connection
from tests.helpers import REDIS_URL, RunningWorker, delete_queue, wait_until

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary")

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """A redis-server of this test on a free loopback port, started with ``args`` (no persistence)."""

    def __init__(self, *args: str, tls: bool = False) -> None:
        self.port = _free_port()
        ports = ["--port", "0", "--tls-port", str(self.port)] if tls else ["--port", str(self.port)]
        self.proc = subprocess.Popen(
            ["redis-server", *ports, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:  # listening means ready: nothing to load
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)

    def url(self, userinfo: str = "", scheme: str = "redis", query: str = "") -> str:
        return f"{scheme}://{userinfo}127.0.0.1:{self.port}/0" + (f"?{query}" if query else "")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def server_factory() -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(*args: str, tls: bool = False) -> Server:
        started.append(Server(*args, tls=tls))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def registry(url: str, redis_timeout: float | None = None) -> tuple[aqueue.Tasks, aqueue.Task[[object], None]]:
    tasks = aqueue.Tasks(f"f-{uuid.uuid4().hex[:8]}", url, redis_timeout=redis_timeout)

    @tasks.task(name="noop")
    async def noop(x: object) -> None:
        return None

    return tasks, noop


async def breaker_of(tasks: aqueue.Tasks) -> tuple[str, int]:
    broker = tasks._broker_instance
    assert broker is not None
    return broker.breaker.state, broker.breaker.failures


# -- 1. a busy client is not a down Redis ----------------------------------------------------------------------


async def test_300_concurrent_enqueues_all_succeed_and_the_breaker_stays_closed() -> None:
    tasks, noop = registry(REDIS_URL)
    try:
        await noop.enqueue(0)  # connected: the next calls do not queue behind the first connection
        for _ in range(2):
            jobs = await asyncio.gather(*(noop.enqueue(i) for i in range(300)))
            assert len({job.id for job in jobs}) == 300
        assert (await tasks.info()).stats["enqueued"] == 601
        assert await breaker_of(tasks) == ("closed", 0)
    finally:
        await tasks.close()
        await delete_queue(REDIS_URL, tasks.queue)


async def test_a_worker_at_concurrency_300_reporting_progress_runs_1000_jobs_without_a_failed_attempt() -> None:
    tasks = aqueue.Tasks(f"f-{uuid.uuid4().hex[:8]}", REDIS_URL)

    @tasks.task(name="step")
    async def step(i: int) -> int:
        await aqueue.progress(50, "half way")
        await asyncio.sleep(0.01)
        await aqueue.progress(100)
        return i

    rw = RunningWorker(aqueue.Worker(tasks, concurrency=300))
    try:
        await tasks.enqueue_many([step.spec(i) for i in range(1000)])

        async def finished() -> bool:
            return (await tasks.info()).stats.get("succeeded", 0) == 1000

        await wait_until(finished, 60, 0.1)
        stats = (await tasks.info()).stats
        assert (stats.get("failed", 0), stats.get("retried", 0), stats.get("dead", 0)) == (0, 0, 0)
        assert await breaker_of(tasks) == ("closed", 0)
    finally:
        await rw.stop()
        await tasks.close()
        await delete_queue(REDIS_URL, tasks.queue)


async def test_calls_wait_for_a_free_connection_of_a_small_pool_and_a_long_wait_is_no_outage(
    server_factory: Callable[..., Server],
) -> None:
    server = server_factory()
    tasks, noop = registry(server.url(query="max_connections=2"))
    try:
        await asyncio.gather(*(noop.enqueue(i) for i in range(50)))  # 50 calls through 2 connections
        assert await breaker_of(tasks) == ("closed", 0)
    finally:
        await tasks.close()
    tasks, noop = registry(server.url(query="max_connections=1"), redis_timeout=0.5)
    try:
        broker = await tasks._broker()
        await broker.ensure_groups()
        hold = broker.wait_for_work("c", 2.0)  # holds the only connection for 2 s
        blocked = asyncio.ensure_future(hold)
        await asyncio.sleep(0.1)
        with pytest.raises(aqueue.BrokerUnavailable, match="no free Redis connection"):
            await noop.enqueue(1)
        await blocked
        assert await breaker_of(tasks) == ("closed", 0)
    finally:
        await tasks.close()


# -- 2. a deadline when Redis stops answering; blocking reads are not hangs ---------------------------------------


async def test_enqueue_to_a_redis_that_stopped_answering_fails_within_the_deadline_and_opens_the_circuit(
    server_factory: Callable[..., Server],
) -> None:
    server = server_factory()
    tasks, noop = registry(server.url(), redis_timeout=1.0)
    try:
        await noop.enqueue(0)
        server.proc.send_signal(signal.SIGSTOP)
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(aqueue.BrokerUnavailable, match="did not answer within 1 s"):
                await noop.enqueue(1)
            assert time.monotonic() - started < 1.5
        assert (await breaker_of(tasks))[0] == "open"
        server.proc.send_signal(signal.SIGCONT)

        async def enqueued() -> bool:
            try:
                await noop.enqueue(2)
            except aqueue.BrokerUnavailable:
                return False
            return True

        await wait_until(enqueued, 10, 0.1)
        assert await breaker_of(tasks) == ("closed", 0)
    finally:
        server.proc.send_signal(signal.SIGCONT)
        await tasks.close()


async def test_an_idle_worker_and_result_waiters_on_a_healthy_redis_log_no_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A 1 s deadline (the URL's socket_timeout), and for 15 s: the worker's blocking reads (5 s), its scheduler's (up
    # to 30 s) and the results reader's (5 s) all outlast it.
    tasks, noop = registry(REDIS_URL + "?socket_timeout=1")
    caplog.set_level(logging.DEBUG, logger="aqueue")
    rw = RunningWorker(aqueue.Worker(tasks, concurrency=4))
    try:
        jobs = [await noop.with_options(delay=60).enqueue(i) for i in range(3)]
        waits = [asyncio.create_task(job.result(timeout=15)) for job in jobs]
        for wait in waits:
            with pytest.raises(aqueue.ResultTimeout):
                await wait
        assert await breaker_of(tasks) == ("closed", 0)
        failures = [
            r.getMessage() for r in caplog.records if "answer" in r.getMessage() or r.levelno >= logging.WARNING
        ]
        assert failures == []
    finally:
        await rw.stop()
        await tasks.close()
        await delete_queue(REDIS_URL, tasks.queue)


# -- 3. an error reply proves Redis answers --------------------------------------------------------------------


async def test_an_error_reply_from_a_restarted_redis_closes_the_open_circuit(
    server_factory: Callable[..., Server],
) -> None:
    server = server_factory()
    tasks, noop = registry(server.url(), redis_timeout=1.0)
    try:
        broker = await tasks._broker()
        await broker.ensure_groups()
        server.proc.send_signal(signal.SIGSTOP)
        for _ in range(3):
            with pytest.raises(aqueue.BrokerUnavailable):
                await noop.enqueue(1)
        assert broker.breaker.is_open
        server.proc.send_signal(signal.SIGCONT)
        server.proc.kill()
        server.proc.wait()
        restarted = subprocess.Popen(
            ["redis-server", "--port", str(server.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        server.proc = restarted  # empty: no stream, no consumer group
        await broker.redis.connection_pool.disconnect()  # the first call that gets through gets an error reply

        async def error_reply() -> bool:
            try:
                await broker.wait_for_work("c", 0.01)
            except aqueue.BrokerUnavailable:
                return False  # still starting, or no probe due yet
            except redis.ResponseError as exc:
                assert "NOGROUP" in str(exc)
                return True
            raise AssertionError("XREADGROUP found a group on an empty Redis")

        await wait_until(error_reply, 10, 0.05)
        assert (broker.breaker.state, broker.breaker.failures) == ("closed", 0)
    finally:
        await tasks.close()


# -- 4. missing ACL rights -------------------------------------------------------------------------------------


async def test_a_user_without_a_right_the_scripts_need_gets_permission_denied_naming_the_command(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    server = server_factory()
    redis.Redis(port=server.port).acl_setuser(
        "app", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-time"]
    )
    url = server.url("app:pw@")
    tasks, noop = registry(url)
    try:
        for _ in range(4):
            with pytest.raises(aqueue.PermissionDenied, match=r"may not run TIME .*\+time.*docs/deployment.md") as err:
                await noop.enqueue(1)
            assert isinstance(err.value, PermissionError)
        assert await breaker_of(tasks) == ("closed", 0)
    finally:
        await tasks.close()
    code, _, err_text = run_cli(tmp_path, url, "enqueue", "app:tasks", "noop", "--args", "[1]")
    assert code == 2
    assert err_text.startswith("aqueue: error: the Redis user may not run TIME") and err_text.count("\n") == 1


# -- 5. errors that retrying cannot help: clear, and no outage --------------------------------------------------


async def test_an_argument_bigger_than_proto_max_bulk_len_is_a_clear_error_and_no_outage(
    server_factory: Callable[..., Server],
) -> None:
    server = server_factory("--proto-max-bulk-len", "1mb")
    tasks, noop = registry(server.url())
    try:
        for _ in range(4):
            with pytest.raises(aqueue.ConfigurationError, match="proto-max-bulk-len"):
                await noop.enqueue("x" * 2_000_000)
        assert await breaker_of(tasks) == ("closed", 0)
        await noop.enqueue("small")
    finally:
        await tasks.close()


async def test_a_wrong_password_says_authentication_failed_and_is_no_outage(
    server_factory: Callable[..., Server],
) -> None:
    server = server_factory("--requirepass", "right")
    tasks, noop = registry(server.url(":wrong@"))
    try:
        for _ in range(4):
            with pytest.raises(aqueue.PermissionDenied, match="authentication failed"):
                await noop.enqueue(1)
        assert tasks._broker_instance is None  # never connected: nothing to count on
    finally:
        await tasks.close()
    tasks, noop = registry(server.url(":right@"))
    try:
        await noop.enqueue(1)
    finally:
        await tasks.close()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test CA, and a server and a client certificate it signed (for 127.0.0.1), made with openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command")
    d = tmp_path_factory.mktemp("tls")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=aqueue test CA")  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", "/CN=127.0.0.1")  # fmt: skip
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    return d


async def test_tls_with_a_private_ca_and_a_client_certificate_and_clear_errors_without_them(
    server_factory: Callable[..., Server], certificates: Path
) -> None:
    d = certificates
    server = server_factory(
        "--tls-cert-file", str(d / "server.crt"), "--tls-key-file", str(d / "server.key"),
        "--tls-ca-cert-file", str(d / "ca.crt"), "--tls-auth-clients", "yes", tls=True,
    )  # fmt: skip
    ca = f"ssl_ca_certs={d / 'ca.crt'}"
    cases = {
        f"{ca}&ssl_certfile={d / 'client.crt'}&ssl_keyfile={d / 'client.key'}": None,
        ca: "ssl_certfile",  # no client certificate
        "": "CERTIFICATE_VERIFY_FAILED",  # the private CA not given
    }
    for query, error in cases.items():
        tasks, noop = registry(server.url(scheme="rediss", query=query))
        try:
            for _ in range(1 if error is None else 4):
                if error is None:
                    await noop.enqueue(1)
                else:
                    with pytest.raises(aqueue.ConfigurationError, match=error):
                        await noop.enqueue(1)
            assert tasks._broker_instance is None or await breaker_of(tasks) == ("closed", 0)
        finally:
            await tasks.close()


APP = """
import aqueue

tasks = aqueue.Tasks("faults-cli")

@tasks.task(name="noop")
async def noop(x: int) -> None:
    return None
"""


def run_cli(cwd: Path, url: str, *args: str) -> tuple[int, str, str]:
    (cwd / "app.py").write_text(textwrap.dedent(APP))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AQUEUE_")}
    env |= {"PYTHONPATH": str(ROOT), "AQUEUE_REDIS_URL": url}
    proc = subprocess.run([sys.executable, "-m", "aqueue", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def not_redis() -> Iterator[int]:
    """A TCP server that answers anything with an HTTP error: the port of something that is not Redis."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


@pytest.mark.parametrize("command", [("info", "app:tasks"), ("enqueue", "app:tasks", "noop", "--args", "[1]")])
@pytest.mark.parametrize(
    "url, says",
    [
        ("redis://127.0.0.1:6379/99", "database number"),
        ("redis://127.0.0.1:NOT_REDIS/0", "Redis protocol"),
        ("redis://127.0.0.1:6379/0?max_connections=abc", "max_connections='abc'"),
        ("redis://127.0.0.1:99999/0", "Port out of range"),
        ("redis://127.0.0.1:6379/0?nosuch=1", "'nosuch' is not supported"),
    ],
)
def test_a_bad_redis_url_is_one_line_and_exit_2_at_the_command_line(
    tmp_path: Path, not_redis: int, url: str, says: str, command: tuple[str, ...]
) -> None:
    code, _, err = run_cli(tmp_path, url.replace("NOT_REDIS", str(not_redis)), *command)
    assert (code, err.count("\n")) == (2, 1), err
    assert err.startswith("aqueue: error: ") and says in err


async def test_a_job_id_that_is_not_valid_unicode_is_a_clear_error(tmp_path: Path) -> None:
    tasks, _ = registry(REDIS_URL)
    try:
        job = tasks.job("\udcff")
        for call in (job.record, job.cancel, job.status):
            with pytest.raises(aqueue.ConfigurationError, match="not valid Unicode"):
                await call()
        assert await breaker_of(tasks) == ("closed", 0)
    finally:
        await tasks.close()
    code, _, err = run_cli(tmp_path, REDIS_URL, "job", "app:tasks", "\udcff")
    assert (code, err.count("\n")) == (2, 1) and "not valid Unicode" in err, err


def test_cluster_urls_take_tls_pool_and_timeout_options() -> None:
    options = [
        "ssl_ca_certs=/etc/ca.pem", "ssl_certfile=/c.pem", "ssl_keyfile=/k.pem", "ssl_cert_reqs=required",
        "max_connections=20", "socket_timeout=2.5", "socket_connect_timeout=3",
    ]  # fmt: skip
    url = "rediss+cluster://u:p@10.0.0.1:7000,10.0.0.2:7000?" + "&".join(options)
    conn = open_connection(url)
    kwargs = conn.client.connection_kwargs  # type: ignore[attr-defined]
    assert (kwargs["ssl_ca_certs"], kwargs["ssl_certfile"], kwargs["ssl_keyfile"]) == (
        "/etc/ca.pem",
        "/c.pem",
        "/k.pem",
    )
    assert (kwargs["max_connections"], kwargs["socket_connect_timeout"], kwargs["socket_timeout"]) == (20, 3.0, None)
    assert (conn.cluster, conn.timeout) == (True, 2.5)
    with pytest.raises(aqueue.ConfigurationError, match="ssl_"):
        aqueue.Tasks(redis_url="redis+cluster://10.0.0.1:7000?ssl_ca_certs=/etc/ca.pem")


# -- 6. one Tasks, several event loops ---------------------------------------------------------------------------


def _in_thread(fn: Callable[[], None]) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    if errors:
        raise errors[0]


def test_a_tasks_is_reusable_in_a_second_event_loop_with_or_without_close() -> None:
    tasks, noop = registry(REDIS_URL)

    async def twenty(close: bool) -> None:
        await asyncio.gather(*(noop.enqueue(i) for i in range(20)))
        if close:
            await tasks.close()

    def loops() -> None:
        asyncio.run(twenty(close=False))
        asyncio.run(twenty(close=False))  # the first loop is closed: a fresh connection
        asyncio.run(twenty(close=True))
        asyncio.run(twenty(close=True))

    try:
        _in_thread(loops)
        assert asyncio.run(_enqueued(tasks)) == 80
    finally:
        asyncio.run(delete_queue(REDIS_URL, tasks.queue))


async def _enqueued(tasks: aqueue.Tasks) -> int:
    try:
        return (await tasks.info()).stats["enqueued"]
    finally:
        await tasks.close()


def test_a_tasks_used_from_another_loop_while_its_loop_is_open_says_to_close_it() -> None:
    tasks, noop = registry(REDIS_URL)
    first = asyncio.new_event_loop()
    try:
        first.run_until_complete(noop.enqueue(1))

        def second() -> None:
            with pytest.raises(aqueue.ConfigurationError, match=r"await tasks.close\(\) in that loop"):
                asyncio.run(noop.enqueue(2))

        _in_thread(second)
        first.run_until_complete(tasks.close())
        asyncio.run(noop.enqueue(3))  # closed in its loop: usable anywhere
    finally:
        first.close()
        asyncio.run(_cleanup(tasks))


async def _cleanup(tasks: aqueue.Tasks) -> None:
    await tasks.close()
    await delete_queue(REDIS_URL, tasks.queue)
