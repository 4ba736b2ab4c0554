"""The ``aqueue`` command line, run as a real subprocess (``python -m aqueue``) against the real Redis."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis

import aqueue
from aqueue.cli.main import main
from tests.helpers import REDIS_URL, wait_until

DEAD_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
ROOT = Path(__file__).resolve().parent.parent

APP = """
import asyncio
import aqueue

tasks = aqueue.Tasks("cli-default", "redis://127.0.0.1:6379/0")
not_tasks = 42

@tasks.task(name="add")
async def add(x: int, y: int) -> int:
    return x + y

@tasks.task(name="nap")
async def nap(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """A directory holding ``app.py`` (``app:tasks`` with tasks ``add`` and ``nap``); the CLI runs in it."""
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    return tmp_path


@pytest.fixture
def queue() -> Iterator[str]:
    """A fresh queue name; its keys are deleted from Redis afterwards."""
    name = f"cli-{uuid.uuid4().hex[:10]}"
    yield name
    r = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(r.scan_iter(match=f"aqueue:{{{name}}}:*", count=1000))
        if keys:
            r.delete(*keys)
    finally:
        r.close()


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    # No AQUEUE_* settings leak in from the developer's shell; the repository is importable from any cwd.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AQUEUE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env | (extra or {})


def run_cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m aqueue ARGS`` to completion."""
    cmd = [sys.executable, "-m", "aqueue", *args]
    return subprocess.run(cmd, cwd=cwd, env=_env(env), capture_output=True, text=True, timeout=60)


async def start_cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """Start ``python -m aqueue ARGS`` in the background, output captured."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aqueue", *args, cwd=cwd, env=_env(env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def run_cli_async(cwd: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``run_cli`` for async tests: (exit code, stdout, stderr)."""
    proc = await start_cli(cwd, *args, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def producer(queue: str) -> aqueue.Tasks:
    """A registry on ``queue`` with stand-ins for the app's tasks, for enqueueing and inspecting from here."""
    tasks = aqueue.Tasks(queue, REDIS_URL)

    @tasks.task(name="add")
    async def add(x: int, y: int) -> int:
        raise AssertionError("runs in the CLI worker only")

    @tasks.task(name="nap")
    async def nap(seconds: float) -> float:
        raise AssertionError("runs in the CLI worker only")

    return tasks


async def statuses(tasks: aqueue.Tasks, jobs: list[aqueue.Job[Any]]) -> list[aqueue.JobStatus]:
    return [await j.status() for j in jobs]


def assert_one_error_line(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("aqueue: error: "), lines[0]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


# -- errors: one line, exit 2 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        ("app", "expected MODULE:ATTR"),
        ("app:", "expected MODULE:ATTR"),
        ("no_such_module:tasks", "cannot import module 'no_such_module'"),
        ("app:missing", "has no attribute 'missing'"),
        ("app:not_tasks", "not an aqueue.Tasks"),
    ],
)
def test_bad_target_is_one_error_line(app_dir: Path, target: str, fragment: str) -> None:
    assert_one_error_line(run_cli(app_dir, "worker", target, "--burst"), fragment)


def test_module_failing_at_import_is_one_error_line(app_dir: Path) -> None:
    (app_dir / "broken.py").write_text("import no_such_dependency\n")
    assert_one_error_line(run_cli(app_dir, "info", "broken:tasks"), "importing 'broken' failed", "no_such_dependency")


@pytest.mark.parametrize("command", [["worker", "app:tasks"], ["enqueue", "app:tasks", "add"], ["info", "app:tasks"]])
def test_unreachable_redis_is_one_error_line(app_dir: Path, command: list[str]) -> None:
    assert_one_error_line(run_cli(app_dir, *command, "--redis", DEAD_URL), "cannot reach Redis", DEAD_URL)


def test_unreachable_redis_from_environment(app_dir: Path) -> None:
    result = run_cli(app_dir, "worker", "app:tasks", "--burst", env={"AQUEUE_REDIS_URL": DEAD_URL})
    assert_one_error_line(result, "cannot reach Redis", DEAD_URL)


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (["worker", "app:tasks", "--concurrency", "0"], {}, "--concurrency: expected an integer >= 1"),
        (["worker", "app:tasks", "--lease", "nan"], {}, "--lease"),
        (["worker", "app:tasks", "--log-level", "loud"], {}, "--log-level"),
        (["worker", "app:tasks", "--no-such-flag"], {}, "unrecognized arguments"),
        (["worker", "app:tasks"], {"AQUEUE_CONCURRENCY": "many"}, "$AQUEUE_CONCURRENCY"),
        (["worker", "app:tasks"], {"AQUEUE_BURST": "maybe"}, "$AQUEUE_BURST"),
        (["worker", "app:tasks", "--queue", "a:b"], {}, "queue name"),
        (["worker", "app:tasks", "--processes", "2", "--redis", "memory://x"], {}, "memory://x"),
        (["worker", "app:tasks", "--redis", "http://x"], {}, "unsupported Redis URL"),
        (["enqueue", "app:tasks", "nope"], {}, "no task 'nope'"),
        (["enqueue", "app:tasks", "add", "--args", "[1,"], {}, "--args: invalid JSON"),
        (["enqueue", "app:tasks", "add", "--args", "{}"], {}, "--args: expected a JSON array"),
        (["enqueue", "app:tasks", "add", "--kwargs", "[]"], {}, "--kwargs: expected a JSON object"),
        (["enqueue", "app:tasks", "add", "--priority", "urgent"], {}, "unknown priority 'urgent'"),
        (["enqueue", "app:tasks", "add", "--delay", "-1"], {}, "--delay"),
        (["demo", "--jobs", "0"], {}, "--jobs"),
        ([], {}, "required: COMMAND"),
    ],
)
def test_bad_values_are_one_error_line(app_dir: Path, args: list[str], env: dict[str, str], fragment: str) -> None:
    assert_one_error_line(run_cli(app_dir, *args, env=env), fragment)


