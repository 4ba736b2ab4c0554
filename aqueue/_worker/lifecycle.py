"""A worker's lifecycle as a state machine, and the SIGINT/SIGTERM handling that feeds it stop requests.

::

        NEW ─┐
             ├─ run() ─▶ STARTING ─ started ─▶ RUNNING ─ stop, burst done, run() cancelled ─▶ DRAINING ─▶ STOPPED
    STOPPED ─┘              │                                                                 ▲           ▲
                            ├──────────── stop requested before or during start-up ───────────┘           │
                            └──────────── start-up failed (Redis unreachable, lifespan, cancelled) ───────┘

The registry's lifespan (``@tasks.lifespan``) is entered in ``STARTING``, once connected and before anything is
claimed (a failure ends the run: ``STARTING → STOPPED``), and exited in ``DRAINING`` after the last job settled and
the rest was given back, also when the drain was forced or ``run()`` cancelled.

Every transition goes through :meth:`Lifecycle._move`, which refuses any other. A stop requested in ``NEW`` (before
the first run has begun) is kept, and that run goes from ``STARTING`` straight to ``DRAINING``. A *forced* stop
(a second request, ``cancel_running``, or ``run()`` itself cancelled) does not change the state: it marks the drain
as forced, so running jobs are cancelled and given back instead of awaited.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import signal
import time
from collections.abc import Callable

__all__ = ["Lifecycle", "StopSignals", "WorkerState"]

log = logging.getLogger("aqueue._worker.worker")

#: A SIGINT/SIGTERM this soon after the one that began the shutdown is the same request delivered twice (a terminal's
#: Ctrl-C or systemd's control-group kill reaches every process, and ``aqueue worker --processes`` forwards it too),
#: not a second one: it does not cancel the running jobs.
SIGNAL_REPEAT_WINDOW = 1.0


class WorkerState(enum.Enum):
    """Where a worker is in its lifecycle (see the module docstring)."""

    NEW = "new"  #: constructed; no run has begun
    STARTING = "starting"  #: run() began: connecting, the consumer group, entering the lifespan, the first heartbeat
    RUNNING = "running"  #: claiming and running jobs
    DRAINING = "draining"  #: no claims; running jobs finish (or are cancelled), the rest given back, lifespan exited
    STOPPED = "stopped"  #: run() returned; it may be called again


_S = WorkerState
#: The only transitions there are.
TRANSITIONS: dict[WorkerState, frozenset[WorkerState]] = {
    _S.NEW: frozenset({_S.STARTING}),
    _S.STARTING: frozenset({_S.RUNNING, _S.DRAINING, _S.STOPPED}),
    _S.RUNNING: frozenset({_S.DRAINING}),
    _S.DRAINING: frozenset({_S.STOPPED}),
    _S.STOPPED: frozenset({_S.STARTING}),
}
_ACTIVE = frozenset({_S.STARTING, _S.RUNNING, _S.DRAINING})


class Lifecycle:
    """The state of one worker, its transitions, and the stop requests that drive them.

    ``on_drain`` is called when a stop request begins the drain (to wake the claim loop wherever it waits),
    ``on_force`` when it becomes forced (to wake a shutdown waiting for running jobs).
    """

    def __init__(self, owner: str, on_drain: Callable[[], None], on_force: Callable[[], None]) -> None:
        self._owner = owner
        self._on_drain = on_drain
        self._on_force = on_force
        self.state = WorkerState.NEW
        #: Why the current drain cancels running jobs instead of waiting for them (None: it waits).
        self.forced_by: str | None = None
        self.runs = 0  #: runs begun: tells a stop() that a new run began while it yielded
        self._stop_pending = False  # a stop requested in NEW: the first run drains as soon as it begins
        self._stopped = asyncio.Event()  # set when the current run has returned (a new one per run)

    def _move(self, to: WorkerState) -> None:
        if to not in TRANSITIONS[self.state]:
            raise RuntimeError(f"worker {self._owner}: no transition {self.state.value} -> {to.value}")
        log.debug("worker %s: %s -> %s", self._owner, self.state.value, to.value)
        self.state = to

    @property
    def active(self) -> bool:
        """A run has begun and not returned."""
        return self.state in _ACTIVE

    @property
    def is_running(self) -> bool:
        """A run has begun and no stop was requested."""
        return self.state is WorkerState.STARTING or self.state is WorkerState.RUNNING

    def begin(self) -> None:
        """``run()`` begins: STARTING (DRAINING at once for a stop requested before it); refused while active."""
        if self.active:
            raise RuntimeError("this worker is already running")
        self._move(WorkerState.STARTING)
        self.runs += 1
        self.forced_by = None
        self._stopped = asyncio.Event()
        if self._stop_pending:
            self._stop_pending = False
            self._move(WorkerState.DRAINING)

    def serve(self) -> bool:
        """Start-up is done: RUNNING, unless a stop came meanwhile (then False: the run drains at once)."""
        if self.state is not WorkerState.STARTING:
            return False
        self._move(WorkerState.RUNNING)
        return True

    def drain(self) -> None:
        """The run ends of itself (burst done, an error, ``run()`` cancelled): STARTING or RUNNING → DRAINING."""
        if self.is_running:
            self._move(WorkerState.DRAINING)

    def force(self, why: str) -> bool:
        """Make the (coming) drain cancel running jobs; True the first time in a run."""
        if self.forced_by is not None or not self.active:
            return False
        self.forced_by = why
        self._on_force()
        return True

    def request_stop(self, cancel_running: bool = False) -> None:
        """A stop request (:meth:`Worker.request_stop`): DRAINING; forced if already draining or ``cancel_running``.
        Kept for the first run in NEW; nothing once STOPPED."""
        if not self.active:
            if self.state is WorkerState.NEW:
                self._stop_pending = True
            return
        if self.state is WorkerState.DRAINING or cancel_running:
            why = "stop with cancel_running" if cancel_running else "second stop request"
            if self.force(why):
                log.warning("worker %s: %s: cancelling running jobs now", self._owner, why)
        if self.is_running:
            self._move(WorkerState.DRAINING)
            self._on_drain()

    async def stop(self) -> None:
        """A stop request, then wait until the run has returned (:meth:`Worker.stop`)."""
        if not self.active:
            # Not running: maybe a run() task was just created and has not had its first step yet. Its first step
            # comes before this coroutine's next one, so one yield lets it begin.
            runs = self.runs
            self.request_stop()  # before a first run: kept for it
            await asyncio.sleep(0)
            if self.runs == runs:
                return  # no run began: nothing to wait for
            if self.is_running:
                self.request_stop()  # a new run of a worker that ran before: it did not see the request above
        elif self.is_running:
            self.request_stop()  # already draining (a signal, request_stop()): waiting is not a second request
        await self._stopped.wait()

    def end(self) -> None:
        """``run()`` returns: STOPPED, and whoever waits in :meth:`stop` wakes."""
        self._move(WorkerState.STOPPED)
        self._stopped.set()


class StopSignals:
    """SIGINT/SIGTERM as stop requests while a run lasts, each a :meth:`Lifecycle.request_stop`, except for a repeat
    within :data:`SIGNAL_REPEAT_WINDOW` of the signal that began the shutdown (the same request delivered twice)."""

    def __init__(self, owner: str, life: Lifecycle, grace: float) -> None:
        self._owner = owner
        self._life = life
        self._grace = grace  # the shutdown_timeout, for the log line
        self._signalled_at: float | None = None  # monotonic time of the signal that began this run's shutdown
        self._installed: list[int] = []

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Handle SIGINT/SIGTERM in ``loop`` (where it can: the main thread, a loop with signal support)."""
        self._signalled_at = None
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
                self._installed.append(sig)
            except (RuntimeError, ValueError, NotImplementedError):
                pass  # not the main thread, or no signal support: stop() still works

    def remove(self, loop: asyncio.AbstractEventLoop) -> None:
        """Give SIGINT/SIGTERM back."""
        while self._installed:
            loop.remove_signal_handler(self._installed.pop())

    def _on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        now = time.monotonic()
        if self._life.state is WorkerState.DRAINING:
            if self._signalled_at is not None and now - self._signalled_at < SIGNAL_REPEAT_WINDOW:
                log.info("worker %s: %s again within %.1fs of the first: the same stop request", self._owner, name,
                         SIGNAL_REPEAT_WINDOW)  # fmt: skip
                return
        else:
            self._signalled_at = now
            log.info("worker %s: %s: stopping; running jobs get up to %.1fs (signal again after %.0fs to cancel "
                     "them now)", self._owner, name, self._grace, SIGNAL_REPEAT_WINDOW)  # fmt: skip
        self._life.request_stop()
