"""Redis outages: a Redis the test runs itself (appendonly, fsync always) is restarted mid-run and then stopped for
10 s while a producer enqueues and a worker drains. Nothing ``enqueue`` acknowledged is lost, enqueue during the
outage raises ``BrokerUnavailable``, the circuit breaker reports the outage once (no log storm) and closes again,
and ``/health/ready`` and ``/metrics`` show its state.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time

import pytest
import redis

import aqueue
from tests.helpers import RedisProcess, cap_memory

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary")


async def test_restart_and_a_10s_outage_lose_no_acknowledged_job(
    durable_redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aqueue")
    tasks = aqueue.Tasks("outage", durable_redis.url)
    ran: set[int] = set()

    @tasks.task
    async def work(n: int) -> int:
        await asyncio.sleep(0.005)
        ran.add(n)
        return n

    # A claim whose reply is lost with the connection leaves its job pending for this worker until the lease
    # passes, when the worker takes it back: a short lease keeps the test short.
    worker = aqueue.Worker(tasks, concurrency=20, shutdown_timeout=5, lease=3.0)
    running = asyncio.create_task(worker.run())
    acknowledged: dict[int, aqueue.Job[int]] = {}
    refused: list[BaseException] = []
    stop_producing = asyncio.Event()

    async def produce() -> None:
        n = 0
        while not stop_producing.is_set():
            n += 1
            try:
                acknowledged[n] = await work.enqueue(n)
            except aqueue.BrokerUnavailable as exc:
                refused.append(exc)
            await asyncio.sleep(0.004)

    producer = asyncio.create_task(produce())
    loop = asyncio.get_running_loop()
    try:
        await asyncio.sleep(2.0)
        await loop.run_in_executor(None, durable_redis.stop)  # a clean restart: SIGTERM, AOF flushed
        await loop.run_in_executor(None, durable_redis.start)
        await asyncio.sleep(2.0)
        outage_from = len(caplog.records)
        await loop.run_in_executor(None, lambda: durable_redis.stop(kill=True))  # a crash: SIGKILL
        await asyncio.sleep(10.0)
        broker = await tasks._broker()
        assert broker.breaker.is_open
        outage_logs = [r for r in caplog.records[outage_from:] if r.levelno >= logging.WARNING]
        await loop.run_in_executor(None, durable_redis.start)
        await asyncio.sleep(2.0)
        stop_producing.set()
        await producer
        deadline = time.monotonic() + 60
        while set(acknowledged) - ran:
            assert time.monotonic() < deadline, f"{len(set(acknowledged) - ran)} acknowledged jobs never ran"
            await asyncio.sleep(0.1)
        statuses: set[aqueue.JobStatus] = set()
        while statuses != {aqueue.JobStatus.SUCCEEDED}:  # their settles, retried since Redis came back
            assert time.monotonic() < deadline, statuses
            await asyncio.sleep(0.2)
            try:
                statuses = {await job.status() for job in acknowledged.values()}
            except aqueue.BrokerUnavailable:
                continue  # a pooled connection the restart closed fails once; the next read reconnects
        print(f"\n{len(acknowledged)} jobs acknowledged, {len(refused)} enqueues refused during the outages, "
              f"{len(outage_logs)} warning+ log lines in the 10 s outage, breaker opened "
              f"{broker.breaker.opened_total} times")  # fmt: skip
        assert statuses == {aqueue.JobStatus.SUCCEEDED}
        assert refused and all(isinstance(e, aqueue.BrokerUnavailable) for e in refused)
        assert not broker.breaker.is_open and broker.breaker.opened_total >= 1
        assert len(outage_logs) <= 20, [r.getMessage() for r in outage_logs]
        assert any("circuit open" in r.getMessage() for r in outage_logs)
        assert any("circuit closed" in r.getMessage() for r in caplog.records)
        # Also every job written but not acknowledged (the connection died before the reply) ends, none stays held.
        info = await tasks.info()
        while not (info.active == 0 and info.stats["succeeded"] == info.stats["enqueued"]):
            assert time.monotonic() < deadline, info
            await asyncio.sleep(0.2)
            info = await tasks.info()
        assert sum(info.queued.values()) == 0
    finally:
        stop_producing.set()
        await asyncio.gather(producer, return_exceptions=True)
        await worker.stop()
        await running
        await tasks.close()


async def test_ready_and_metrics_show_the_circuit(durable_redis: RedisProcess) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from aqueue.web import create_app

    tasks = aqueue.Tasks("outage-web", durable_redis.url)
    client = TestClient(TestServer(create_app(tasks)))
    await client.start_server()
    try:
        ready = await client.get("/health/ready")
        assert ready.status == 200 and (await ready.json())["redis_circuit"] == "closed"
        durable_redis.stop(kill=True)
        for _ in range(4):  # enough failures to open the circuit
            assert (await client.get("/health/ready")).status == 503
        down = await client.get("/health/ready")
        assert down.status == 503 and "circuit open" in (await down.json())["error"]
        text = await (await client.get("/metrics")).text()
        q = '{queue="outage-web"}'
        assert f"aqueue_redis_circuit_open{q} 1.0" in text and f"aqueue_redis_up{q} 0.0" in text
        durable_redis.start()
        deadline = time.monotonic() + 10
        while (await client.get("/health/ready")).status != 200:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        text = await (await client.get("/metrics")).text()
        assert f"aqueue_redis_circuit_open{q} 0.0" in text and f"aqueue_redis_circuit_opened_total{q} 1.0" in text
    finally:
        await client.close()
        await tasks.close()


async def test_a_redis_at_maxmemory_refuses_enqueue_clearly_and_the_queue_resumes_once_freed(
    durable_redis: RedisProcess,
) -> None:
    """``maxmemory`` reached with ``noeviction``: enqueue raises ``BrokerUnavailable`` saying so (not redis-py's
    OutOfMemoryError), nothing is written, and once memory is raised the same Tasks enqueue and run again."""
    admin = redis.Redis(port=durable_redis.port)
    tasks = aqueue.Tasks("full", durable_redis.url)

    @tasks.task
    async def echo(n: int) -> int:
        return n

    try:
        await echo.enqueue(0)  # scripts loaded, queue created
        cap_memory(admin, 200_000)
        refused: aqueue.BrokerUnavailable | None = None
        for _ in range(100):
            try:
                await tasks.enqueue_many([echo.spec(i) for i in range(1_000)])
            except aqueue.BrokerUnavailable as exc:
                refused = exc
                break
        assert refused is not None and "out of memory" in str(refused), refused
        # A refused bulk call may leave a few hundred bytes free (its own request buffer pushed Redis over): fill them
        # with single jobs until Redis refuses one too. That one must say why and write nothing.
        before = (await tasks.info()).stats["enqueued"]
        single: aqueue.BrokerUnavailable | None = None
        for _ in range(1_000):
            try:
                await echo.enqueue(1)
            except aqueue.BrokerUnavailable as exc:
                single = exc
                break
            before += 1
        assert single is not None and "out of memory" in str(single) and "nothing was written" in str(single), single
        admin.config_set("maxmemory", 0)
        async with asyncio.timeout(10):
            while True:
                try:
                    job = await echo.enqueue(2)
                    break
                except aqueue.BrokerUnavailable:
                    await asyncio.sleep(0.2)  # the breaker probes again within 2 s
        assert (await tasks.info()).stats["enqueued"] == before + 1
        worker = aqueue.Worker(tasks, concurrency=50)
        running = asyncio.create_task(worker.run(handle_signals=False))
        assert await job.result(timeout=30) == 2
        await worker.stop()
        await running
    finally:
        await tasks.close()
        admin.close()
