"""``enqueue_many`` failing midway: a Redis the test starts reaches ``maxmemory`` (``noeviction``) during a batch of
10,000 jobs, or the connection drops after some calls ran. The error names exactly the jobs written and the specs
not written, and retrying only the latter makes each job once; an enqueue call that redis-py sends again writes
nothing twice. And ``info().queued`` counts only jobs that wait: a cancelled queued job leaves it at once.
"""

from __future__ import annotations

import asyncio
import shutil

import orjson
import pytest
import redis

import aqueue
from aqueue._core.wire import EnqueueItem
from aqueue._redis.broker import Broker
from tests.helpers import MakeTasks, RedisProcess, cap_memory

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary")


async def test_queued_counts_no_cancelled_job(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()

    @tasks.task
    async def echo(n: int) -> int:
        return n

    broker = await tasks._broker()
    await broker.ensure_groups()  # as a worker would have: the entries are after the group's last-delivered id
    jobs = await tasks.enqueue_many([echo.spec(i) for i in range(15)])
    assert sum((await tasks.info()).queued.values()) == 15
    for job in jobs[:5]:
        assert await job.cancel()
    info = await tasks.info()
    assert sum(info.queued.values()) == 10 and info.stats["cancelled"] == 5
    assert not await jobs[0].cancel()  # already cancelled: nothing more is deleted
    assert sum((await tasks.info()).queued.values()) == 10


async def test_an_enqueue_call_sent_again_writes_nothing_and_answers_the_same(
    make_tasks: MakeTasks,
) -> None:
    """redis-py resends a whole pipeline whose connection dropped, calls that had run included."""
    tasks = make_tasks()

    @tasks.task
    async def echo(n: int) -> int:
        return n

    keyed = echo.with_options(dedup_key="k")
    items = [tasks._item(s) for s in (keyed.spec(0), keyed.spec(1), echo.spec(2))]
    broker = await tasks._broker()
    first = await broker.enqueue(items)
    assert first == {1: items[0].job_id}
    before = await tasks.info()
    assert await broker.enqueue(items) == first
    after = await tasks.info()
    assert after.queued == before.queued and after.stats == before.stats


async def test_a_connection_lost_midway_is_resolved_into_the_jobs_written_and_the_specs_not(
    make_tasks: MakeTasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = make_tasks()

    @tasks.task
    async def echo(n: int) -> int:
        return n

    send = Broker._send_chunks

    async def two_calls_ran_then_the_connection_dropped(
        self: Broker, items: list[EnqueueItem], chunk: int, replies: dict[int, object]
    ) -> None:
        await send(self, items[: 2 * chunk], chunk, {})  # their replies are lost with the connection
        raise aqueue.BrokerUnavailable("Redis is not answering: ConnectionError: Connection reset by peer")

    monkeypatch.setattr(Broker, "_send_chunks", two_calls_ran_then_the_connection_dropped)
    keyed = echo.with_options(dedup_key="same")
    specs = [keyed.spec(0), keyed.spec(1), *(echo.spec(i) for i in range(2, 1_200))]
    with pytest.raises(aqueue.PartialEnqueue) as caught:
        await tasks.enqueue_many(specs)
    written, missed = caught.value.written, caught.value.not_written
    assert len(written) == 1_000 and missed == specs[1_000:]
    assert written[1].id == written[0].id  # the duplicate resolved to its holder, as on success
    records = await (await tasks._broker()).get_records([j.id for j in written])
    assert all(r.get("task") for r in records)
    monkeypatch.undo()
    await tasks.enqueue_many(missed)
    assert sum((await tasks.info()).queued.values()) == 1_199


def _records(admin: redis.Redis, queue: str) -> dict[str, int]:
    """{job id: its argument} for every job record of the queue."""
    out: dict[str, int] = {}
    for key in admin.scan_iter(match=f"aqueue:{{{queue}}}:job:*", count=1000):
        spec = admin.hget(key, "spec")
        assert spec is not None
        out[key.decode().rsplit(":", 1)[1]] = orjson.loads(spec)["a"][0]
    return out


async def test_enqueue_many_at_maxmemory_midway_names_the_jobs_written_and_a_retry_of_the_rest_makes_no_duplicate(
    empty_redis: RedisProcess,
) -> None:
    admin = redis.Redis(port=empty_redis.port)
    tasks = aqueue.Tasks("bulk", empty_redis.url)

    @tasks.task
    async def echo(n: int) -> int:
        return n

    try:
        await echo.enqueue(-1)  # connected, scripts loaded
        admin.flushall()  # the scripts stay cached
        # Room for a few thousand of the 10,000 jobs: the batch's script calls start refusing midway.
        cap_memory(admin, 1_500_000)
        specs = [echo.spec(i) for i in range(10_000)]
        with pytest.raises(aqueue.PartialEnqueue) as caught:
            await tasks.enqueue_many(specs)
        exc = caught.value
        assert isinstance(exc, aqueue.BrokerUnavailable) and "out of memory" in str(exc), exc
        written, missed = exc.written, exc.not_written
        assert written and missed and len(written) + len(missed) == 10_000
        records = _records(admin, "bulk")
        # every written handle's record exists, and no other record: none of the not-written specs was written
        assert set(records) == {job.id for job in written}
        assert set(records.values()) | {s.args[0] for s in missed} == set(range(10_000))
        assert not set(records.values()) & {s.args[0] for s in missed}
        assert missed == [s for s in specs if s.args[0] not in set(records.values())]  # in order
        assert len(written) % 500 == 0  # a script call is refused at its first write, or runs to its end

        admin.config_set("maxmemory", 0)
        async with asyncio.timeout(10):
            while True:
                try:
                    again = await tasks.enqueue_many(exc.not_written)
                    break
                except aqueue.BrokerUnavailable as refused:
                    assert not isinstance(refused, aqueue.PartialEnqueue)
                    await asyncio.sleep(0.2)  # the circuit breaker probes again within 2 s
        assert len(again) == len(missed)
        records = _records(admin, "bulk")
        assert len(records) == 10_000 and sorted(records.values()) == list(range(10_000))
        assert sum((await tasks.info()).queued.values()) == 10_000
    finally:
        await tasks.close()
        admin.close()
