"""Worker metadata: user key-values (version, region, deploy id) given to a worker, checked, carried in its
registry entry, and shown by ``Tasks.info()``, ``/status`` and ``aqueue worker --meta``."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import orjson
import pytest

import aqueue
from aqueue._worker.metadata import MAX_ENTRIES, MAX_KEY, MAX_VALUE, check_metadata
from tests.helpers import MakeTasks, Serve, StartWorker, json_of, wait_until, worker_flag_refused
from tests.test_cli import app_dir, producer, queue, start_cli  # noqa: F401  (fixtures)

META = {"version": "1.4.2", "region": "eu-west-1", "deploy.id": "<b>d-42</b>"}


async def test_info_and_status_show_each_workers_metadata(
    make_tasks: MakeTasks, start_worker: StartWorker, serve: Serve
) -> None:
    tasks = make_tasks()
    given = dict(META)
    tagged = await start_worker(tasks, concurrency=2, metadata=given)
    plain = await start_worker(tasks, concurrency=2)
    given["version"] = "changed after"  # the worker keeps what it was given
    assert tagged.worker.metadata == META
    with pytest.raises(TypeError):
        tagged.worker.metadata["version"] = "2"  # type: ignore[index]

    info = await tasks.info()
    assert info.worker_metadata() == {tagged.worker.id: META, plain.worker.id: {}}
    entries = {w["id"]: w for w in info.workers}
    assert entries[tagged.worker.id]["metadata"] == META

    status = await json_of(await (await serve(tasks)).get("/status"), 200)
    shown = {w["id"]: w["metadata"] for w in status["workers"]}
    assert shown == {tagged.worker.id: META, plain.worker.id: {}}


async def test_status_shows_only_text_of_a_foreign_registry_entry(make_tasks: MakeTasks, serve: Serve) -> None:
    """A registry entry written by something else (an older worker, a hand-made one) shows as str to str or {}."""
    tasks = make_tasks()
    rw = aqueue.Worker(tasks, 1, metadata={"a": "1"})
    broker = await tasks._broker()
    for meta in ({"n": 3}, ["not", "a", "mapping"]):
        entry = orjson.loads(rw._heartbeat.info()) | {"metadata": meta}
        await broker.heartbeat(rw.id, [], orjson.dumps(entry).decode(), 10_000)
        status = await json_of(await (await serve(tasks)).get("/status"), 200)
        [worker] = status["workers"]
        assert worker["metadata"] == ({"n": "3"} if isinstance(meta, dict) else {})


# -- validation ---------------------------------------------------------------------------------------------


@pytest.mark.no_redis
@pytest.mark.parametrize(
    ("metadata", "fragment"),
    [
        ({f"k{i}": "v" for i in range(MAX_ENTRIES + 1)}, f"at most {MAX_ENTRIES} keys, got {MAX_ENTRIES + 1}"),
        ({"": "v"}, "metadata key ''"),
        ({"has space": "v"}, "metadata key 'has space'"),
        ({"a=b": "v"}, "metadata key 'a=b'"),
        ({"k" * (MAX_KEY + 1): "v"}, f"1 to {MAX_KEY} letters"),
        ({3: "v"}, "metadata key 3"),
        ({"version": 1.4}, "metadata version: the value must be a str, got float"),
        ({"notes": "x" * (MAX_VALUE + 1)}, f"{MAX_VALUE + 1} characters, at most {MAX_VALUE}"),
        ([("version", "1")], "metadata must be a mapping of str to str, got list"),
    ],
)
def test_bad_metadata_is_a_configuration_error(metadata: Any, fragment: str) -> None:
    with pytest.raises(aqueue.ConfigurationError) as caught:
        aqueue.Worker(aqueue.Tasks("q", "memory://meta"), metadata=metadata)
    assert fragment in str(caught.value)


@pytest.mark.no_redis
def test_metadata_at_the_bounds_is_accepted() -> None:
    most = {f"key-{i}": "v" * MAX_VALUE for i in range(MAX_ENTRIES - 1)} | {"k" * MAX_KEY: ""}
    assert dict(check_metadata(most)) == most
    assert dict(check_metadata({"k8s/pod:name_1.x-y": "any text, even <b>"})) == {
        "k8s/pod:name_1.x-y": "any text, even <b>"
    }
    assert dict(check_metadata(None)) == {}


# -- the command line --------------------------------------------------------------------------------------


@pytest.mark.no_redis
@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        (["--meta", "version"], {}, "--meta: expected KEY=VALUE such as version=1.4.2, got 'version'"),
        (["--meta", "=1"], {}, "--meta: expected KEY=VALUE"),
        (["--meta", "a=1", "--meta", "a=2"], {}, "--meta a: given twice"),
        (["--meta", "bad key=1"], {}, "metadata key 'bad key'"),
        (
            [],
            {"AQUEUE_META": "version=1,region"},
            "$AQUEUE_META: expected KEY=VALUE such as version=1.4.2",
        ),
        ([], {"AQUEUE_META": ",".join(f"k{i}=v" for i in range(MAX_ENTRIES + 1))}, f"at most {MAX_ENTRIES} keys"),
    ],
)
def test_cli_bad_meta_is_one_error_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str],
    fragment: str,
) -> None:  # fmt: skip
    assert fragment in worker_flag_refused(capsys, monkeypatch, args, env)


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--processes", "2", "--meta", "version=1.4.2", "--meta", "region=eu"], {}),
        (["--processes", "1"], {"AQUEUE_META": "version=1.4.2,region=eu"}),
    ],
)
async def test_cli_workers_carry_the_meta_flags(
    app_dir: Path, queue: str, args: list[str], env: dict[str, str],  # noqa: F811
) -> None:  # fmt: skip
    expected = {"version": "1.4.2", "region": "eu"}
    processes = int(args[1])
    proc = await start_cli(app_dir, "worker", "app:tasks", "--queue", queue, *args, env=env)
    try:
        async with producer(queue) as tasks:

            async def all_up() -> bool:
                return len((await tasks.info()).workers) == processes

            await wait_until(all_up, 20.0)
            assert list((await tasks.info()).worker_metadata().values()) == [expected] * processes
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()


def test_the_info_table_has_a_metadata_column_when_a_worker_has_some(capsys: pytest.CaptureFixture[str]) -> None:
    from aqueue.cli.commands import _print_info

    data: dict[str, Any] = {
        "queue": "q", "redis_url": "redis://x", "paused": None, "queued": {"normal": 0}, "active": 0,
        "scheduled": 0, "dead": 0, "stats": {},
        "workers": [
            {"id": "w-1", "concurrency": 2, "strategy": "fixed", "busy": 0, "processed": 1, "failed": 0,
             "heartbeat_age": 0.5, "metadata": {"version": "1.4.2", "region": "eu"}},
            {"id": "w-2", "concurrency": 2, "strategy": "fixed", "busy": 0, "processed": 0, "failed": 0,
             "heartbeat_age": 0.2, "metadata": {}},
        ],
    }  # fmt: skip
    _print_info(data)
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()]
    header = next(line for line in lines if line.startswith("ID"))
    assert header.split()[-1] == "METADATA"
    assert next(line for line in lines if line.startswith("w-1")).endswith("version=1.4.2 region=eu")
    assert next(line for line in lines if line.startswith("w-2")).endswith("ago")
    for worker in data["workers"]:
        worker["metadata"] = {}
    _print_info(data)
    assert "METADATA" not in capsys.readouterr().out
