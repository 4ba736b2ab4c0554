"""Job control on both backends: dedup, ttl, rate limits, cron, workflows, progress, cancellation, pause, cleanup."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

import aqueue
from tests.helpers import MakeTasks, StartWorker, events_of, wait_until

#: These tests run on the 3-master Redis Cluster too (see tests/conftest.py).
ON_CLUSTER = True


# -- dedup ---------------------------------------------------------------------------------------------------


async def test_dedup_drop_returns_the_existing_job_until_it_finishes(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()
    ran: list[int] = []

    @tasks.task
    async def charge(n: int) -> int:
        ran.append(n)
        return n

    keyed = charge.with_options(dedup_key="order-42")
    first = await keyed.enqueue(1)
    second = await keyed.enqueue(2)
    many = await tasks.enqueue_many([keyed.spec(3), charge.spec(4)])
    assert second.id == first.id and many[0].id == first.id and many[1].id != first.id
    dups = await events_of(tasks, "duplicate")
    assert [(e["job"], e["mode"], e["key"]) for e in dups] == [(first.id, "drop", "order-42")] * 2
    assert (await tasks.info()).stats["enqueued"] == 2
    await start_worker(tasks)
    assert await first.result(timeout=5) == 1
    await many[1].result(timeout=5)
    # Held until the job finished: the key is free again, a new job is made.
    third = await keyed.enqueue(5)
    assert third.id != first.id and await third.result(timeout=5) == 5
    assert sorted(ran) == [1, 4, 5]


async def test_dedup_ttl_keeps_returning_a_finished_job_within_the_ttl(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()

    @tasks.task
    async def once(n: int) -> int:
        return n

    keyed = once.with_options(dedup_key="idem", dedup_ttl=60)
    await start_worker(tasks)
    job = await keyed.enqueue(1)
    assert await job.result(timeout=5) == 1
    again = await keyed.enqueue(2)
    assert again.id == job.id and await again.result(timeout=1) == 1


async def test_dedup_replace_debounces_arguments_and_restarts_the_delay(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()
    seen: list[str] = []

    @tasks.task
    async def reindex(doc: str) -> str:
        seen.append(doc)
        return doc

    debounced = reindex.with_options(dedup_key="doc-7", dedup_mode="replace", delay=0.4)
    await start_worker(tasks)
    first = await debounced.enqueue("v1")
    await asyncio.sleep(0.25)
    again_at = time.time()
    second = await debounced.enqueue("v2")
    assert second.id == first.id
    assert await first.result(timeout=5) == "v2"
    record = await first.record()
    assert record.started_at is not None and record.started_at >= again_at + 0.35  # delay restarted at "v2"
    assert seen == ["v2"]
    assert [e["mode"] for e in await events_of(tasks, "duplicate")] == ["replace"]


async def test_dedup_replace_of_a_queued_job_moves_it_back_to_the_scheduled_set(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()

    @tasks.task
    async def ping(tag: str) -> str:
        return tag

    first = await ping.with_options(dedup_key="k", dedup_mode="replace").enqueue("now")
    assert await first.status() is aqueue.JobStatus.QUEUED
    second = await ping.with_options(dedup_key="k", dedup_mode="replace", delay=0.3).enqueue("later")
    assert second.id == first.id and await first.status() is aqueue.JobStatus.SCHEDULED
    await start_worker(tasks)
    assert await first.result(timeout=5) == "later"
    started = [e for e in await events_of(tasks, "started") if e["job"] == first.id]
    assert len(started) == 1  # the stale stream entry was dropped, not run


async def test_dedup_replace_with_another_priority_runs_the_job_once_at_the_new_priority(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()

    @tasks.task
    async def ping(tag: str) -> str:
        return tag

    replace = ping.with_options(dedup_key="p", dedup_mode="replace")
    first = await replace.with_options(priority="low").enqueue("low")
    second = await replace.with_options(priority="high").enqueue("high")
    assert second.id == first.id and (await first.record()).priority == "high"
    later = await replace.with_options(priority="low", delay=0.2).enqueue("later, low")
    assert later.id == first.id and (await first.record()).priority == "low"
    await start_worker(tasks)
    assert await first.result(timeout=5) == "later, low"
    assert len([e for e in await events_of(tasks, "started") if e["job"] == first.id]) == 1
    assert (await tasks.info()).queued == {"high": 0, "normal": 0, "low": 0}


# -- ttl -----------------------------------------------------------------------------------------------------


async def test_a_job_not_started_within_its_ttl_expires_and_never_runs(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()
    ran: list[str] = []

    @tasks.task(ttl=0.2)
    async def fresh(tag: str) -> str:
        ran.append(tag)
        return tag

    stale = await fresh.enqueue("stale")
    delayed = await fresh.with_options(delay=0.3, ttl=5).enqueue("delayed")  # the ttl counts from its due time
    await asyncio.sleep(0.35)
    await start_worker(tasks)
    ok = await fresh.enqueue("ok")
    assert await ok.result(timeout=5) == "ok"
    assert await delayed.result(timeout=5) == "delayed"
    with pytest.raises(aqueue.JobFailed, match="expired"):
        await stale.result(timeout=5)
    assert await stale.status() is aqueue.JobStatus.EXPIRED
    assert sorted(ran) == ["delayed", "ok"]
    assert [e["job"] for e in await events_of(tasks, "expired")] == [stale.id]
    assert (await tasks.info()).stats["expired"] == 1


# -- rate limits ---------------------------------------------------------------------------------------------


async def test_task_rate_limit_holds_across_three_workers(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()

    @tasks.task(rate_limit="20/s")
    async def call_api(i: int) -> int:
        return i

    for _ in range(3):
        await start_worker(tasks, concurrency=20)
    jobs = await tasks.enqueue_many(call_api.spec(i) for i in range(61))
    for job in jobs:
        await job.result(timeout=15)
    starts = sorted([r.started_at for r in [await j.record() for j in jobs] if r.started_at is not None])
    rate = (len(starts) - 1) / (starts[-1] - starts[0])
    print(f"20/s limit across 3 workers: measured {rate:.2f} jobs/s")
    assert 18 <= rate <= 22, rate  # within 10 %
    # Each held-back job got its own slot, 50 ms after the previous one, and did not start before it.
    throttled = {e["job"]: int(e["due_at"]) for e in await events_of(tasks, "throttled")}
    slots = sorted(throttled.values())
    assert len(slots) >= 55 and all(b - a >= 49 for a, b in itertools.pairwise(slots))
    for job in jobs:
        started = (await job.record()).started_at
        assert job.id not in throttled or (started is not None and started * 1000 >= throttled[job.id] - 5)
    assert len(await events_of(tasks, "throttled")) > 0
    workers = (await tasks.info()).workers
    assert all(w["busy"] == 0 for w in workers)


async def test_queue_rate_limit_spans_every_task(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = aqueue.Tasks(make_tasks().queue, make_tasks().redis_url, rate_limit="10/s")

    @tasks.task
    async def a() -> None:
        return None

    @tasks.task
    async def b() -> None:
        return None

    try:
        await start_worker(tasks)
        jobs = await tasks.enqueue_many([a.spec() if i % 2 else b.spec() for i in range(11)])
        for job in jobs:
            await job.result(timeout=10)
        starts = sorted([(await j.record()).started_at or 0.0 for j in jobs])
        assert starts[-1] - starts[0] >= 0.95  # 11 starts at 10/s take a second
    finally:
        await tasks.close()


def test_rate_limit_strings_parse_or_fail_clearly() -> None:
    assert aqueue.RateLimit.parse("100/m").interval_ms == 600
    assert aqueue.RateLimit.parse("10/5s").interval_ms == 500
    assert aqueue.RateLimit.parse(" 3 / day ").per == 86400
    assert aqueue.RateLimit.parse("5000/s").tolerance_ms == pytest.approx(49 * 0.2)
    for bad in ("100", "0/s", "10/fortnight", "x/s", "10/0s"):
        with pytest.raises(aqueue.ConfigurationError):
            aqueue.RateLimit.parse(bad)


# -- cron ----------------------------------------------------------------------------------------------------


async def test_cron_runs_exactly_once_per_tick_across_three_workers(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()
    runs: list[float] = []

    @tasks.cron(every=0.5)
    async def beat() -> None:
        runs.append(time.time())

    for _ in range(3):
        await start_worker(tasks)
    await asyncio.sleep(2.3)
    fired = await events_of(tasks, "cron")
    ticks = [int(e["tick"]) for e in fired]
    assert len(ticks) >= 3 and len(set(ticks)) == len(ticks)  # one job per tick, never two
    assert all(b - a == 500 for a, b in itertools.pairwise(ticks))  # none skipped
    await wait_until(lambda: len(runs) >= len(ticks), 2.0)
    state = (await (await tasks._broker()).cron_state())[beat.name]
    assert int(state["next"]) > int(state["last"]) and state["schedule"] == "every 0.5s"


async def test_cron_skips_missed_ticks_unless_catch_up_is_set(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()

    @tasks.cron(every=3600, name="hourly")
    async def hourly() -> None:
        return None

    @tasks.cron(every=3600, name="hourly-catch-up", catch_up=2)
    async def hourly_catch_up() -> None:
        return None

    broker = await tasks._broker()
    ten_hours_ago = (int(time.time()) // 3600 - 10) * 3600 * 1000
    await broker.redis.hset(
        tasks._keys.cron, mapping={"hourly:last": ten_hours_ago, "hourly-catch-up:last": ten_hours_ago}
    )
    await start_worker(tasks)
    await wait_until(lambda: events_of(tasks, "cron"), 3.0)
    await asyncio.sleep(0.2)
    fired = await events_of(tasks, "cron")
    assert [e["name"] for e in fired] == ["hourly-catch-up", "hourly-catch-up"]
    now_tick = int(time.time()) // 3600 * 3600 * 1000
    assert [int(e["tick"]) for e in fired] == [now_tick - 3600_000, now_tick]


def test_cron_rejects_bad_schedules() -> None:
    tasks = aqueue.Tasks("cron-bad", "memory://cron-bad")
    with pytest.raises(aqueue.ConfigurationError):

        @tasks.cron("61 * * * *")
        async def bad() -> None:
            return None

    with pytest.raises(aqueue.ConfigurationError):

        @tasks.cron("* * * * *", every=5)
        async def both() -> None:
            return None


# -- workflows -----------------------------------------------------------------------------------------------


async def test_chain_passes_each_result_to_the_next(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()

    @tasks.task
    async def add(a: int, b: int) -> int:
        return a + b

    @tasks.task
    async def mul(a: int, b: int) -> int:
        return a * b

    await start_worker(tasks)
    last = await add.spec(1, 2).then(mul.spec(10)).then(add.spec(0.5)).enqueue()
    assert await last.result(timeout=5) == 30.5


async def test_workflow_fan_out_fan_in_waits_for_every_parent(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()

    @tasks.task
    async def fetch(n: int) -> int:
        return n

    @tasks.task
    async def square(n: int) -> int:
        await asyncio.sleep(0.05 * n)
        return n * n

    @tasks.task
    async def total(parts: list[int]) -> int:
        return sum(parts)

    wf = tasks.workflow("fan")
    root = wf.step(fetch.spec(3), name="fetch")
    branches = [wf.step(square.spec(n), after=root, name=f"sq{n}") for n in (1, 2, 3)]
    sink = wf.step(total.spec(), after=branches, name="total", pass_results=True)
    handle = await wf.enqueue()
    assert (await handle.status())["total"] is aqueue.JobStatus.WAITING
    await start_worker(tasks)
    states = await handle.wait(timeout=10)
    assert set(states.values()) == {aqueue.JobStatus.SUCCEEDED}
    assert await handle.jobs[sink.name].result() == 1 + 4 + 9
    records = await handle.records()
    started = records["total"].started_at if records["total"] else None
    finished = [r.finished_at for n, r in records.items() if n.startswith("sq") and r]
    assert started is not None and all(f is not None and f <= started for f in finished)
    loaded = await tasks.workflow_handle(handle.id)
    assert {n: j.id for n, j in loaded.jobs.items()} == {n: j.id for n, j in handle.jobs.items()}
    assert any(e["workflow"] == handle.id for e in await events_of(tasks, "workflow_finished"))


async def test_failed_step_cancels_dependants_and_triggers_its_failure_handler(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()
    alerts: list[dict[str, str]] = []

    @tasks.task(max_attempts=2, backoff_base=0.01)
    async def flaky() -> None:
        raise RuntimeError("upstream down")

    @tasks.task
    async def after() -> str:
        return "never"

    @tasks.task
    async def alert(failure: dict[str, str]) -> None:
        alerts.append(failure)

    @tasks.task
    async def unused_alert() -> None:
        return None

    @tasks.task
    async def fine() -> int:
        return 1

    wf = tasks.workflow("etl")
    a = wf.step(flaky.spec(), name="extract")
    b = a.then(after.spec(), name="load")
    c = b.then(after.spec(), name="report")
    a.on_failure(alert.spec(), name="alert", pass_results=True)
    ok = wf.step(fine.spec(), name="side")
    ok.on_failure(unused_alert.spec(), name="side-alert")
    handle = await wf.enqueue()
    await start_worker(tasks)
    states = await handle.wait(timeout=10)
    assert states == {
        "extract": aqueue.JobStatus.DEAD,
        "load": aqueue.JobStatus.CANCELLED,
        "report": aqueue.JobStatus.CANCELLED,
        "alert": aqueue.JobStatus.SUCCEEDED,
        "side": aqueue.JobStatus.SUCCEEDED,
        "side-alert": aqueue.JobStatus.CANCELLED,
    }
    records = await handle.records()
    assert records["extract"] is not None and records["extract"].attempts == 2
    assert records["report"] is not None and "ended" in (records["report"].error or "")
    assert records["side-alert"] is not None and (records["side-alert"].error or "").startswith("skipped")
    assert len(alerts) == 1 and alerts[0]["job"] == a.job_id and alerts[0]["status"] == "dead"
    assert "upstream down" in alerts[0]["error"]
    assert c.job_id == handle.jobs["report"].id


def test_workflow_rejects_malformed_graphs() -> None:
    tasks = aqueue.Tasks("wf-bad", "memory://wf-bad")
    other = aqueue.Tasks("wf-other", "memory://wf-bad")

    @tasks.task
    async def t() -> None:
        return None

    @other.task
    async def u() -> None:
        return None

    wf = tasks.workflow()
    a = wf.step(t.spec(), name="a")
    with pytest.raises(aqueue.ConfigurationError, match="twice"):
        wf.step(t.spec(), name="a")
    with pytest.raises(aqueue.ConfigurationError, match="either"):
        wf.step(t.spec(), after=a, on_failure=a)
    with pytest.raises(aqueue.ConfigurationError, match="queue"):
        wf.step(u.spec())
    with pytest.raises(aqueue.ConfigurationError, match="another workflow"):
        tasks.workflow().step(t.spec(), after=a)
    with pytest.raises(aqueue.ConfigurationError, match="dedup"):
        wf.step(t.with_options(dedup_key="x").spec())


# -- progress ------------------------------------------------------------------------------------------------


async def test_progress_is_recorded_on_the_job_and_emitted(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()
    gate = asyncio.Event()

    @tasks.task
    async def resize() -> str:
        await aqueue.progress(40, message="resized")
        await gate.wait()
        await aqueue.current_job().progress(100)
        return "done"

    await start_worker(tasks)
    job = await resize.enqueue()
    await wait_until(lambda: _progress_of(job, 40.0), 5.0)
    record = await job.record()
    assert record.progress == 40.0 and record.progress_message == "resized"
    gate.set()
    assert await job.result(timeout=5) == "done"
    events = [e for e in await events_of(tasks, "progress") if e["job"] == job.id]
    assert [(float(e["progress"]), e["message"]) for e in events] == [(40.0, "resized"), (100.0, "")]
    with pytest.raises(RuntimeError, match="inside a task"):
        aqueue.current_job()


async def _progress_of(job: aqueue.Job[object], value: float) -> bool:
    return (await job.record()).progress == value


# -- cancellation --------------------------------------------------------------------------------------------


async def test_cancel_queued_and_scheduled_jobs_they_never_run(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()
    ran: list[str] = []

    @tasks.task
    async def work(tag: str) -> None:
        ran.append(tag)

    queued = await work.enqueue("queued")
    scheduled = await work.with_options(delay=0.2).enqueue("scheduled")
    keep = await work.enqueue("keep")
    assert await queued.cancel() and await scheduled.cancel("not needed")
    assert await queued.cancel() is False  # already cancelled: nothing done now
    await start_worker(tasks)
    await keep.result(timeout=5)
    await asyncio.sleep(0.3)
    assert ran == ["keep"]
    with pytest.raises(aqueue.JobCancelled):
        await queued.result(timeout=1)
    record = await scheduled.record()
    assert record.status is aqueue.JobStatus.CANCELLED and record.error == "not needed"
    assert await keep.cancel() is False  # already finished
    with pytest.raises(aqueue.UnknownJob):
        await tasks.job("nope").cancel()


async def test_cancel_a_running_job_from_another_process_within_100ms(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()
    other = make_tasks()  # a separate registry and connection: the "other process" asking
    started = asyncio.Event()
    cancelled_at: list[float] = []

    @tasks.task(max_attempts=5)
    async def long_job() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled_at.append(time.perf_counter())
            raise

    rw = await start_worker(tasks)
    job = await long_job.enqueue()
    await asyncio.wait_for(started.wait(), 5)
    asked = time.perf_counter()
    assert await other.cancel(job.id)
    await wait_until(lambda: cancelled_at, 2.0, step=0.001)
    took = cancelled_at[0] - asked
    print(f"running job cancelled {took * 1000:.1f} ms after cancel()")
    assert took < 0.5
    with pytest.raises(aqueue.JobCancelled):
        await job.result(timeout=5)
    record = await job.record()
    assert record.status is aqueue.JobStatus.CANCELLED and record.attempts == 1  # not retried

    # The slot survived its job's cancellation and runs the next one.
    @tasks.task
    async def after() -> int:
        return 7

    assert rw.worker.running_jobs == 0
    assert await (await after.enqueue()).result(timeout=5) == 7


# -- pause / resume ------------------------------------------------------------------------------------------


async def test_pause_stops_starts_at_once_lets_running_jobs_finish_and_resume_restarts(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()
    gate = asyncio.Event()

    @tasks.task
    async def slow() -> str:
        await gate.wait()
        return "finished"

    @tasks.task
    async def quick() -> str:
        return "quick"

    await start_worker(tasks)
    running = await slow.enqueue()
    await wait_until(lambda: _is(running, aqueue.JobStatus.ACTIVE), 5.0)
    assert await tasks.pause(by="test") is True
    assert await tasks.pause() is False
    assert (await tasks.paused() or {}).get("by") == "test"
    waiting = await quick.enqueue()
    gate.set()
    assert await running.result(timeout=5) == "finished"  # in-flight jobs finish while paused
    await asyncio.sleep(0.3)
    assert await waiting.status() is aqueue.JobStatus.QUEUED
    assert await tasks.resume() is True and await tasks.paused() is None
    assert await waiting.result(timeout=2) == "quick"
    kinds = [e["type"] for e in await events_of(tasks) if e["type"] in ("paused", "resumed")]
    assert kinds == ["paused", "resumed"]


async def test_a_worker_blocked_waiting_for_work_does_not_start_jobs_after_pause(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()

    @tasks.task
    async def quick() -> None:
        return None

    await start_worker(tasks)
    await asyncio.sleep(0.2)  # the idle worker is now blocked in its read
    await tasks.pause()
    jobs = [await quick.enqueue() for _ in range(5)]
    await asyncio.sleep(0.3)
    assert [await j.status() for j in jobs] == [aqueue.JobStatus.QUEUED] * 5
    assert await events_of(tasks, "started") == []
    await tasks.resume()
    for job in jobs:
        await job.result(timeout=5)


async def _is(job: aqueue.Job[object], status: aqueue.JobStatus) -> bool:
    return await job.status() is status


# -- retention -----------------------------------------------------------------------------------------------


async def test_cleanup_deletes_finished_records_by_status_and_age(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()

    @tasks.task
    async def ok() -> None:
        return None

    @tasks.task(max_attempts=1)
    async def bad() -> None:
        raise ValueError("no")

    await start_worker(tasks)
    good = [await ok.enqueue() for _ in range(5)]
    dead = await bad.enqueue()
    for job in good:
        await job.result(timeout=5)
    with pytest.raises(aqueue.JobFailed):
        await dead.result(timeout=5)
    assert await tasks.cleanup(older_than=3600) == 0  # nothing that old
    assert await tasks.cleanup(statuses=["succeeded"]) == 5
    for job in good:
        with pytest.raises(aqueue.UnknownJob):
            await job.record()
    assert await dead.status() is aqueue.JobStatus.DEAD
    assert (await tasks.info()).dead == 1
    assert await tasks.cleanup(statuses=[aqueue.JobStatus.DEAD]) == 1
    assert (await tasks.info()).dead == 0
    assert await _indexed(tasks, "succeeded") == 0
    with pytest.raises(aqueue.ConfigurationError):
        await tasks.cleanup(statuses=["queued"])


async def test_finished_records_expire_and_the_cleanup_index_stays_bounded(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks(aqueue.QueueSettings(succeeded_ttl=1.0))

    @tasks.task
    async def ok() -> None:
        return None

    await start_worker(tasks)
    first = [await ok.enqueue() for _ in range(20)]
    for job in first:
        await job.result(timeout=5)
    broker = await tasks._broker()
    assert await _indexed(tasks, "succeeded") == 20
    await asyncio.sleep(1.1)
    await (await ok.enqueue()).result(timeout=5)  # the next settle trims index entries past the retention
    assert await _indexed(tasks, "succeeded") == 1
    assert not await broker.redis.exists(*[tasks._keys.job(j.id) for j in first])


async def _indexed(tasks: aqueue.Tasks, status: str) -> int:
    """Job ids in the cleanup index of one status (a stream of comma-joined id lists)."""
    broker = await tasks._broker()
    entries = await broker.redis.xrange(tasks._keys.done(status))
    return sum(len(fields["ids"].split(",")) for _, fields in entries)