def test_main_in_process_returns_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"aqueue {aqueue.__version__}"
    assert main(["worker"]) == 2
    assert capsys.readouterr().err.startswith("aqueue: error: the following arguments are required")


# -- enqueue, worker, info against the real Redis ----------------------------------------------------------


async def test_enqueue_prints_the_id_of_a_stored_job(app_dir: Path, queue: str) -> None:
    code, out, err = await run_cli_async(
        app_dir, "enqueue", "app:tasks", "add", "--queue", queue, "--args", "[2, 3]", "--priority", "high"
    )
    assert (code, err) == (0, "")
    assert re.fullmatch(r"[0-9a-f]{32}\n", out), out
    code, delayed_out, _ = await run_cli_async(
        app_dir, "enqueue", "app:tasks", "add", "--kwargs", '{"x": 1, "y": 2}', "--delay", "60",
        env={"AQUEUE_QUEUE": queue},
    )  # fmt: skip
    assert code == 0
    async with aqueue.Tasks(queue, REDIS_URL) as tasks:
        record = await tasks.job(out.strip()).record()
        assert (record.status, record.task, record.priority, record.args) == ("queued", "add", "high", [2, 3])
        delayed = await tasks.job(delayed_out.strip()).record()
        assert (delayed.status, delayed.kwargs) == ("scheduled", {"x": 1, "y": 2})


async def test_enqueue_wait_prints_the_result_or_says_why_there_is_none(app_dir: Path, queue: str) -> None:
    """``--wait``: the id at once, then the result as JSON (exit 0); a dead-lettered job's error, or a job still
    unfinished after S seconds, on stderr with exit 1 (the id is on stdout either way)."""
    tasks = aqueue.Tasks(queue, REDIS_URL)

    @tasks.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    @tasks.task(name="nap")  # app.py's nap, enqueued by the CLI with its 3 attempts
    async def nap(seconds: float) -> float:
        raise RuntimeError(f"no nap for {seconds}")

    where = ["app:tasks", "--queue", queue]
    async with tasks:
        running = asyncio.create_task(aqueue.Worker(tasks, concurrency=2).run(handle_signals=False))
        code, out, err = await run_cli_async(app_dir, "enqueue", *where, "add", "--args", "[2, 3]", "--wait")
        assert (code, err) == (0, ""), err
        job_id, result = out.splitlines()
        assert re.fullmatch(r"[0-9a-f]{32}", job_id) and orjson.loads(result) == 5
        assert await tasks.job(job_id).result(timeout=1) == 5
        code, out, err = await run_cli_async(app_dir, "enqueue", *where, "nap", "--args", "[1]", "--wait", "10")
        assert code == 1 and err == f"aqueue: job {out.strip()} failed: RuntimeError: no nap for 1\n", (out, err)
    assert running.done()  # leaving `async with tasks:` stopped the worker
    await running
    code, out, err = await run_cli_async(app_dir, "enqueue", *where, "add", "--args", "[1, 1]", "--wait", "0.3")
    assert code == 1 and f"job {out.strip()} did not finish within 0.3 s; it goes on" in err, (out, err)
    async with aqueue.Tasks(queue, REDIS_URL) as probe:
        assert await probe.job(out.strip()).status() == aqueue.JobStatus.QUEUED


