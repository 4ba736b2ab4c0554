"""The CLI's job-control commands: ``dead-letter list|reprocess``, ``cancel``, ``pause``, ``resume``, ``cleanup``.

The commands run in-process (``main([...])`` in a thread, since it runs its own event loop) and, for at least
one test, as a real ``python -m aqueue`` subprocess, against the real Redis: ``memory://`` lives inside one process,
so the CLI refuses it for these commands like it does for ``info`` and ``enqueue``. The reprocess logic they share
(``tasks.reprocess``) is tested directly on both backends in test_admin.py. Every test reads the effect back from
the queue.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import orjson
import pytest

import aqueue
from aqueue.cli import control as cli_control
from aqueue.cli.main import main
from tests.helpers import REDIS_URL, MakeTasks, StartWorker, wait_until

Cli = Callable[..., Awaitable[tuple[int, str, str]]]

DEAD_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
ROOT = Path(__file__).resolve().parent.parent
on_redis = pytest.mark.parametrize("backend", [REDIS_URL], ids=["redis"])


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    """``main`` configures the root logger; put pytest's handlers back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``MODULE:ATTR`` of an app module (a uniquely named one, so no test sees another's import)."""
    name = f"ctl_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text('import aqueue\n\ntasks = aqueue.Tasks("ctl-unused")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield f"{name}:tasks"
    sys.modules.pop(name, None)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], target: str, queue_name: str) -> Cli:
    """Run ``aqueue COMMAND… TARGET --redis REDIS --queue QUEUE ARGS…`` in-process: (exit code, stdout, stderr).

    ``command`` is one word or a tuple (``("dead-letter", "list")``).
    """

    async def run(command: str | tuple[str, ...], *args: str, redis: str = REDIS_URL) -> tuple[int, str, str]:
        words = [command] if isinstance(command, str) else list(command)
        argv = [*words, target, "--redis", redis, "--queue", queue_name, *args]
        capsys.readouterr()
        code = await asyncio.to_thread(main, argv)
        out, err = capsys.readouterr()
        return code, out, err

    return run


async def run_subprocess(cwd: Path, *args: str) -> tuple[int, str, str]:
    """``python -m aqueue ARGS`` as a real process: (exit code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AQUEUE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aqueue", *args, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def one_error_line(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("aqueue: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def app(tasks: aqueue.Tasks) -> aqueue.Tasks:
    """Register ``ok``, ``boom`` (dies at its first failure) and ``sleepy`` on ``tasks``."""

    @tasks.task(name="ok")
    async def ok(n: int) -> int:
        return n

    @tasks.task(name="boom", max_attempts=1)
    async def boom(n: int) -> int:
        raise RuntimeError(f"boom {n}\nsecond line")

    @tasks.task(name="sleepy")
    async def sleepy(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    return tasks


async def status_of(tasks: aqueue.Tasks, job_id: str) -> str | None:
    """The job's status, None when its record is gone."""
    try:
        return (await tasks.job(job_id).status()).value
    except aqueue.UnknownJob:
        return None


async def dead_jobs(tasks: aqueue.Tasks, start_worker: StartWorker, n: int) -> list[str]:
    """``n`` dead-lettered jobs, oldest first (the worker that ran them is stopped again)."""
    boom = tasks.get("boom")
    assert boom is not None
    jobs = [await boom.enqueue(i) for i in range(n)]
    worker = await start_worker(tasks, concurrency=1)

    async def all_dead() -> bool:
        return [await status_of(tasks, j.id) for j in jobs] == ["dead"] * n

    await wait_until(all_dead)
    await worker.stop()
    page = await (await tasks._broker()).dead_page(None, 100, newest_first=False)
    return [fields["job"] for _, fields in page]


# -- dead-letter list and reprocess ------------------------------------------------------------------------


@on_redis
async def test_dead_letter_list_shows_the_newest_entries(
    make_tasks: MakeTasks, start_worker: StartWorker, cli: Cli
) -> None:
    tasks = app(make_tasks())
    ids = await dead_jobs(tasks, start_worker, 3)
    code, out, err = await cli(("dead-letter", "list"), "--limit", "2")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"3 dead-letter entries in queue {tasks.queue}, newest 2 shown"
    assert lines[1].split() == ["ENTRY", "DEAD", "AT", "JOB", "TASK", "REASON"]
    assert [line.split()[4] for line in lines[2:]] == [ids[2], ids[1]]  # ENTRY, DEAD AT (3 words), JOB
    assert all(" boom " in line and "second line" in line for line in lines[2:])  # the reason, on one line
    code, out, err = await cli(("dead-letter", "list"), "--json")
    assert (code, err) == (0, "")
    data = orjson.loads(out)
    assert (data["queue"], data["total"]) == (tasks.queue, 3)
    assert [(e["job"], e["task"]) for e in data["entries"]] == [(i, "boom") for i in reversed(ids)]
    assert "RuntimeError: boom 0" in data["entries"][-1]["reason"]


@on_redis
async def test_dead_letter_reprocess_puts_jobs_back(make_tasks: MakeTasks, start_worker: StartWorker, cli: Cli) -> None:
    tasks = app(make_tasks())
    ids = await dead_jobs(tasks, start_worker, 4)
    code, out, err = await cli(("dead-letter", "reprocess"), ids[2], "nope")
    assert (code, err) == (1, ""), out  # one asked-for job was not put back
    assert out.splitlines() == [
        "requeued 1 job; 3 dead-letter entries left",
        "skipped nope: no record (never existed, or its retention expired)",
    ]
    assert [await status_of(tasks, i) for i in ids] == ["dead", "dead", "queued", "dead"]
    code, out, _ = await cli(("dead-letter", "reprocess"), "--max", "1", "--json")
    assert code == 0 and orjson.loads(out) == {"requeued": [ids[0]], "skipped": [], "left": 2}
    code, out, _ = await cli(("dead-letter", "reprocess"), "--all")
    assert (code, out) == (0, "requeued 2 jobs; 0 dead-letter entries left\n")
    assert [await status_of(tasks, i) for i in ids] == ["queued"] * 4
    # The requeued jobs run again (and die again: boom always fails).
    await start_worker(tasks, concurrency=1)

    async def dead_again() -> bool:
        return (await tasks.info()).dead == 4

    await wait_until(dead_again)
    code, _, err = await cli(("dead-letter", "reprocess"), ids[0], "--all")
    one_error_line(code, err, "give exactly one of JOB_ID..., --all or --max N")


# -- cancel --------------------------------------------------------------------------------------------------


@on_redis
async def test_cancel_reports_each_job_and_cancels_what_it_can(
    make_tasks: MakeTasks, start_worker: StartWorker, cli: Cli
) -> None:
    tasks = app(make_tasks())
    ok, sleepy = tasks.get("ok"), tasks.get("sleepy")
    assert ok is not None and sleepy is not None
    await start_worker(tasks, concurrency=2)
    done = await ok.enqueue(1)
    assert await done.result(timeout=5) == 1
    running = await sleepy.enqueue(30.0)

    async def is_running() -> bool:
        return await status_of(tasks, running.id) == "active"

    await wait_until(is_running)
    later = await ok.with_options(delay=60).enqueue(2)
    code, out, err = await cli("cancel", later.id, running.id, done.id, "nope", "--reason", "not needed")
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        f"{later.id}  cancelled",
        f"{running.id}  cancelling: it is running, its worker was told to stop it",
        f"{done.id}  not cancelled: it already finished (succeeded)",
        "nope  not cancelled: no such job (never enqueued, or its retention expired)",
    ]
    record = await later.record()
    assert (record.status, record.error) == ("cancelled", "not needed")
    assert (await tasks.info()).scheduled == 0

    async def running_cancelled() -> bool:
        return await status_of(tasks, running.id) == "cancelled"

    await wait_until(running_cancelled)
    assert await status_of(tasks, done.id) == "succeeded"
    # Every id cancelled: exit 0, and JSON for scripts.
    queued = await ok.with_options(delay=60).enqueue(3)
    code, out, _ = await cli("cancel", queued.id, "--json")
    assert code == 0
    assert orjson.loads(out) == {"jobs": [{"id": queued.id, "status": "cancelled", "cancelled": True}]}
    assert await status_of(tasks, queued.id) == "cancelled"


@on_redis
async def test_job_shows_records_and_the_json_is_the_rest_view(
    make_tasks: MakeTasks, start_worker: StartWorker, cli: Cli
) -> None:
    from aqueue._core.listing import job_view

    tasks = app(make_tasks())
    ok, boom = tasks.get("ok"), tasks.get("boom")
    assert ok is not None and boom is not None
    await start_worker(tasks, concurrency=2)
    done = await ok.enqueue(7)
    assert await done.result(timeout=5) == 7
    dead = await boom.enqueue(3)
    with pytest.raises(aqueue.JobFailed):
        await dead.result(timeout=5)
    later = await ok.with_options(delay=60, priority="high").enqueue(n=9)
    code, out, err = await cli("job", done.id, dead.id, later.id, "nope", done.id)
    assert (code, err) == (1, ""), err  # an unknown id: exit 1
    blocks = out.split("\n\n")
    assert len(blocks) == 4, out  # a repeated id is shown once
    lines = blocks[0].splitlines()
    assert lines[0] == done.id and "  status     succeeded (attempt 1 of 3)" in lines, out
    assert "  call       ok(7)" in lines and "  result     7" in lines, out
    assert any(line.startswith("  took       ") for line in lines) and any("  worker     " in x for x in lines), out
    lines = blocks[1].splitlines()
    assert "  status     dead (attempt 1 of 1)" in lines, out
    at = lines.index("  error      RuntimeError: boom 3")
    assert lines[at + 1] == "             second line", out
    assert "  traceback" in lines and any(
        "RuntimeError: boom 3" in line for line in lines[lines.index("  traceback") :]
    )
    lines = blocks[2].splitlines()
    assert "  status     scheduled (attempt 0 of 3)" in lines and "  call       ok(n=9)" in lines, out
    assert "  priority   high" in lines and any(line.startswith("  due        ") for line in lines), out
    assert blocks[3] == "nope  no such job (never enqueued, or its retention expired)\n", out
    code, out, _ = await cli("job", done.id, "nope", "--json")
    broker = await tasks._broker()
    assert code == 1
    assert orjson.loads(out) == {
        "jobs": [orjson.loads(orjson.dumps(job_view(done.id, await broker.get_record(done.id)))),
                 {"id": "nope", "status": "unknown"}]
    }  # fmt: skip
    code, out, _ = await cli("job", later.id, "--json")
    assert code == 0 and orjson.loads(out)["jobs"][0]["kwargs"] == {"n": 9}


# -- pause and resume ----------------------------------------------------------------------------------------


@on_redis
async def test_pause_stops_workers_starting_jobs_until_resume(
    make_tasks: MakeTasks, start_worker: StartWorker, cli: Cli
) -> None:
    tasks = app(make_tasks())
    ok = tasks.get("ok")
    assert ok is not None
    await start_worker(tasks, concurrency=2)
    code, out, err = await cli("pause", "--by", "ops on call")
    assert (code, out, err) == (0, f"paused queue {tasks.queue}: no worker starts a job until `aqueue resume`\n", "")
    paused = await tasks.paused()
    assert paused is not None and paused["by"] == "ops on call"
    job = await ok.enqueue(7)
    await asyncio.sleep(0.3)
    assert await job.status() == aqueue.JobStatus.QUEUED  # the worker starts nothing while paused

    code, out, _ = await cli("info")
    assert code == 0
    [line] = [line for line in out.splitlines() if line.startswith("paused ")]
    assert line.startswith("paused     since ") and line.endswith(" by ops on call"), line
    code, out, _ = await cli("info", "--json")
    assert code == 0 and orjson.loads(out)["paused"] == paused
    code, out, _ = await cli("pause", "--by", "someone else")  # already paused: said so, not an error
    assert code == 0 and out.startswith(f"queue {tasks.queue} was already paused since ")
    assert out.rstrip().endswith("by ops on call")
    assert await tasks.paused() == paused

    code, out, _ = await cli("resume")
    assert (code, out) == (0, f"resumed queue {tasks.queue}\n")
    assert await tasks.paused() is None
    assert await job.result(timeout=5) == 7
    code, out, _ = await cli("resume", "--json")
    assert code == 0 and orjson.loads(out) == {"queue": tasks.queue, "changed": False, "paused": None}
    code, out, _ = await cli("info")
    assert "paused" not in out


# -- cleanup -------------------------------------------------------------------------------------------------


@on_redis
async def test_cleanup_deletes_finished_records(make_tasks: MakeTasks, start_worker: StartWorker, cli: Cli) -> None:
    tasks = app(make_tasks())
    ok = tasks.get("ok")
    assert ok is not None
    [dead] = await dead_jobs(tasks, start_worker, 1)
    await start_worker(tasks, concurrency=2)
    succeeded = [await ok.enqueue(i) for i in range(2)]
    for job in succeeded:
        await job.result(timeout=5)
    cancelled = await ok.with_options(delay=60).enqueue(9)
    assert await cancelled.cancel()
    pending = await ok.with_options(delay=60).enqueue(10)
    everything = [dead, *(j.id for j in succeeded), cancelled.id, pending.id]
    before = [await status_of(tasks, i) for i in everything]
    assert before == ["dead", "succeeded", "succeeded", "cancelled", "scheduled"]

    code, out, _ = await cli("cleanup", "--older-than", "1h")
    assert (code, out) == (
        0,
        "deleted 0 job records (succeeded, dead, cancelled, expired) that finished at least 1h ago\n",
    )
    assert [await status_of(tasks, i) for i in everything] == before
    code, out, _ = await cli("cleanup", "--status", "succeeded")
    assert (code, out) == (0, "deleted 2 job records (succeeded)\n")
    assert [await status_of(tasks, i) for i in everything] == ["dead", None, None, "cancelled", "scheduled"]
    code, out, _ = await cli("cleanup", "--status", "dead,cancelled", "--older-than", "0s", "--json")
    assert code == 0
    assert orjson.loads(out) == {
        "queue": tasks.queue,
        "deleted": 2,
        "older_than": 0.0,
        "statuses": ["dead", "cancelled"],
    }
    assert [await status_of(tasks, i) for i in everything] == [None, None, None, None, "scheduled"]
    assert (await tasks.info()).dead == 0  # with `dead`, the dead-letter entries go too


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("30s", 30.0), ("15m", 900.0), ("2h", 7200.0), ("7D", 604800.0), ("1.5h", 5400.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert cli_control.parse_duration(text) == seconds


# -- errors: one line, exit 2 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "args", "fragment"),
    [
        ("cleanup", ["--older-than", "2x"], "argument --older-than: expected a duration such as"),
        ("cleanup", ["--older-than=-5m"], "argument --older-than: expected a duration"),
        ("cleanup", ["--older-than", "inf"], "argument --older-than: expected a duration"),
        ("cleanup", ["--status", "succeeded,queued"], "argument --status: expected a comma-separated list"),
        ("cleanup", ["--status", ","], "argument --status"),
        (("dead-letter", "list"), ["--limit", "0"], "argument --limit"),
        (("dead-letter", "reprocess"), [], "give exactly one of JOB_ID..., --all or --max N (got none)"),
        (("dead-letter", "reprocess"), ["--all", "--max", "3"], "(got --all and --max)"),
        ("pause", ["--no-such-flag"], "unrecognized arguments"),
    ],
)
async def test_bad_values_are_one_error_line(
    cli: Cli, command: str | tuple[str, ...], args: list[str], fragment: str
) -> None:
    code, out, err = await cli(command, *args)
    assert out == ""
    one_error_line(code, err, fragment)


@pytest.mark.parametrize(
    "command", ["job", "cancel", "pause", "resume", "cleanup", ("dead-letter", "list"), ("dead-letter", "reprocess")]
)
async def test_unreachable_redis_and_memory_are_one_error_line(cli: Cli, command: str | tuple[str, ...]) -> None:
    args = ["some-job-id"] if command in ("job", "cancel", ("dead-letter", "reprocess")) else []
    code, _, err = await cli(command, *args, redis=DEAD_URL)
    one_error_line(code, err, "cannot reach Redis", DEAD_URL)
    code, _, err = await cli(command, *args, redis="memory://ctl")
    one_error_line(code, err, "memory://ctl lives inside one process")


def test_missing_arguments_are_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dead-letter"]) == 2
    assert capsys.readouterr().err == "aqueue: error: the following arguments are required: ACTION\n"
    assert main(["cancel", "app:tasks"]) == 2
    assert capsys.readouterr().err == "aqueue: error: the following arguments are required: JOB_ID\n"


# -- as a real process -------------------------------------------------------------------------------------


@on_redis
async def test_commands_as_a_subprocess(make_tasks: MakeTasks, tmp_path: Path, target: str) -> None:
    tasks = app(make_tasks())
    ok = tasks.get("ok")
    assert ok is not None
    job = await ok.with_options(delay=60).enqueue(1)
    where = [target, "--queue", tasks.queue, "--redis", REDIS_URL]
    (pause, cancel, bad, unknown) = await asyncio.gather(
        run_subprocess(tmp_path, "pause", *where, "--by", "subprocess"),
        run_subprocess(tmp_path, "cancel", *where, job.id),
        run_subprocess(tmp_path, "cleanup", *where, "--older-than", "soon"),
        run_subprocess(tmp_path, "cancel", *where, "nope", "--json"),
    )
    assert pause == (0, f"paused queue {tasks.queue}: no worker starts a job until `aqueue resume`\n", "")
    assert cancel == (0, f"{job.id}  cancelled\n", "")
    one_error_line(bad[0], bad[2], "--older-than", "'soon'")
    assert unknown[0] == 1 and orjson.loads(unknown[1])["jobs"] == [
        {"id": "nope", "status": "unknown", "cancelled": False}
    ]
    paused = await tasks.paused()
    assert paused is not None and paused["by"] == "subprocess"
    assert await job.status() == aqueue.JobStatus.CANCELLED


async def test_a_reader_that_goes_away_ends_the_output_quietly(tmp_path: Path, target: str, queue_name: str) -> None:
    """``aqueue job … | head -1``: once the reader has closed the pipe, the command stops writing and exits 141
    (128 + SIGPIPE, as shells expect) without a traceback or an "Exception ignored" line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AQUEUE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    ids = " ".join(f"missing-{i}" for i in range(5000))  # about 400 kB of output: more than a pipe holds
    script = (f"{shlex.quote(sys.executable)} -m aqueue job {target} --redis {REDIS_URL} --queue {queue_name} {ids}"
              " 2>stderr.txt | head -1; echo \"exit ${PIPESTATUS[0]}\"")  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", script, cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    first, status = out.decode().splitlines()
    assert first == "missing-0  no such job (never enqueued, or its retention expired)"
    assert status == "exit 141", (tmp_path / "stderr.txt").read_text()
    assert (tmp_path / "stderr.txt").read_text() == ""
