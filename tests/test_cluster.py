"""Redis Cluster: a queue lives in one hash slot (its ``{queue}`` tag), different queues spread over the masters,
and workers of two queues on different masters run side by side.

The core, priority, retry, delayed, dedup and rate-limit tests run on the cluster as well: their modules set
``ON_CLUSTER = True`` (tests/test_enqueue_run_result.py, test_priorities.py, test_scheduling_and_retries.py,
test_control.py).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis

import aqueue
from aqueue._redis.connect import check_url
from tests.helpers import LocalCluster, RunningWorker, StartWorker, delete_queue


def _ports(url: str) -> list[int]:
    return [int(node.rsplit(":", 1)[1]) for node in url.split("://", 1)[1].split(",")]


async def _owner(nodes: list[aioredis.Redis], ports: list[int], key: str) -> int:
    """The index of the master that serves ``key``'s slot."""
    slot = int(await nodes[0].execute_command("CLUSTER", "KEYSLOT", key))
    for first, last, master, *_ in await nodes[0].execute_command("CLUSTER", "SLOTS"):
        if int(first) <= slot <= int(last):
            return ports.index(int(master[1]))
    raise AssertionError(f"no master serves slot {slot}")


async def test_two_queues_on_different_masters_each_keep_every_key_in_one_slot_and_run_side_by_side(
    redis_cluster: str, start_worker: StartWorker
) -> None:
    ports = _ports(redis_cluster)
    nodes = [aioredis.Redis(port=p, decode_responses=True) for p in ports]
    names: dict[int, str] = {}
    try:
        while len(names) < 2:  # two queue names whose slots are on different masters
            name = f"c-{uuid.uuid4().hex[:8]}"
            names.setdefault(await _owner(nodes, ports, f"aqueue:{{{name}}}:stream:normal"), name)
        (node_a, queue_a), (node_b, queue_b) = names.items()
        assert node_a != node_b

        made = [aqueue.Tasks(queue=q, redis_url=redis_cluster) for q in (queue_a, queue_b)]
        tags: list[aqueue.Task[[int], str]] = []
        workers: list[RunningWorker] = []
        for tasks in made:

            @tasks.task(name="tag")
            async def tag(n: int) -> str:
                return f"{aqueue.current_job().tasks.queue}:{n}"

            tags.append(tag)
            workers.append(await start_worker(tasks, concurrency=8))

        jobs = [await t.tasks.enqueue_many([t.spec(i) for i in range(200)]) for t in tags]
        results = [await asyncio.gather(*(j.result(timeout=20) for j in js)) for js in jobs]
        assert results == [[f"{t.queue}:{i}" for i in range(200)] for t in made]

        # Every key of a queue is on its own master and nowhere else.
        for owner, queue in ((node_a, queue_a), (node_b, queue_b)):
            found = [[k async for k in node.scan_iter(match=f"aqueue:{{{queue}}}:*")] for node in nodes]
            assert found[owner], (queue, found)
            assert all(not keys for i, keys in enumerate(found) if i != owner), (queue, found)
            slots = {int(await nodes[owner].execute_command("CLUSTER", "KEYSLOT", k)) for k in found[owner]}
            assert len(slots) == 1, slots
        for tasks in made:
            assert (await tasks.info()).stats["succeeded"] == 200
        for rw in workers:
            await rw.stop()
    finally:
        for tasks in locals().get("made", []):
            await tasks.close()
            await delete_queue(redis_cluster, tasks.queue)
        for node in nodes:
            await node.aclose()


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://",
        "redis+cluster://127.0.0.1",
        "redis+cluster://127.0.0.1:0",
        "redis+cluster://127.0.0.1:7000,localhost",
        "redis+cluster://127.0.0.1:7000/1",
        "redis+cluster://127.0.0.1:7000?db=0",
    ],
)
def test_a_malformed_cluster_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(aqueue.ConfigurationError, match="cluster URL"):
        check_url(url)
    with pytest.raises(aqueue.ConfigurationError, match="cluster URL"):
        aqueue.Tasks(queue="q", redis_url=url)


def test_cluster_urls_with_several_nodes_and_credentials_are_accepted() -> None:
    assert check_url("redis+cluster://127.0.0.1:7000") == "redis+cluster"
    assert check_url("rediss+cluster://user:p%40ss@10.0.0.1:7000,10.0.0.2:7000/0") == "rediss+cluster"


async def test_a_master_restart_refuses_enqueues_clearly_and_loses_no_acknowledged_job(
    tmp_path: Path, start_worker: StartWorker
) -> None:
    """The queue's master (AOF on) is shut down for 2 s mid-run and started again: enqueue raises
    ``BrokerUnavailable`` meanwhile, the worker carries on once the slot is served again, and every job whose
    enqueue returned succeeds."""
    cluster = LocalCluster(tmp_path, first_port=7201, appendonly=True)
    cluster.start()
    tasks = aqueue.Tasks(queue=f"o-{uuid.uuid4().hex[:8]}", redis_url=cluster.url)
    try:

        @tasks.task
        async def work(n: int) -> int:
            return n

        worker = await start_worker(tasks, concurrency=4)
        nodes = [aioredis.Redis(port=p, decode_responses=True) for p in cluster.ports]
        owner = cluster.ports[await _owner(nodes, cluster.ports, tasks._keys.stream("normal"))]
        for node in nodes:
            await node.aclose()

        acked: list[tuple[int, aqueue.Job[int]]] = []
        refused: list[str] = []
        stopped_at = restarted_at = 0.0
        loop = asyncio.get_running_loop()
        for n in range(300):
            if n == 100:
                cluster.stop_node(owner)
                stopped_at = loop.time()
            if n > 100 and not restarted_at and loop.time() - stopped_at > 2.0:
                cluster.start_node(owner)
                restarted_at = loop.time()
            try:
                acked.append((n, await work.enqueue(n)))
            except aqueue.BrokerUnavailable as exc:
                refused.append(str(exc))
                await asyncio.sleep(0.05)
        if not restarted_at:
            cluster.start_node(owner)
        cluster.wait_ok()

        assert refused, "no enqueue was refused while the queue's master was down"
        assert all("Redis is not answering" in r or "circuit open" in r for r in refused), refused[:3]
        results = await asyncio.gather(*(job.result(timeout=30) for _, job in acked))
        assert len(acked) >= 200 and results == [n for n, _ in acked]
        print(f"cluster master restart: {len(acked)} enqueues acknowledged, {len(refused)} refused, all succeeded")
        info = await tasks.info()
        assert info.stats["succeeded"] == len(acked) and info.dead == 0, info
        await worker.stop()
    finally:
        await tasks.close()
        cluster.stop()
