"""Producer calls cost exactly one network round trip to Redis, counted on the real server's connection.

The counter patches the lowest layer of ``redis.asyncio`` that every request passes through:
``AbstractConnection.send_packed_command`` (one call per flush of request bytes: plain commands, pipelines,
transactions, the connect handshake and health-check PINGs all go through it), and ``read_response`` (one call
per reply read). A round trip is one flush followed by its replies, so ``requests`` is the number of round trips
and ``replies`` the number of commands they carried. Round trips only mean something on a real Redis, so these
tests run on ``REDIS_URL`` alone (``memory://`` never touches a socket).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio.connection as rconn

import aqueue
from tests.helpers import REDIS_URL, delete_queue


@dataclass
class RoundTrips:
    """What the patched connections sent and read while counting."""

    requests: int = 0  #: flushes of request bytes: one per round trip
    replies: int = 0  #: replies read: one per command sent
    commands: list[str] = field(default_factory=list)  #: command names packed, in order (for failure messages)

    def __str__(self) -> str:
        return f"{self.requests} round trips, {self.replies} replies, commands {self.commands}"


@contextlib.contextmanager
def count_round_trips() -> Iterator[RoundTrips]:
    """Count every request and reply of every ``redis.asyncio`` connection in this process inside the block."""
    counter = RoundTrips()
    cls = rconn.AbstractConnection
    send, read, pack = cls.send_packed_command, cls.read_response, cls.pack_command

    async def counting_send(self: Any, command: Any, check_health: bool = True) -> None:
        counter.requests += 1
        await send(self, command, check_health)

    async def counting_read(self: Any, *args: Any, **kwargs: Any) -> Any:
        counter.replies += 1
        return await read(self, *args, **kwargs)

    def recording_pack(self: Any, *args: Any) -> list[bytes]:
        name = args[0]
        counter.commands.append(name.decode() if isinstance(name, bytes) else str(name).split()[0])
        return pack(self, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cls, "send_packed_command", counting_send)
        mp.setattr(cls, "read_response", counting_read)
        mp.setattr(cls, "pack_command", recording_pack)
        yield counter


@dataclass
class Producer:
    tasks: aqueue.Tasks
    noop: aqueue.Task[[int], None]


@pytest.fixture
async def producer() -> AsyncIterator[Producer]:
    """A Tasks on the real Redis, connected, scripts loaded and one job sent: a warmed-up long-lived producer."""
    queue = f"t-rt-{uuid.uuid4().hex[:10]}"
    tasks = aqueue.Tasks(queue=queue, redis_url=REDIS_URL)

    @tasks.task(name="noop")
    async def noop(i: int) -> None:
        return None

    try:
        await tasks._broker()
        await noop.enqueue(-1)  # warm-up: the pool now holds an open connection
        yield Producer(tasks, noop)
    finally:
        await tasks.close()
        await delete_queue(REDIS_URL, queue)


async def test_the_counter_counts_round_trips_and_replies(producer: Producer) -> None:
    """The counter is not vacuous: it sees aqueue's reads, and tells round trips from commands."""
    with count_round_trips() as rt:
        await producer.tasks.info()  # one pipeline of several reads
    assert rt.requests >= 1 and rt.replies > rt.requests, rt
    r = (await producer.tasks._broker()).redis
    with count_round_trips() as rt:
        await r.ping()
        await r.ping()
    assert (rt.requests, rt.replies, rt.commands) == (2, 2, ["PING", "PING"]), rt
    with count_round_trips() as rt:
        async with r.pipeline(transaction=False) as pipe:
            pipe.ping().ping().ping()
            await pipe.execute()
    assert (rt.requests, rt.replies) == (1, 3), rt


async def test_the_counter_sees_the_cost_of_a_cold_producer() -> None:
    """A first enqueue on a fresh Tasks also connects and loads the scripts: more than one round trip, counted."""
    queue = f"t-rt-{uuid.uuid4().hex[:10]}"
    tasks = aqueue.Tasks(queue=queue, redis_url=REDIS_URL)

    @tasks.task(name="noop")
    async def noop() -> None:
        return None

    try:
        with count_round_trips() as rt:
            await noop.enqueue()
        assert rt.requests > 1, rt
        assert rt.commands.count("SCRIPT") >= 1 and rt.commands[-1] == "EVALSHA", rt
    finally:
        await tasks.close()
        await delete_queue(REDIS_URL, queue)


async def test_one_enqueue_is_one_round_trip(producer: Producer) -> None:
    with count_round_trips() as rt:
        job = await producer.noop.enqueue(1)
    assert (rt.requests, rt.replies, rt.commands) == (1, 1, ["EVALSHA"]), rt
    assert await job.status() is aqueue.JobStatus.QUEUED


async def test_enqueue_with_priority_is_one_round_trip(producer: Producer) -> None:
    with count_round_trips() as rt:
        job = await producer.noop.with_options(priority="high").enqueue(2)
    assert (rt.requests, rt.replies) == (1, 1), rt
    assert (await job.record()).priority == "high"


async def test_enqueue_many_of_1200_jobs_is_one_round_trip(producer: Producer) -> None:
    specs = [producer.noop.spec(i) for i in range(1_200)]
    with count_round_trips() as rt:
        jobs = await producer.tasks.enqueue_many(specs)
    # three script calls (500 + 500 + 200 jobs), pipelined in one flush: one round trip, three replies
    assert (rt.requests, rt.replies, rt.commands) == (1, 3, ["EVALSHA"] * 3), rt
    assert len({j.id for j in jobs}) == 1_200
    assert (await producer.tasks.info()).queued["normal"] == 1 + 1_200  # the warm-up job and these
    assert await jobs[-1].status() is aqueue.JobStatus.QUEUED


async def test_enqueue_many_of_nothing_sends_nothing(producer: Producer) -> None:
    with count_round_trips() as rt:
        assert await producer.tasks.enqueue_many([]) == []
    assert rt.requests == 0, rt


async def test_delayed_enqueue_is_one_round_trip(producer: Producer) -> None:
    with count_round_trips() as rt:
        job = await producer.noop.with_options(delay=60.0).enqueue(3)
    assert (rt.requests, rt.replies) == (1, 1), rt
    assert await job.status() is aqueue.JobStatus.SCHEDULED


async def test_dedup_enqueue_is_one_round_trip_first_and_as_a_duplicate(producer: Producer) -> None:
    task = producer.noop.with_options(dedup_key="k")
    with count_round_trips() as rt:
        first = await task.enqueue(4)
    assert (rt.requests, rt.replies) == (1, 1), rt
    with count_round_trips() as rt:
        again = await task.enqueue(5)
    assert (rt.requests, rt.replies) == (1, 1), rt
    assert again.id == first.id  # the duplicate was answered with the holder's id in that same round trip


async def test_prepared_spec_enqueue_is_one_round_trip(producer: Producer) -> None:
    spec = producer.noop.spec(6)
    with count_round_trips() as rt:
        await producer.tasks.enqueue(spec)
    assert (rt.requests, rt.replies) == (1, 1), rt