async def test_burst_worker_drains_the_queue_and_logs_json(app_dir: Path, queue: str) -> None:
    async with producer(queue) as tasks:
        add = tasks.get("add")
        assert add is not None
        jobs = await tasks.enqueue_many([add.spec(i, i) for i in range(50)])
        # The flag wins over the (invalid) environment value, which is then never parsed.
        code, _, err = await run_cli_async(
            app_dir, "worker", "app:tasks", "--burst", "--concurrency", "8",
            env={"AQUEUE_QUEUE": queue, "AQUEUE_LOG_FORMAT": "json", "AQUEUE_CONCURRENCY": "many"},
        )  # fmt: skip
        assert code == 0, err
        assert [await j.result(timeout=1) for j in jobs] == [2 * i for i in range(50)]
        info = await tasks.info()
        assert (info.queued, info.active, info.workers) == ({"high": 0, "normal": 0, "low": 0}, 0, [])
    lines = [orjson.loads(line) for line in err.splitlines()]
    assert lines and all(set(line) >= {"ts", "level", "logger", "message"} for line in lines)
    assert any(line["logger"] == "aqueue._worker.worker" and " up: " in line["message"] for line in lines)


@pytest.mark.parametrize("processes", ["1", "2"])
async def test_worker_runs_on_uvloop(app_dir: Path, queue: str, processes: str) -> None:
    async with producer(queue) as tasks:
        add = tasks.get("add")
        assert add is not None
        jobs = await tasks.enqueue_many([add.spec(i, 1) for i in range(40)])
        code, _, err = await run_cli_async(
            app_dir, "worker", "app:tasks", "--burst", "--queue", queue, "--loop", "uvloop", "--processes", processes,
            "--log-level", "debug",
        )  # fmt: skip
        assert code == 0, err
        assert [await j.result(timeout=1) for j in jobs] == [i + 1 for i in range(40)]
        assert (await tasks.info()).stats["succeeded"] == 40
    assert err.count("loop=uvloop") == int(processes), err  # every worker process ran on uvloop


@pytest.mark.parametrize("shutdown_timeout", ["0.1", "5"])
async def test_sigterm_stops_the_worker_and_loses_nothing(app_dir: Path, queue: str, shutdown_timeout: str) -> None:
    async with producer(queue) as tasks:
        nap = tasks.get("nap")
        assert nap is not None
        # Naps long enough that the two running ones are still running when SIGTERM arrives.
        jobs = await tasks.enqueue_many([nap.spec(2.0) for _ in range(6)])
        proc = await start_cli(
            app_dir, "worker", "app:tasks", "--queue", queue, "--concurrency", "2",
            "--shutdown-timeout", shutdown_timeout,
        )  # fmt: skip

        async def two_running() -> bool:
            return (await tasks.info()).active == 2

        await wait_until(two_running, 10.0)
        code, out, err = await run_cli_async(app_dir, "info", "app:tasks", "--queue", queue, "--json")
        assert code == 0, err
        snapshot = orjson.loads(out)
        assert snapshot["queue"] == queue and snapshot["active"] == 2
        [worker] = snapshot["workers"]
        assert worker["concurrency"] == 2 and 0 <= worker["heartbeat_age"] < 30

        proc.send_signal(signal.SIGTERM)
        _, err_bytes = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err_bytes.decode()
        assert "Traceback" not in err_bytes.decode()
        info = await tasks.info()
        assert (info.active, info.workers) == (0, [])
        after = await statuses(tasks, jobs)
        # Within the shutdown timeout the two running naps finish; past it they are put back, not lost.
        finished = 2 if shutdown_timeout == "5" else 0
        assert after.count(aqueue.JobStatus.SUCCEEDED) == finished
        assert after.count(aqueue.JobStatus.QUEUED) == 6 - finished == sum(info.queued.values())

        code, _, err = await run_cli_async(app_dir, "worker", "app:tasks", "--queue", queue, "--burst")
        assert code == 0, err
        assert await statuses(tasks, jobs) == [aqueue.JobStatus.SUCCEEDED] * 6


async def test_processes_share_the_queue_and_drain_it(app_dir: Path, queue: str) -> None:
    async with producer(queue) as tasks:
        nap = tasks.get("nap")
        assert nap is not None
        # Enough work (about 2.5 s for one process) that the second process is up before the first is done.
        jobs = await tasks.enqueue_many([nap.spec(0.25) for _ in range(40)])
        args = ["worker", "app:tasks", "--queue", queue, "--processes", "2", "--concurrency", "4", "--burst"]
        code, _, err = await run_cli_async(app_dir, *args)
        assert code == 0, err
        records = [await j.record() for j in jobs]
        assert {r.status for r in records} == {aqueue.JobStatus.SUCCEEDED}
        assert len({r.worker for r in records}) == 2
        assert err.count(" up: ") == 2 and err.count(" down: ") == 2


