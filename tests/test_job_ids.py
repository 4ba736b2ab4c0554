"""Caller-chosen job ids (``job_id``) and the duplicate signal every enqueue gives (``Job.duplicate``)."""

from __future__ import annotations

import pytest

import aqueue
from aqueue._core.options import MAX_JOB_ID
from tests.helpers import MakeTasks, Serve, StartWorker, json_of, wait_until


async def test_enqueue_with_a_taken_job_id_returns_the_existing_job_marked_duplicate(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()

    @tasks.task
    async def charge(order: int) -> int:
        return order

    first = await charge.with_options(job_id="order-42").enqueue(42)
    again = await charge.with_options(job_id="order-42").enqueue(43)
    assert (first.id, first.duplicate) == ("order-42", False)
    assert (again.id, again.duplicate) == ("order-42", True)
    record = await again.record()
    assert record.args == [42]  # the second enqueue wrote nothing
    assert record.options.chosen_id
    assert tasks.job("order-42").duplicate is False
    assert (await tasks.info()).stats["enqueued"] == 1


async def test_a_finished_job_still_holds_its_id_until_its_record_expires(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks(aqueue.QueueSettings(succeeded_ttl=0.3))
    runs: list[int] = []

    @tasks.task
    async def report(n: int) -> int:
        runs.append(n)
        return n

    await start_worker(tasks)
    job = await report.with_options(job_id="daily-report").enqueue(1)
    assert await job.result(timeout=5) == 1
    held = await report.with_options(job_id="daily-report").enqueue(2)
    assert held.duplicate and await held.status() is aqueue.JobStatus.SUCCEEDED

    async def expired() -> bool:
        return not await (await tasks._broker()).get_record("daily-report")

    await wait_until(expired, timeout=5)
    reused = await report.with_options(job_id="daily-report").enqueue(3)
    assert (reused.id, reused.duplicate) == ("daily-report", False)
    assert await reused.result(timeout=5) == 3
    assert runs == [1, 3]


async def test_dedup_key_hit_is_marked_duplicate(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()

    @tasks.task
    async def sync(user: int) -> None:
        return None

    first = await sync.with_options(dedup_key="user:7").enqueue(7)
    second = await sync.with_options(dedup_key="user:7").enqueue(7)
    assert (first.duplicate, second.duplicate) == (False, True)
    assert second.id == first.id
    plain = await sync.enqueue(8)
    assert plain.duplicate is False


async def test_enqueue_many_marks_each_duplicate_including_a_repeat_within_the_call(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()

    @tasks.task
    async def send(n: int) -> None:
        return None

    await send.with_options(job_id="mail-1").enqueue(1)
    jobs = await tasks.enqueue_many(
        [
            send.with_options(job_id="mail-1").spec(10),  # taken before the call
            send.with_options(job_id="mail-2").spec(2),
            send.with_options(job_id="mail-2").spec(20),  # taken earlier in the same call
            send.spec(3),
            send.with_options(dedup_key="k").spec(4),
            send.with_options(dedup_key="k").spec(40),
        ]
    )
    assert [j.duplicate for j in jobs] == [True, False, True, False, False, True]
    assert [j.id for j in jobs[:3]] == ["mail-1", "mail-2", "mail-2"]
    assert jobs[5].id == jobs[4].id
    assert (await jobs[2].record()).args == [2]
    assert (await tasks.info()).stats["enqueued"] == 4  # mail-1, mail-2, the plain job, the dedup holder


async def test_a_call_starting_with_a_taken_id_still_writes_its_other_jobs(make_tasks: MakeTasks) -> None:
    # The enqueue script tells a resent call by an existing record of its jobs: a caller's id must not count.
    tasks = make_tasks()

    @tasks.task
    async def step(n: int) -> None:
        return None

    await step.with_options(job_id="first").enqueue(0)
    jobs = await tasks.enqueue_many([step.with_options(job_id="first").spec(1), step.spec(2)])
    assert [j.duplicate for j in jobs] == [True, False]
    assert (await jobs[1].record()).args == [2]


@pytest.mark.parametrize(
    "bad", ["", "a b", "tab\there", "nul\x00", "new\nline", "x" * (MAX_JOB_ID + 1), "\u2028", 42, "\ud800"]
)
@pytest.mark.no_redis
def test_a_job_id_out_of_bounds_is_refused_when_the_options_are_made(bad: object) -> None:
    tasks = aqueue.Tasks(queue="ids", redis_url="memory://")

    @tasks.task
    async def noop() -> None:
        return None

    with pytest.raises(aqueue.ConfigurationError, match="job_id"):
        noop.with_options(job_id=bad)  # type: ignore[arg-type]


@pytest.mark.no_redis
def test_a_job_id_of_printable_characters_up_to_the_bound_is_accepted() -> None:
    tasks = aqueue.Tasks(queue="ids", redis_url="memory://")

    @tasks.task
    async def noop() -> None:
        return None

    for good in ("order-42", "user:7/avatar.png", "é" * MAX_JOB_ID, "x"):
        assert noop.with_options(job_id=good).options.job_id == good


async def test_workflow_and_chain_steps_refuse_a_job_id(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()

    @tasks.task
    async def a() -> int:
        return 1

    @tasks.task
    async def b(x: int) -> int:
        return x

    named = a.with_options(job_id="step-a").spec()
    with pytest.raises(aqueue.ConfigurationError, match="job_id"):
        tasks.workflow().step(named)
    with pytest.raises(aqueue.ConfigurationError, match="job_id"):
        named.then(b.spec_after()).workflow()


async def test_a_fresh_id_is_not_marked_as_chosen(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()

    @tasks.task
    async def noop() -> None:
        return None

    job = await noop.enqueue()
    assert len(job.id) == 32 and not (await job.record()).options.chosen_id


@pytest.mark.no_redis
def test_stored_options_read_old_and_damaged_specs_as_absent() -> None:
    from aqueue._core.options import StoredOptions

    assert StoredOptions._from_spec({}) == StoredOptions()
    assert StoredOptions._from_spec({"o": "garbage"}) == StoredOptions()
    damaged = StoredOptions._from_spec(
        {"o": {"max_attempts": "3", "timeout": "x", "backoff": [1], "retry_delay": float("nan"), "named": 1}}
    )
    assert damaged == StoredOptions()
    old = StoredOptions._from_spec({"o": {"max_attempts": 3, "timeout": 2.5, "backoff": [1.0, 300.0]}})
    assert (old.max_attempts, old.timeout, old.backoff_base, old.backoff_max) == (3, 2.5, 1.0, 300.0)
    assert (old.retry_delay, old.keep_result, old.chosen_id) == (None, None, False)


async def test_rest_enqueue_takes_job_id_and_retention_and_says_duplicate(serve: Serve, make_tasks: MakeTasks) -> None:
    tasks = make_tasks()

    @tasks.task(name="echo")
    async def echo(x: int) -> int:
        return x

    client = await serve(tasks)
    body = {"task": "echo", "args": [1], "options": {"job_id": "order-7", "keep_result": "forever", "retry_delay": 2}}
    assert await json_of(await client.post("/jobs", json=body), 201) == {"id": "order-7", "duplicate": False}
    assert await json_of(await client.post("/jobs", json=body), 200) == {"id": "order-7", "duplicate": True}
    view = await json_of(await client.get("/jobs/order-7"), 200)
    assert view["options"]["keep_result"] == "forever" and view["options"]["retry_delay"] == 2
    assert view["options"]["chosen_id"] is True
    fresh = await json_of(await client.post("/jobs", json={"task": "echo", "args": [2]}), 201)
    assert fresh["duplicate"] is False and fresh["id"] != "order-7"
    for bad, match in [({"job_id": "has space"}, "job_id"), ({"keep_result": -1}, "keep_result"),
                       ({"keep_result": "always"}, "keep_result"), ({"retry_delay": "x"}, "retry_delay")]:  # fmt: skip
        reply = await json_of(await client.post("/jobs", json={"task": "echo", "args": [3], "options": bad}), 422)
        assert match in str(reply), reply
    assert sum((await tasks.info()).queued.values()) == 2
