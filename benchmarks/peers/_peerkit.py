"""What every peer runner shares: arguments, counting task runs, pacing, percentiles, the JSON result line.

Standard library only: each runner runs in its peer's own virtual environment, which has the peer and its
dependencies and nothing of aqueue's. A runner imports this file as a sibling module (Python puts the script's
directory first on ``sys.path``).

Every runner measures the same three things, in one process (producer and worker in one event loop, or, for
dramatiq, the producer in the main thread and the worker's threads beside it):

1. **bulk enqueue**: N no-op jobs into a fresh queue, timed, with the peer's fastest API for many jobs;
2. **drain**: the worker is started on those N jobs and timed until the task has run N times (the task counts
   its runs in this process: :class:`Countdown`), then stopped;
3. **latency**: a paced producer sends ``rate`` jobs/s for ``seconds`` seconds to the running worker; each job
   carries ``time.time()`` at its send, and the task records ``time.time()`` at its start minus that (same host
   clock). Jobs sent during the first ``--warmup`` seconds are run but left out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any


def parse_args() -> argparse.Namespace:
    """The arguments ``benchmarks/peers.py`` gives every runner."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--tag", required=True, help="queue name / key prefix of this run (every key holds it)")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    return parser.parse_args()


class Countdown:
    """Counts task runs until a target; thread-safe, since dramatiq runs its tasks on worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = threading.Event()
        self.count = 0
        self.target = 0

    def arm(self, target: int) -> None:
        """Start counting afresh towards ``target`` runs."""
        with self._lock:
            self.count = 0
            self.target = target
            self._done.clear()

    def hit(self) -> None:
        """One more run (called by the task itself)."""
        with self._lock:
            self.count += 1
            if self.count >= self.target:
                self._done.set()

    def wait(self, timeout: float) -> bool:
        """Block until the target is reached; False on timeout."""
        return self._done.wait(timeout)

    async def wait_async(self, timeout: float) -> bool:
        """:meth:`wait` for an event loop (a thread waits, so a task run on any thread wakes it)."""
        return await asyncio.to_thread(self._done.wait, timeout)


RUNS = Countdown()  #: every runner's task calls ``RUNS.hit()``
DELAYS: list[tuple[float, float]] = []  #: (sent at, started - sent), appended by the latency task


def record_start(sent_at: float) -> None:
    """What the task does in the latency phase: note enqueue → start, count the run."""
    DELAYS.append((sent_at, time.time() - sent_at))
    RUNS.hit()


def drain_timeout(jobs: int) -> float:
    """How long a drain may take before the runner gives up (100 jobs/s at least, and a minute)."""
    return max(60.0, jobs / 100)


async def paced(rate: float, seconds: float, send: Callable[[float], Awaitable[Any]]) -> tuple[int, float]:
    """Send ``rate`` jobs/s for ``seconds`` on a fixed schedule (job i due at t0 + i/rate; a late send is not
    made up for); ``send`` gets ``time.time()`` of the send. Returns (jobs sent, seconds it took)."""
    total = round(rate * seconds)
    t0 = time.perf_counter() + 0.01
    for i in range(total):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(time.time())
    return total, time.perf_counter() - t0


def paced_sync(rate: float, seconds: float, send: Callable[[float], Any]) -> tuple[int, float]:
    """:func:`paced` for a synchronous producer (dramatiq)."""
    total = round(rate * seconds)
    t0 = time.perf_counter() + 0.01
    for i in range(total):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        send(time.time())
    return total, time.perf_counter() - t0


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted values (nan when there are none)."""
    if not sorted_values:
        return math.nan
    rank = math.ceil(p / 100 * len(sorted_values))
    return sorted_values[min(len(sorted_values), max(1, rank)) - 1]


def bulk_and_drain(jobs: int, enqueue_s: float, drain_s: float, ran: int) -> dict[str, Any]:
    """The bulk enqueue and drain rates; the drain's only if all ``jobs`` ran (``ran``: the count at the end)."""
    return {
        "enqueue_per_s": jobs / enqueue_s,
        "drain_per_s": jobs / drain_s if ran >= jobs else None,
        "drain_error": None if ran >= jobs else f"only {ran} of {jobs} jobs ran",
    }


def latency_figures(started_at: float, warmup: float, sent: int, span: float) -> dict[str, Any]:
    """P50/P99 enqueue → start in ms of the jobs sent after the warm-up, and how many of the sent jobs ran."""
    measured = sorted(d for at, d in DELAYS if at >= started_at + warmup)
    return {
        "latency_p50_ms": 1000 * percentile(measured, 50),
        "latency_p99_ms": 1000 * percentile(measured, 99),
        "latency_jobs": len(measured),
        "latency_ran": len(DELAYS),
        "latency_sent": sent,
        "achieved_rate": sent / span if span > 0 else math.nan,
    }


def emit(result: dict[str, Any]) -> None:
    """Print the result as the last line of stdout: the one JSON line ``peers.py`` reads."""
    print(json.dumps(result), flush=True)