FLAKY = """
import os
import sys
from app import tasks

# The first worker process (run with --processes 1, unlike its supervisor) to import this module dies.
if sys.argv[sys.argv.index("--processes") + 1] == "1":
    try:
        os.close(os.open("first-child", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        pass
    else:
        raise SystemExit(3)
"""


def test_a_failing_process_stops_the_others(app_dir: Path, queue: str) -> None:
    (app_dir / "flaky.py").write_text(FLAKY)
    # Not --burst: without fail-fast the healthy process would run on and this would time out.
    result = run_cli(app_dir, "worker", "flaky:tasks", "--queue", queue, "--processes", "2")
    assert result.returncode == 1, result.stderr
    [summary] = [line for line in result.stderr.splitlines() if line.startswith("aqueue: error:")]
    assert "of 2 worker processes failed" in summary and "exited 3" in summary
    assert "Traceback" not in result.stderr


async def test_info_prints_a_table_and_parseable_json(app_dir: Path, queue: str) -> None:
    async with producer(queue) as tasks:
        add = tasks.get("add")
        assert add is not None
        await add.with_options(priority="low").enqueue(1, 2)
        await add.with_options(delay=60).enqueue(1, 2)
    code, out, err = await run_cli_async(app_dir, "info", "app:tasks", "--queue", queue, "--json")
    assert code == 0, err
    data = orjson.loads(out)
    assert data["queued"] == {"high": 0, "normal": 0, "low": 1}
    assert (data["active"], data["scheduled"], data["dead"], data["workers"]) == (0, 1, 0, [])
    assert data["stats"]["enqueued"] == 2
    code, out, err = await run_cli_async(app_dir, "info", "app:tasks", "--queue", queue)
    assert code == 0, err
    assert f"queue      {queue} on {REDIS_URL}" in out
    assert "queued     high 0  normal 0  low 1" in out
    assert "scheduled  1" in out and "enqueued 2" in out and "workers    0" in out


# -- demo ----------------------------------------------------------------------------------------------------


def test_demo_runs_to_completion(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "demo", "--jobs", "300", "--concurrency", "20")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"^\[\s*\d+\.\ds\] done \d+/300 ", out, re.MULTILINE), out
    total = re.search(r"^total\s+(\d+)\s+(\d+)\s+(\d+)$", out, re.MULTILINE)
    assert total is not None, out
    assert total.groups() == ("297", "3", "0")  # 1% of the jobs always fail and end dead
    assert re.search(r"^fails\s+0\s+3\s+0$", out, re.MULTILINE), out
    assert re.search(r"p50 \d+ ms, p99 \d+ ms", out) and "throughput" in out
    assert "demo ok" in out


async def test_demo_with_web_serves_the_dashboard_and_keeps_a_load_until_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    proc = await start_cli(tmp_path, "demo", "--jobs", "200", "--web", f"127.0.0.1:{port}", "--rate", "200")
    try:
        assert proc.stdout is not None
        first = [(await asyncio.wait_for(proc.stdout.readline(), 20)).decode() for _ in range(2)]
        assert first[1] == f"dashboard: http://127.0.0.1:{port}/  (Ctrl-C stops the demo)\n", first
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            async with http.get("/") as resp:
                assert resp.status == 200 and "<html" in await resp.text()
            lines: list[str] = []
            while "keep the dashboard moving" not in (lines or [""])[-1]:
                lines.append((await asyncio.wait_for(proc.stdout.readline(), 60)).decode())
            assert any(line.startswith("demo ok") for line in lines), lines
            async with http.get("/status") as resp:
                before = (await resp.json())["counters"]["enqueued"]
            assert before >= 200
            await asyncio.sleep(1.5)
            async with http.get("/status") as resp:
                status = await resp.json()
            # The steady load goes on after the batch: 200 jobs/s for 1.5 s, and the worker keeps up.
            assert status["counters"]["enqueued"] - before >= 150, status["counters"]
            assert status["workers"] and status["queued"] < 200, status
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert out.decode().splitlines()[-1] == "stopped" and "Traceback" not in err.decode()


def test_demo_web_port_in_use_is_one_error_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(tmp_path, "demo", "--web", f"127.0.0.1:{port}")
    assert_one_error_line(result, f"cannot serve the web app on 127.0.0.1:{port}")


