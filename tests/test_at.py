"""``with_options(at=datetime)``: a job due at an absolute, aware time (naive → a clear error), also over REST and
``aqueue enqueue --at``; a delay replaces an at= and an at= a delay. On ``memory://`` and the real Redis."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

import aqueue
from aqueue.cli.main import main
from tests.helpers import REDIS_URL, MakeTasks, Serve, StartWorker, json_of

on_redis = pytest.mark.parametrize("backend", [REDIS_URL], ids=["redis"])


async def test_a_job_at_a_time_starts_then_not_before(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()
    started: list[float] = []

    @tasks.task(name="stamp")
    async def stamp() -> None:
        started.append(time.time())

    await start_worker(tasks)
    due = datetime.now(UTC) + timedelta(seconds=1.0)
    paris = due.astimezone(timezone(timedelta(hours=1)))  # the same instant in another zone
    jobs = [await stamp.with_options(at=due).enqueue(), await stamp.with_options(at=paris).enqueue()]
    record = await jobs[0].record()
    assert record.status is aqueue.JobStatus.SCHEDULED and record.due_at is not None
    assert abs(record.due_at - due.timestamp()) < 0.05
    for job in jobs:
        await job.result(timeout=10)
    lateness = [t - due.timestamp() for t in started]
    assert all(0 <= late <= 0.1 for late in lateness), lateness
    past = await stamp.with_options(at=datetime.now(UTC) - timedelta(hours=1)).enqueue()
    await past.result(timeout=5)  # a past time is due at once


async def test_naive_times_and_both_at_and_delay_are_refused(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()

    @tasks.task(name="noop")
    async def noop() -> None: ...

    with pytest.raises(aqueue.ConfigurationError, match="aware datetime"):
        noop.with_options(at=datetime(2026, 12, 24, 9, 0))
    with pytest.raises(aqueue.ConfigurationError, match="at must be a datetime"):
        noop.with_options(at="2026-12-24")  # type: ignore[arg-type]
    with pytest.raises(aqueue.ConfigurationError, match="not both"):
        aqueue.JobOptions(delay=5, at=datetime.now(UTC))
    with pytest.raises(aqueue.ConfigurationError, match="not both"):
        noop.with_options(delay=5, at=datetime.now(UTC))  # both in one call, as the docs say
    later = datetime.now(UTC) + timedelta(hours=1)
    assert noop.with_options(at=later).with_options(delay=5).options.at is None  # the later one wins
    assert noop.with_options(delay=5).with_options(at=later).options.delay == 0


async def test_rest_and_cli_take_an_iso_time_with_its_offset(
    serve: Serve, make_tasks: MakeTasks, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, backend: str,
) -> None:  # fmt: skip
    tasks = make_tasks()

    @tasks.task(name="noop")
    async def noop() -> None: ...

    client = await serve(tasks)
    due = datetime.now(UTC) + timedelta(hours=2)
    body = {"task": "noop", "options": {"at": due.isoformat()}}
    job_id = (await json_of(await client.post("/jobs", json=body), 201))["id"]
    assert abs((await tasks.job(job_id).record()).due_at - due.timestamp()) < 0.05  # type: ignore[operator]
    for bad, match in [("2026-12-24T09:00:00", "UTC offset"), ("tomorrow", "ISO 8601")]:
        reply = await json_of(await client.post("/jobs", json={"task": "noop", "options": {"at": bad}}), 422)
        assert match in str(reply), reply
    if backend != REDIS_URL:
        return  # the CLI talks to a Redis server
    app = 'import aqueue\n\ntasks = aqueue.Tasks("unused")\n\n@tasks.task(name="noop")\nasync def noop() -> None: ...\n'
    (tmp_path / "at_cli_app.py").write_text(app)
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = ["enqueue", "at_cli_app:tasks", "noop", "--redis", REDIS_URL, "--queue", tasks.queue]
    capsys.readouterr()
    assert await asyncio.to_thread(main, [*argv, "--at", due.isoformat().replace("+00:00", "Z")]) == 0
    cli_id = capsys.readouterr().out.strip()
    assert abs((await tasks.job(cli_id).record()).due_at - due.timestamp()) < 0.05  # type: ignore[operator]
    assert await asyncio.to_thread(main, [*argv, "--at", "2026-12-24T09:00:00"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "UTC offset" in err, err
    assert await asyncio.to_thread(main, [*argv, "--at", due.isoformat(), "--delay", "5"]) == 2
    assert "not both" in capsys.readouterr().err
