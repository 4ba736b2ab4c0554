"""The worker: one claim loop, a fixed set of long-lived slot coroutines, and batched settling.

Data flows one way: claim (one script call per turn, for exactly as many jobs as there are free slots) → slots
run jobs → outcomes collect in a list → the settler writes whatever has collected in one script call, and again
as soon as the previous call returns. Nothing waits to fill a batch, so low load keeps low latency and high load
gets large batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aqueue import codec
from aqueue._aio import cancel_and_wait
from aqueue.backend.broker import Claimed, Outcome
from aqueue.backend.connect import MAX_BLOCK
from aqueue.errors import BrokerUnavailable, ConfigurationError
from aqueue.runner import run_job
from aqueue.tasks import Tasks

__all__ = ["Worker"]

log = logging.getLogger("aqueue.worker")
T = TypeVar("T")

_BLOCK_SECONDS = 5.0  # longest single blocking read; an idle worker wakes at once when work arrives
_SCHEDULER_MAX_WAIT = MAX_BLOCK  # safety net only: new due times wake the scheduler through the wake stream
_PROMOTE_LIMIT = 1000


class Worker:
    """Runs the jobs of one :class:`Tasks` queue in this event loop.

    ``concurrency`` is how many jobs run at once. ``lease`` (default: the queue's, 30 s) is how long a claimed
    job may go without a heartbeat before another worker takes it back. ``shutdown_timeout`` is how long
    :meth:`stop` waits for running jobs before cancelling them and putting them back in the queue.

    ``prefetch`` (default 0) lets the worker claim up to that many jobs beyond its free slots, so the next batch
    is already in hand while the current one runs. 0 claims only for free slots, which never takes work another
    worker could start now; a prefetch of about ``concurrency`` roughly doubles throughput for very short jobs.
    """

    def __init__(
        self,
        tasks: Tasks,
        concurrency: int = 100,
        *,
        lease: float | None = None,
        shutdown_timeout: float = 10.0,
        prefetch: int = 0,
        name: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be >= 1, got {concurrency}")
        if lease is not None and lease <= 0:
            raise ConfigurationError(f"lease must be > 0 seconds, got {lease}")
        if shutdown_timeout < 0:
            raise ConfigurationError("shutdown_timeout must be >= 0")
        if prefetch < 0:
            raise ConfigurationError(f"prefetch must be >= 0, got {prefetch}")
        self.prefetch = prefetch
        self.tasks = tasks
        self.id = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.lease = lease if lease is not None else tasks.settings.lease
        self.shutdown_timeout = shutdown_timeout
        self._target = concurrency
        self.processed = 0  #: attempts finished by this worker (any outcome)
        self.failed = 0  #: attempts that failed (retried or dead-lettered)
        self._busy = 0
        self._running: dict[str, Claimed] = {}
        self._outcomes: list[Outcome] = []
        self._credits = [0] * len(tasks.settings.priorities)
        self._weights = [p.weight for p in tasks.settings.priorities]
        self._started_at = 0.0
        self._reset_loop_state()

    def _reset_loop_state(self) -> None:
        self._queue: asyncio.Queue[Claimed] | None = None
        self._settle_wakeup: asyncio.Event | None = None
        self._slot_free: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._force: asyncio.Event | None = None
        self._done: asyncio.Event | None = None
        self._claim_task: asyncio.Task[None] | None = None
        self._blocked = False

    def __repr__(self) -> str:
        return f"Worker(id={self.id!r}, queue={self.tasks.queue!r}, concurrency={self._target})"

    @property
    def concurrency(self) -> int:
        """How many jobs this worker runs at once."""
        return self._target

    @property
    def busy(self) -> int:
        """Jobs claimed and not yet finished."""
        return self._busy

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def run(self, burst: bool = False) -> None:
        """Run until :meth:`stop` or SIGINT/SIGTERM; with ``burst``, until nothing is queued, due or running.

        A second SIGINT/SIGTERM during shutdown stops waiting for running jobs: they are cancelled at once and put
        back in the queue.
        """
        if self._done is not None and not self._done.is_set():
            raise RuntimeError("this worker is already running")
        self._queue = asyncio.Queue()
        self._settle_wakeup = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._stopping = asyncio.Event()
        self._force = asyncio.Event()
        self._done = asyncio.Event()
        self._started_at = time.time()
        loop = asyncio.get_running_loop()
        signals = self._install_signals(loop)  # before connecting, so a signal during start-up is not fatal
        try:
            broker = await self.tasks.broker()
            await broker.ensure_groups()
            if not self._stopping.is_set():
                await self._serve(burst)
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            self._done.set()

    async def _serve(self, burst: bool) -> None:
        assert self._stopping is not None
        slots = [asyncio.create_task(self._slot(), name=f"aqueue-slot-{i}") for i in range(self._target)]
        settler = asyncio.create_task(self._settler(), name="aqueue-settler")
        helpers: list[asyncio.Task[None]] = []
        try:
            await self._heartbeat_once()
            helpers += [
                asyncio.create_task(self._heartbeats(), name="aqueue-heartbeat"),
                asyncio.create_task(self._scheduler(), name="aqueue-scheduler"),
            ]
            log.info("worker %s up: queue=%s concurrency=%d lease=%.1fs", self.id, self.tasks.queue, self._target,
                     self.lease)  # fmt: skip
            self._claim_task = asyncio.create_task(self._claim_loop(burst), name="aqueue-claim")
            await self._claim_task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # run() itself was cancelled: shut down (below), then let the cancellation through
        finally:
            self._stopping.set()
            if self._claim_task is not None:
                await cancel_and_wait(self._claim_task)
            await self._shutdown(slots, settler, helpers)
            log.info("worker %s down: processed=%d failed=%d", self.id, self.processed, self.failed)

    async def stop(self) -> None:
        """Stop claiming, let running jobs finish (up to ``shutdown_timeout``), and return when shut down."""
        self.request_stop()
        if self._done is not None:
            await self._done.wait()

    def request_stop(self) -> None:
        """Ask the worker to stop, without waiting (safe from a signal handler); a second call forces it."""
        if self._stopping is None:
            return
        if self._stopping.is_set():
            if self._force is not None and not self._force.is_set():
                log.warning("worker %s: second stop request: cancelling running jobs now", self.id)
                self._force.set()
                if self._slot_free is not None:
                    self._slot_free.set()
            return
        self._stopping.set()
        if self._slot_free is not None:
            self._slot_free.set()  # wakes a claim loop waiting for a free slot
        if self._blocked and self._claim_task is not None:
            # A blocking read can be abandoned safely: whatever it delivered stays pending and release() at
            # shutdown puts it back.
            self._claim_task.cancel()

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        installed: list[int] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.request_stop)
                installed.append(sig)
            except (RuntimeError, ValueError, NotImplementedError):
                pass  # not the main thread, or no signal support: stop() still works
        return installed

    async def _shutdown(
        self, slots: list[asyncio.Task[None]], settler: asyncio.Task[None], helpers: list[asyncio.Task[None]]
    ) -> None:
        assert self._slot_free is not None and self._queue is not None
        while not self._queue.empty():  # prefetched, never started: release() below puts them back
            self._queue.get_nowait()
            self._busy -= 1
        deadline = time.monotonic() + self.shutdown_timeout
        while self._busy > 0 and time.monotonic() < deadline and not (self._force and self._force.is_set()):
            self._slot_free.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(asyncio.get_running_loop().time() + deadline - time.monotonic()):
                    await self._slot_free.wait()
        if self._busy:
            log.warning("worker %s: %d jobs still running after %.1fs; cancelling and putting them back",
                        self.id, self._busy, self.shutdown_timeout)  # fmt: skip
        await cancel_and_wait(*slots, *helpers)
        await cancel_and_wait(settler)
        broker = await self.tasks.broker()
        try:
            await self._retrying("final settle", self._flush, attempts=5)
            put_back = await self._retrying("release", lambda: broker.release(self.id), attempts=5)
        except BrokerUnavailable:
            log.error("worker %s: Redis unavailable at shutdown; its jobs return after the lease", self.id)
        else:
            if put_back:
                log.info("worker %s: put %d unfinished jobs back in the queue", self.id, put_back)
        self._busy = 0
        self._running.clear()

    # -- claiming --------------------------------------------------------------------------------------------

    def _quotas(self, free: int) -> list[int]:
        """Split ``free`` reads over the levels: strict, or smooth weighted round robin kept across turns."""
        n = len(self._weights)
        if self.tasks.settings.strict_priority:
            return [free] + [0] * (n - 1)
        total = sum(self._weights)
        rounds, rest = divmod(free, total)
        quotas = [w * rounds for w in self._weights]  # whole rounds give each level exactly its weight
        credits = self._credits
        for _ in range(rest):
            for i in range(n):
                credits[i] += self._weights[i]
            best = max(range(n), key=credits.__getitem__)
            credits[best] -= total
            quotas[best] += 1
        return quotas

    async def _claim_loop(self, burst: bool) -> None:
        assert self._stopping is not None and self._slot_free is not None
        broker = await self.tasks.broker()
        cursors = ["0-0"] * len(self._weights)
        lease_ms = round(self.lease * 1000)
        reclaim_every = min(self.lease / 4, 1.0)
        next_reclaim = 0.0
        backoff = 0.1
        while not self._stopping.is_set():
            free = self._target + self.prefetch - self._busy
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            try:
                now = time.monotonic()
                reclaim = now >= next_reclaim
                if reclaim:
                    next_reclaim = now + reclaim_every
                jobs, cursors = await broker.claim(self.id, self._quotas(free), cursors, lease_ms if reclaim else 0)
                if jobs:
                    self._dispatch(jobs)
                    continue
                if burst:
                    if await self._burst_done():
                        return
                    continue
                self._blocked = True
                try:
                    delivered = await broker.wait_for_work(self.id, min(_BLOCK_SECONDS, reclaim_every))
                finally:
                    self._blocked = False
                if delivered:
                    self._dispatch(await broker.start(self.id, delivered))
                backoff = 0.1
            except BrokerUnavailable as exc:
                log.warning("worker %s: %s; retrying in %.1fs", self.id, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await broker.ensure_groups()  # the streams were deleted (e.g. FLUSHALL): recreate and go on

    async def _burst_done(self) -> bool:
        """In burst mode with nothing claimable: wait for running jobs, then check nothing became due."""
        assert self._slot_free is not None
        if self._busy > 0:
            self._slot_free.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    await self._slot_free.wait()
            return False
        await self._flush()
        state = await (await self.tasks.broker()).promote(_PROMOTE_LIMIT)
        return state.promoted == 0

    def _dispatch(self, jobs: list[Claimed]) -> None:
        assert self._queue is not None
        for c in jobs:
            self._busy += 1
            self._running[c.msg_id] = c
            self._queue.put_nowait(c)

    # -- running and settling --------------------------------------------------------------------------------

    async def _slot(self) -> None:
        assert self._queue is not None and self._settle_wakeup is not None and self._slot_free is not None
        queue, wakeup, slot_free = self._queue, self._settle_wakeup, self._slot_free
        while True:
            c = await queue.get()
            outcome = await run_job(self.tasks, c)
            self._running.pop(c.msg_id, None)
            self._outcomes.append(outcome)
            self.processed += 1
            if outcome.kind != "ok":
                self.failed += 1
                log.warning("job %s (%s) attempt %d failed: %s%s", c.job_id, c.task, c.attempt, outcome.x,
                            " (will retry)" if outcome.kind == "retry" else " (dead-lettered)")  # fmt: skip
            self._busy -= 1
            wakeup.set()
            slot_free.set()

    async def _flush(self) -> None:
        while self._outcomes:
            batch, self._outcomes = self._outcomes, []
            try:
                await (await self.tasks.broker()).settle(batch)
            except BaseException:
                self._outcomes[:0] = batch  # keep them: settling is idempotent, so a retry is safe
                raise

    async def _settler(self) -> None:
        assert self._settle_wakeup is not None
        backoff = 0.1
        while True:
            await self._settle_wakeup.wait()
            self._settle_wakeup.clear()
            try:
                await self._flush()
                backoff = 0.1
            except BrokerUnavailable as exc:
                log.warning("worker %s: settle failed: %s; retrying in %.1fs", self.id, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                self._settle_wakeup.set()

    # -- background duties -----------------------------------------------------------------------------------

    def _info(self) -> str:
        return codec.encode(
            {
                "id": self.id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "queue": self.tasks.queue,
                "concurrency": self._target,
                "busy": self._busy,
                "processed": self.processed,
                "failed": self.failed,
                "started_at": self._started_at,
                "heartbeat_at": time.time(),
            }
        )

    async def _heartbeat_once(self) -> None:
        broker = await self.tasks.broker()
        running = [(c.stream, c.msg_id) for c in self._running.values()]
        ttl_ms = round(max(self.lease, 3 * self._heartbeat_interval) * 1000)
        lost = await broker.heartbeat(self.id, running, self._info(), ttl_ms)
        for msg_id in lost:
            c = self._running.get(msg_id)
            if c is not None:
                log.warning("job %s (%s) was taken back by another worker while running here", c.job_id, c.task)

    @property
    def _heartbeat_interval(self) -> float:
        return min(self.lease / 3, 10.0)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            try:
                await self._heartbeat_once()
            except BrokerUnavailable as exc:
                log.warning("worker %s: heartbeat failed: %s", self.id, exc)

    async def _scheduler(self) -> None:
        broker = await self.tasks.broker()
        backoff = 0.1
        while True:
            try:
                state = await broker.promote(_PROMOTE_LIMIT)
                if state.promoted >= _PROMOTE_LIMIT:
                    continue
                wait = _SCHEDULER_MAX_WAIT
                if state.next_due_ms is not None:
                    wait = min(wait, max(0.001, (state.next_due_ms - state.now_ms + 1) / 1000))
                await broker.wait_wake(state.wake_id, wait)
                backoff = 0.1
            except BrokerUnavailable as exc:
                log.warning("worker %s: scheduler: %s; retrying in %.1fs", self.id, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _retrying(self, what: str, fn: Callable[[], Awaitable[T]], attempts: int) -> T:
        delay = 0.1
        for i in range(attempts):
            try:
                return await fn()
            except BrokerUnavailable as exc:
                if i == attempts - 1:
                    raise
                log.warning("worker %s: %s failed: %s; retrying in %.1fs", self.id, what, exc, delay)
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")
