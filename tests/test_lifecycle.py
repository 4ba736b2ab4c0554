"""The worker's lifecycle state machine on its own (no Redis): the transitions it allows, the ones it refuses, and
how stop requests drive it. The worker-level behaviour (signals, draining, forced stops) is in
test_stop_and_signals.py."""

from __future__ import annotations

import pytest

from aqueue._worker.lifecycle import TRANSITIONS, Lifecycle, WorkerState

pytestmark = pytest.mark.no_redis


class Calls:
    def __init__(self) -> None:
        self.drained = 0
        self.forced = 0

    def life(self) -> Lifecycle:
        return Lifecycle("w1", self._drain, self._force)

    def _drain(self) -> None:
        self.drained += 1

    def _force(self) -> None:
        self.forced += 1


def test_the_transition_table_is_the_documented_cycle() -> None:
    s = WorkerState
    assert {
        s.NEW: {s.STARTING},
        s.STARTING: {s.RUNNING, s.DRAINING, s.STOPPED},
        s.RUNNING: {s.DRAINING},
        s.DRAINING: {s.STOPPED},
        s.STOPPED: {s.STARTING},
    } == TRANSITIONS


async def test_a_run_goes_starting_running_draining_stopped_and_can_run_again() -> None:
    calls = Calls()
    life = calls.life()
    seen = [life.state]
    for _ in range(2):
        life.begin()
        seen.append(life.state)
        assert life.serve() and life.is_running
        seen.append(life.state)
        life.request_stop()
        seen.append(life.state)
        assert not life.is_running and life.active and life.forced_by is None
        life.end()
        seen.append(life.state)
    s = WorkerState
    assert seen == [s.NEW, s.STARTING, s.RUNNING, s.DRAINING, s.STOPPED, s.STARTING, s.RUNNING, s.DRAINING, s.STOPPED]
    assert (calls.drained, calls.forced) == (2, 0)


async def test_transitions_outside_the_table_are_refused() -> None:
    life = Calls().life()
    with pytest.raises(RuntimeError, match="no transition new -> stopped"):
        life.end()
    life.begin()
    with pytest.raises(RuntimeError, match="already running"):
        life.begin()
    assert life.serve()
    with pytest.raises(RuntimeError, match="no transition running -> stopped"):
        life.end()
    assert life.state is WorkerState.RUNNING


async def test_a_stop_before_the_first_run_drains_it_at_once_and_a_second_request_forces() -> None:
    calls = Calls()
    life = calls.life()
    life.request_stop()  # before run(): kept
    life.begin()
    assert life.state is WorkerState.DRAINING and not life.serve()
    life.request_stop()  # a second request while draining: cancel the running jobs
    assert life.forced_by == "second stop request" and calls.forced == 1
    life.request_stop()
    assert calls.forced == 1  # forced once per run
    life.end()
    life.begin()
    assert life.forced_by is None and life.state is WorkerState.STARTING  # a new run starts unforced


async def test_cancel_running_forces_the_first_request_and_a_stopped_worker_ignores_requests() -> None:
    calls = Calls()
    life = calls.life()
    life.begin()
    life.serve()
    life.request_stop(cancel_running=True)
    assert (life.state, life.forced_by, calls.forced) == (WorkerState.DRAINING, "stop with cancel_running", 1)
    life.end()
    life.request_stop()
    assert life.state is WorkerState.STOPPED and calls.drained == 1
    await life.stop()  # not running: returns at once