# -- the web app: `worker --web` and `web` -------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def answering(http: aiohttp.ClientSession, path: str) -> bool:
    """True once ``GET path`` answers 200 (the process may still be starting)."""
    try:
        async with http.get(path) as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def stop_cleanly(proc: asyncio.subprocess.Process) -> str:
    """SIGTERM; it must exit 0 without a traceback. Returns its stderr (the log)."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()
    return err.decode()


async def test_worker_serves_the_web_app_beside_it(app_dir: Path, queue: str) -> None:
    port = free_port()
    proc = await start_cli(
        app_dir, "worker", "app:tasks", "--queue", queue, "--concurrency", "2",
        "--web", f"127.0.0.1:{port}", "--token-env", "AQUEUE_TEST_TOKEN", env={"AQUEUE_TEST_TOKEN": "t0ken"},
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http, producer(queue) as tasks:
            await wait_until(lambda: answering(http, "/health/live"), 10.0)
            assert await answering(http, "/health/ready")
            job = {"task": "add", "args": [2, 3]}
            async with http.post("/jobs", json=job) as resp:
                assert resp.status == 401
            async with http.post("/jobs", json=job, headers={"Authorization": "Bearer t0ken"}) as resp:
                assert resp.status == 201
                job_id = (await resp.json())["id"]
            assert await tasks.job(job_id).result(timeout=10) == 5
            async with http.get("/status") as resp:
                status = await resp.json()
            assert status["attached_worker"] == status["workers"][0]["id"]
    finally:
        log = await stop_cleanly(proc)
    url = f"http://127.0.0.1:{port}/"
    assert f"web app on {url} (token required: Authorization: Bearer $AQUEUE_TEST_TOKEN; for the dashboard, open " \
        f"{url}?token=<the value of $AQUEUE_TEST_TOKEN>)" in log, log  # fmt: skip
    assert "t0ken" not in log, log


async def test_web_command_serves_the_app_alone(app_dir: Path, queue: str) -> None:
    port = free_port()
    async with producer(queue) as tasks:
        add = tasks.get("add")
        assert add is not None
        job = await add.enqueue(1, 1)
        proc = await start_cli(
            app_dir, "web", "app:tasks", "--queue", queue, "--bind", f"127.0.0.1:{port}",
            env={"AQUEUE_ALLOW_ORIGINS": "https://admin.example.com, http://localhost:3000/"},
        )  # fmt: skip
        try:
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
                await wait_until(lambda: answering(http, "/health/ready"), 10.0)
                async with http.get("/jobs") as resp:
                    assert [j["id"] for j in (await resp.json())["jobs"]] == [job.id]
                async with http.get("/status") as resp:
                    status = await resp.json()
                assert (status["queue"], status["queued"], status["attached_worker"]) == (queue, 1, None)
                # A page of an origin named by --allow-origin (here its environment variable) may enqueue;
                # another site's page may not.
                body = {"task": "add", "args": [2, 2]}
                for origin, expected in (("http://localhost:3000", 201), ("https://evil.example", 403)):
                    async with http.post("/jobs", json=body, headers={"Origin": origin}) as resp:
                        assert resp.status == expected, (origin, await resp.text())
        finally:
            await stop_cleanly(proc)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["worker", "app:tasks", "--web", "localhost"], "expected HOST:PORT"),
        (["worker", "app:tasks", "--web", "127.0.0.1:70000"], "expected HOST:PORT"),
        (["worker", "app:tasks", "--processes", "2", "--web", "127.0.0.1:0"], "use --processes 1"),
        (["worker", "app:tasks", "--token-env", "X", "--burst"], "add --web"),
        (["worker", "app:tasks", "--allow-origin", "https://a.example", "--burst"], "add --web"),
        (["web", "app:tasks", "--allow-origin", "admin.example.com"], "expected origins like https://host[:port]"),
        (["web", "app:tasks", "--token-env", "AQUEUE_TEST_UNSET"], "AQUEUE_TEST_UNSET is not set"),
        (["web", "app:tasks", "--redis", "memory://x"], "lives inside one process"),
    ],
)
def test_bad_web_options_are_one_error_line(app_dir: Path, args: list[str], fragment: str) -> None:
    assert_one_error_line(run_cli(app_dir, *args), fragment)


def test_a_taken_port_is_one_error_line(app_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(app_dir, "web", "app:tasks", "--bind", f"127.0.0.1:{port}")
    assert_one_error_line(result, f"cannot serve the web app on 127.0.0.1:{port}")
