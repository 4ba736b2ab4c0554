"""dramatiq: bulk enqueue, drain and latency (see ``_peerkit``); run by ``benchmarks/peers.py`` in dramatiq's own
venv.

Configuration: dramatiq's ``RedisBroker`` with its default middleware, and one ``dramatiq.Worker`` with the
default 8 worker threads (plain threads, no gevent), in this process, as ``dramatiq --processes 1`` runs it. The
actors are plain functions (dramatiq runs every message on a worker thread). dramatiq's producer API is
synchronous and has no bulk enqueue (a ``group`` sends its messages one by one): the bulk figure is one loop of
``send()`` (one script call per message) in one thread, and the latency producer paces ``send()`` in the main
thread. Every key is ``<tag>:...`` (the broker's ``namespace``). Done: the task counts its runs in this process
(``RUNS``).
"""

from __future__ import annotations

import importlib.metadata
import time

import dramatiq
from _peerkit import RUNS, bulk_and_drain, drain_timeout, emit, latency_figures, paced_sync, parse_args, record_start
from dramatiq.brokers.redis import RedisBroker

THREADS = 8
CONFIG = f"RedisBroker, Worker(worker_threads={THREADS}) as shipped; send() in a loop (sync API, no bulk)"


def main() -> None:
    args = parse_args()
    broker = RedisBroker(url=args.redis, namespace=args.tag)
    dramatiq.set_broker(broker)

    @dramatiq.actor(actor_name="noop")
    def noop() -> None:
        RUNS.hit()

    @dramatiq.actor(actor_name="stamp")
    def stamp(sent_at: float) -> None:
        record_start(sent_at)

    t0 = time.perf_counter()
    for _ in range(args.jobs):
        noop.send()
    enqueue_s = time.perf_counter() - t0

    RUNS.arm(args.jobs)
    t0 = time.perf_counter()
    worker = dramatiq.Worker(broker, worker_threads=THREADS)
    worker.start()
    RUNS.wait(drain_timeout(args.jobs))
    drain_s, ran = time.perf_counter() - t0, RUNS.count

    RUNS.arm(round(args.rate * args.seconds))  # the same worker goes on (a second one would add its middleware twice)
    started_at = time.time()
    sent, span = paced_sync(args.rate, args.seconds, lambda ts: stamp.send(ts))
    RUNS.wait(30.0)
    worker.stop()
    worker.join()
    broker.close()
    emit(
        {
            "version": importlib.metadata.version("dramatiq"),
            "config": CONFIG,
            **bulk_and_drain(args.jobs, enqueue_s, drain_s, ran),
            **latency_figures(started_at, args.warmup, sent, span),
        }
    )


if __name__ == "__main__":
    main()
