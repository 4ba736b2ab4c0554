"""Job logs: stdlib ``logging`` records a job emits while it runs (its task, middleware, a plain function's thread, a
process-pool child) at ``QueueSettings.job_log_level`` and above are kept on its record, every attempt's, capped,
written with the settle call; shown by ``GET /jobs/{id}``, the dashboard's job request and ``aqueue job``; the JSON
log format names the job. On ``memory://`` and the real Redis."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest

import aqueue
from aqueue._core import joblogs
from aqueue._core.context import JobContext, _current
from aqueue.cli.logs import JsonFormatter
from aqueue.cli.main import main
from tests import _process_tasks as pt
from tests.helpers import REDIS_URL, MakeTasks, Serve, StartWorker, finished, json_of

on_redis = pytest.mark.parametrize("backend", [REDIS_URL], ids=["redis"])
log = logging.getLogger("tests.joblogs")


@pytest.fixture(autouse=True)
def _verbose_logger() -> Iterator[None]:
    """The records below are made whatever the root logger's level (a logger drops what is below its level)."""
    level = log.level
    log.setLevel(logging.DEBUG)
    yield
    log.setLevel(level)


def texts(record: aqueue.JobRecord) -> list[tuple[str, str]]:
    return [(line.level, line.message) for line in record.logs]


