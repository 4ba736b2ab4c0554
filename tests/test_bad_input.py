"""Bad input is rejected at the producer, or dead-lettered with a reason while the worker keeps running."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import aqueue
from tests.helpers import MakeTasks, StartWorker, wait_until

ON_CLUSTER = True


@dataclasses.dataclass
class Point:
    x: int


@pytest.mark.parametrize(
    "value",
    [object(), {1, 2}, b"bytes", datetime.datetime(2026, 1, 1), Point(1), {1: "int key"}, 2**70],
    ids=["object", "set", "bytes", "datetime", "dataclass", "int-key", "huge-int"],
)
async def test_enqueue_rejects_arguments_json_cannot_carry_and_writes_nothing(
    make_tasks: MakeTasks, value: Any
) -> None:
    tasks = make_tasks()

    @tasks.task
    async def takes(v: Any) -> None:
        return None

    with pytest.raises(aqueue.SerializationError, match=r"arguments of task .*takes.* not JSON-serializable"):
        await takes.enqueue(value)
    with pytest.raises(aqueue.SerializationError):
        takes.spec(v=value)
    info = await tasks.info()
    assert sum(info.queued.values()) == 0 and info.stats.get("enqueued", 0) == 0


async def test_arguments_that_do_not_fit_the_signature_are_refused_and_write_nothing(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()

    @tasks.task(name="add")
    async def add(x: int, y: int, *, scale: int = 1) -> int:
        return (x + y) * scale

    @tasks.task(name="total")
    async def total(results: list[int], bonus: int = 0) -> int:
        return sum(results) + bonus

    async def one_step(spec: aqueue.JobSpec[Any]) -> aqueue.WorkflowHandle:
        wf = tasks.workflow()
        wf.step(spec)
        return await wf.enqueue()

    refused: list[Callable[[], Awaitable[Any]]] = [
        lambda: add.enqueue(1),  # type: ignore[call-arg]
        lambda: add.enqueue(1, 2, 3),  # type: ignore[call-arg]
        lambda: add.enqueue(1, 2, factor=3),  # type: ignore[call-arg]
        lambda: tasks.enqueue_many([add.spec(1, 2), add.spec(1)]),  # type: ignore[call-arg]
        lambda: add.spec(1, 2).then(total.spec([1], 2)).enqueue(),  # its parents' result would be a 3rd argument
        lambda: one_step(add.spec(x=1)),  # type: ignore[call-arg]
    ]
    for call in refused:
        with pytest.raises(aqueue.InvalidArguments, match=r"arguments do not match task '(add|total)'\("):
            await call()
    with pytest.raises(TypeError, match="missing a required argument: 'y'"):  # also a TypeError
        await add.enqueue(1)  # type: ignore[call-arg]
    with pytest.raises(aqueue.InvalidArguments, match="too many positional arguments"):
        tasks.add_cron(add, every=60, args=[1, 2, 3])
    info = await tasks.info()
    assert info.stats.get("enqueued", 0) == 0 and sum(info.queued.values()) == 0 and not tasks.crons
    # What fits is accepted, a step receiving its parent's result included.
    await add.enqueue(1, y=2, scale=3)
    await add.spec(1, 2).then(total.spec_after(bonus=1)).enqueue()
    assert (await tasks.info()).stats["enqueued"] == 3


async def test_a_job_whose_arguments_do_not_fit_is_dead_lettered_without_retries(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    worker_side, producer_side = make_tasks(), make_tasks()

    @worker_side.task(name="resize")
    async def resize(url: str, width: int) -> str:
        return f"{url}@{width}"

    @producer_side.task(name="resize")  # an older deployment of the producer: one argument fewer
    async def old_resize(url: str) -> str:
        return url

    await start_worker(worker_side)
    job = await old_resize.with_options(max_attempts=5).enqueue("a.png")
    reason = r"InvalidArguments: arguments do not match task 'resize'\(url: 'str', width"
    with pytest.raises(aqueue.JobFailed, match=reason):
        await job.result(timeout=5)
    assert (await job.record()).attempts == 1  # not retried: no attempt can bind these arguments
    assert await worker_side.job((await old_resize.enqueue("b.png")).id).status() is not None
    assert await (await resize.enqueue("c.png", 10)).result(timeout=5) == "c.png@10"


async def test_unknown_task_is_dead_lettered_with_the_reason_and_the_worker_keeps_running(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    worker_side, producer_side = make_tasks(), make_tasks()

    @worker_side.task(name="known")
    async def known() -> str:
        return "still running"

    @producer_side.task(name="not.deployed.yet")
    async def missing() -> None:
        return None

    await start_worker(worker_side)
    job = await missing.enqueue()
    with pytest.raises(aqueue.JobFailed, match=r"unknown task 'not\.deployed\.yet'"):
        await job.result(timeout=5)
    assert (await job.record()).attempts == 1  # not retried: no worker of this deployment can run it
    dead = await (await worker_side._broker()).dead_letters()
    assert dead[0][1]["job"] == job.id and "unknown task" in dead[0][1]["reason"]
    assert await worker_side.job((await known.enqueue()).id).result(timeout=5) == "still running"


async def test_garbage_in_streams_and_records_is_dead_lettered_and_the_worker_survives(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()

    @tasks.task(name="ok")
    async def ok() -> str:
        return "fine"

    await start_worker(tasks)
    broker = await tasks._broker()
    r, keys = broker.redis, tasks._keys
    await r.xadd(keys.stream("normal"), {"garbage": "no job id here"})
    await r.xadd(keys.stream("high"), {"j": "record-that-does-not-exist"})
    await r.hset(keys.job("bad-spec"), mapping={"task": "ok", "spec": "{not json", "status": "queued"})
    await r.xadd(keys.stream("low"), {"j": "bad-spec"})
    await r.hset(keys.job("bad-args"), mapping={"task": "ok", "spec": '{"a": 5, "k": {}, "o": {"max_attempts": 1,'
                 ' "timeout": null, "backoff": [1, 1]}}', "status": "queued"})  # fmt: skip
    await r.xadd(keys.stream("low"), {"j": "bad-args"})

    async def four_dead() -> bool:
        return len(await broker.dead_letters()) == 4

    await wait_until(four_dead, 5)
    reasons = sorted(f["reason"] for _, f in await broker.dead_letters())
    assert any("no job id" in x for x in reasons), reasons
    assert any("job record missing" in x for x in reasons), reasons
    assert sum("undecodable job spec" in x for x in reasons) == 2, reasons
    assert (await tasks.job("bad-spec").record()).status is aqueue.JobStatus.DEAD
    assert await (await ok.enqueue()).result(timeout=5) == "fine"
    for stream in keys.streams:
        assert await r.xlen(stream) == 0


async def test_result_json_cannot_carry_dead_letters_the_job(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()

    @tasks.task
    async def returns_a_set() -> set[int]:
        return {1, 2}

    await start_worker(tasks)
    job = await returns_a_set.enqueue()
    with pytest.raises(aqueue.JobFailed, match=r"result of task .* is not JSON-serializable"):
        await job.result(timeout=5)


def test_invalid_options_and_settings_raise_configuration_errors() -> None:
    tasks = aqueue.Tasks(queue="config-only", redis_url="memory://config-only")

    @tasks.task
    async def t() -> None:
        return None

    with pytest.raises(aqueue.ConfigurationError, match="delay"):
        t.with_options(delay=-1)
    with pytest.raises(aqueue.ConfigurationError, match="max_attempts"):
        t.with_options(max_attempts=0)
    with pytest.raises(aqueue.ConfigurationError, match="timeout"):
        t.with_options(timeout=0)
    with pytest.raises(aqueue.ConfigurationError, match="already registered"):
        tasks.task(name=t.name)(t.fn)
    with pytest.raises(aqueue.ConfigurationError, match="queue name"):
        aqueue.Tasks(queue="a{b}")
    with pytest.raises(aqueue.ConfigurationError, match="default_priority"):
        aqueue.QueueSettings(default_priority="urgent")
    with pytest.raises(aqueue.ConfigurationError, match="unique"):
        aqueue.QueueSettings(priorities=(aqueue.Priority("a"), aqueue.Priority("a")), default_priority="a")
    with pytest.raises(aqueue.ConfigurationError, match="unsupported Redis URL"):
        aqueue.Tasks(redis_url="http://localhost")
    with pytest.raises(aqueue.ConfigurationError, match="concurrency"):
        aqueue.Worker(tasks, concurrency=0)


async def test_unreachable_redis_gives_a_clear_error() -> None:
    unreachable = aqueue.Tasks(redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(aqueue.BrokerUnavailable, match="Redis is not answering"):
        await unreachable._broker()