async def test_a_jobs_records_at_info_and_above_are_kept_on_it(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()

    @tasks.middleware
    async def tagged(job: aqueue.JobContext) -> AsyncIterator[None]:
        log.info("middleware in")
        yield
        log.info("middleware out: %r", job.result)

    @tasks.task(max_attempts=2, backoff_base=0.01, backoff_max=0.01)
    async def charge(order: str) -> str:
        log.debug("not kept")
        log.info("charging %s", order)
        if aqueue.current_job().attempt == 1:
            try:
                raise KeyError("card")
            except KeyError:
                log.exception("declined")
            raise RuntimeError("try again")
        log.warning("charged %s", order)
        return "ok"

    @tasks.task
    def plain(n: int) -> int:
        log.info("in a thread %d", n)
        return n

    @tasks.task
    async def quiet() -> None:
        return None

    before = asyncio.get_running_loop().time()
    log.info("the producer's line is no job's")
    jobs = [await charge.enqueue("o-1"), await plain.enqueue(5), await quiet.enqueue()]
    await start_worker(tasks, concurrency=4)
    record, thread, silent = [await finished(j) for j in jobs]
    assert record.status == "succeeded", record
    assert texts(record)[:2] == [("INFO", "middleware in"), ("INFO", "charging o-1")]
    level, message = texts(record)[2]
    assert level == "ERROR" and message.startswith("declined\nTraceback (most recent call last):"), message
    assert "KeyError: 'card'" in message
    assert texts(record)[3:] == [  # attempt 1 raised through the middleware: no "out" line
        ("INFO", "middleware in"),
        ("INFO", "charging o-1"),
        ("WARNING", "charged o-1"),
        ("INFO", "middleware out: 'ok'"),
    ]
    stamps = [line.timestamp for line in record.logs]
    assert stamps == sorted(stamps) and stamps[0] > 1e9
    assert record.logs_dropped == 0
    assert texts(thread) == [("INFO", "middleware in"), ("INFO", "in a thread 5"), ("INFO", "middleware out: 5")]
    assert texts(silent) == [("INFO", "middleware in"), ("INFO", "middleware out: None")]
    assert asyncio.get_running_loop().time() > before


async def test_concurrent_jobs_keep_their_own_lines(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()

    @tasks.task
    async def step(name: str) -> None:
        for i in range(5):
            log.info("%s %d", name, i)
            await asyncio.sleep(0.01)

    jobs = [await step.enqueue(f"job{n}") for n in range(10)]
    await start_worker(tasks, concurrency=10)
    for n, job in enumerate(jobs):
        assert [m for _, m in texts(await finished(job))] == [f"job{n} {i}" for i in range(5)]


async def test_the_level_is_configurable_and_none_keeps_nothing(
    make_tasks: MakeTasks, start_worker: StartWorker, queue_name: str
) -> None:
    warnings = make_tasks(aqueue.QueueSettings(job_log_level=logging.WARNING))
    nothing = make_tasks(aqueue.QueueSettings(job_log_level=None), queue=queue_name + "-none")
    made = []
    for tasks in (warnings, nothing):

        @tasks.task(name="talk")
        async def talk() -> None:
            log.info("info")
            log.warning("warning")

        made.append(await talk.enqueue())
        await start_worker(tasks)
    assert texts(await finished(made[0])) == [("WARNING", "warning")]
    assert (await finished(made[1])).logs == ()
    with pytest.raises(aqueue.ConfigurationError, match="job_log_level"):
        aqueue.QueueSettings(job_log_level=-1)


async def test_caps_last_lines_bytes_and_line_length(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()

    @tasks.task(max_attempts=2, backoff_base=0.01, backoff_max=0.01)
    async def loud(lines: int, size: int) -> None:
        attempt = aqueue.current_job().attempt
        for i in range(lines):
            log.info("%d:%d %s", attempt, i, "x" * size)
        if attempt == 1:
            raise RuntimeError("again")

    many = await loud.enqueue(250, 1)  # 250 lines per attempt: the last 100 of the second attempt remain
    big = await loud.enqueue(20, 5000)  # 5 KB lines: 13 fit in 64 KiB
    huge = await loud.enqueue(1, 20_000)  # one line over 8 KiB: cut
    await start_worker(tasks, concurrency=3)
    record = await finished(many)
    assert [m.split(" ")[0] for _, m in texts(record)] == [f"2:{i}" for i in range(150, 250)]
    assert record.logs_dropped == 400
    record = await finished(big)
    assert [m.split(" ")[0] for _, m in texts(record)] == [f"2:{i}" for i in range(7, 20)]
    assert record.logs_dropped == 27
    assert sum(len(line.message) for line in record.logs) <= joblogs.MAX_BYTES
    record = await finished(huge)
    assert [len(line.message) for line in record.logs] == [joblogs.MAX_LINE, joblogs.MAX_LINE]
    assert all(line.message.endswith("… (truncated)") for line in record.logs)


async def test_a_process_task_logs_from_its_child(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()
    chatty = tasks.task(executor="process")(pt.chatty)
    await start_worker(tasks, cpu_workers=1)
    job = await chatty.enqueue(3)
    assert await job.result(timeout=30) == 3
    assert texts(await job.record()) == [("INFO", "info 3"), ("WARNING", "warning 3")]


async def test_rest_and_the_dashboard_request_show_the_logs(
    serve: Serve, make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()

    @tasks.task(name="talk")
    async def talk() -> None:
        log.warning("<b>not html</b>")

    job = await talk.enqueue()
    await start_worker(tasks)
    record = await finished(job)
    client = await serve(tasks)
    view = await json_of(await client.get(f"/jobs/{job.id}"), 200)
    line = record.logs[0]
    assert view["logs"] == [{"timestamp": line.timestamp, "level": "WARNING", "message": "<b>not html</b>"}]
    assert view["logs_dropped"] == 0
    schema = await json_of(await client.get("/openapi.json"), 200)
    assert {"logs", "logs_dropped"} <= set(schema["components"]["schemas"]["Job"]["properties"])
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"op": "job", "id": job.id})
        while (msg := await ws.receive_json(timeout=5))["type"] != "job":
            pass
        assert msg["job"]["logs"] == view["logs"]


@on_redis
async def test_aqueue_job_prints_the_logs(
    make_tasks: MakeTasks,
    start_worker: StartWorker,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tasks = make_tasks()

    @tasks.task(name="talk")
    async def talk() -> None:
        log.info("first")
        log.warning("two\nlines")

    job = await talk.enqueue()
    await start_worker(tasks)
    await finished(job)
    (tmp_path / "logs_cli_app.py").write_text('import aqueue\n\ntasks = aqueue.Tasks("unused")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["job", "logs_cli_app:tasks", "--redis", REDIS_URL, "--queue", tasks.queue,
                                          job.id])  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    at = out.index("  logs       2 lines, times UTC")
    assert out[at + 1].endswith(" INFO    first") and out[at + 2].endswith(" WARNING two"), out
    assert out[at + 3].strip() == "lines", out


def test_the_json_log_format_names_the_job() -> None:
    tasks = aqueue.Tasks("json-logs", "memory://json-logs")
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "hello %s", ("there",), None)
    assert set(orjson.loads(JsonFormatter().format(record))) == {"ts", "level", "logger", "message"}
    token = _current.set(JobContext(tasks, "j-1", "app.charge", 2))
    try:
        out = orjson.loads(JsonFormatter().format(record))
    finally:
        _current.reset(token)
    assert out["message"] == "hello there"
    assert (out["job_id"], out["task"], out["attempt"], out["queue"]) == ("j-1", "app.charge", 2, "json-logs")
