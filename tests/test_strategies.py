"""The built-in scaling strategies, driven with synthetic snapshot sequences: no Redis, no sleeping, no clock."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import pytest

from aqueue._core.errors import ConfigurationError
from aqueue.autoscale.scaling import Decision, MetricsSnapshot, Strategy
from aqueue.autoscale.strategies import (
    AggressiveStrategy,
    ConservativeStrategy,
    DefaultStrategy,
    PredictiveStrategy,
    get_strategy,
)

pytestmark = pytest.mark.no_redis  # needs no Redis: runs without one (tests/conftest.py)


def snap(**overrides: Any) -> MetricsSnapshot:
    """A snapshot of a quiet single worker at concurrency 10 with 50 ms jobs; ``backlog=N`` means N normal jobs."""
    fields: dict[str, Any] = {
        "t": 0.0,
        "backlog": {"normal": 0},
        "due": 0,
        "pending": 0,
        "oldest_wait": 0.0,
        "arrival_rate": 0.0,
        "completion_rate": 0.0,
        "error_rate": 0.0,
        "concurrency": 10,
        "busy": 0,
        "service_time": 0.05,
        "loop_lag": 0.0,
        "workers": 1,
        "min_concurrency": 1,
        "max_concurrency": 1000,
    }
    if isinstance(overrides.get("backlog"), int):
        overrides["backlog"] = {"normal": overrides["backlog"]}
    # Unless a test says otherwise, the queue completes what arrives (a burst test sets completion itself).
    overrides.setdefault("completion_rate", overrides.get("arrival_rate", 0.0))
    fields.update(overrides)
    return MetricsSnapshot(**fields)


def quiet(n: int, **overrides: Any) -> list[MetricsSnapshot]:
    """``n`` quiet snapshots one second apart (t = 0 .. n-1)."""
    return [snap(t=float(i), **overrides) for i in range(n)]


def run(strategy: Strategy, snapshots: Sequence[MetricsSnapshot]) -> list[Decision]:
    """Feed the snapshots in order, each with the ones before it as history, as the supervisor does."""
    return [strategy.decide(s, snapshots[:i]) for i, s in enumerate(snapshots)]


ALL = [DefaultStrategy, AggressiveStrategy, ConservativeStrategy, PredictiveStrategy]


# -- burst, growth, share --------------------------------------------------------------------------------------------


def test_burst_jumps_to_the_sized_target_in_one_decision() -> None:
    history = quiet(3, concurrency=4)
    burst = snap(t=3.0, concurrency=4, backlog=1200, arrival_rate=30.0, oldest_wait=0.5, busy=4)
    decision = DefaultStrategy().decide(burst, history)
    # 30/s * 0.05 s keeps up with arrivals; 1200 * 0.05 s / 1 s drains the backlog in 1 s: ceil(1.5 + 60) = 62.
    assert decision.target == 62
    assert "backlog 1200 growing" in decision.reason and "need 62" in decision.reason and "50 ms" in decision.reason
    assert AggressiveStrategy().decide(burst, history).target > 62  # shorter drain target, headroom


def test_conservative_waits_for_confirmed_growth_and_takes_smaller_steps() -> None:
    strategy = ConservativeStrategy()
    history = quiet(2, concurrency=4)
    growing = [snap(t=2.0 + i, concurrency=4, backlog=1000 * (i + 1), arrival_rate=30.0, busy=4) for i in range(3)]
    targets = [d.target for d in run(strategy, [*history, *growing])]
    assert targets[:4] == [4, 4, 4, 4]  # quiet, quiet, first and second tick of growth: not yet confirmed
    assert targets[4] == 6  # third tick of growth: +50% of 4, not the sized need
    assert DefaultStrategy().decide(growing[0], history).target > 6


def test_long_wait_scales_up_even_when_the_backlog_is_steady() -> None:
    history = [snap(t=0.0, backlog=500, oldest_wait=7.0, concurrency=4)]
    steady = snap(t=1.0, backlog=500, oldest_wait=6.0, arrival_rate=20.0, concurrency=4, busy=4)
    decision = DefaultStrategy().decide(steady, history)
    assert decision.target == math.ceil(20 * 0.05 + 500 * 0.05 / 1)  # 6 s waited > the 1 s drain target
    assert "oldest wait 6.0 s" in decision.reason


def test_a_backlog_draining_on_its_own_holds() -> None:
    history = [snap(t=0.0, backlog=900, oldest_wait=1.0)]
    draining = snap(t=1.0, backlog=600, oldest_wait=0.8, arrival_rate=20.0, busy=10)
    decision = DefaultStrategy().decide(draining, history)
    assert decision.target == 10
    assert decision.reason.startswith("holding at 10") and "backlog 600 falling, oldest wait 0.8 s," in decision.reason
    # A batch: the backlog falls while its oldest job waits longer every tick; the reason names which one grew.
    batch = snap(t=1.0, backlog=600, oldest_wait=1.5, busy=10)
    reason = DefaultStrategy().decide(batch, history).reason
    assert "backlog 600 falling, oldest wait 1.5 s and rising," in reason, reason
    assert "backlog 900 steady," in DefaultStrategy().decide(snap(t=1.0, backlog=900, oldest_wait=0.5), history).reason


def test_workers_share_the_need() -> None:
    alone = snap(t=1.0, backlog=4000, arrival_rate=100.0, concurrency=2, busy=2)
    need_alone = DefaultStrategy().decide(alone, quiet(1, concurrency=2)).target
    need_of_four = DefaultStrategy().decide(dataclasses.replace(alone, workers=4), quiet(1, concurrency=2)).target
    assert need_alone == 205  # ceil(100 * 0.05 + 4000 * 0.05 / 1)
    assert need_of_four == math.ceil(205 / 4)
    assert "1/4 share" in DefaultStrategy().decide(dataclasses.replace(alone, workers=4), []).reason


# -- ramp: the forecast gets there first -----------------------------------------------------------------------------


def simulate_ramp(strategy: Strategy, ticks: int = 40) -> tuple[float, list[int], list[Decision]]:
    """A worker under arrivals rising 4 jobs/s every second, 100 ms jobs, the target applied at once.

    backlog[k+1] = max(0, backlog[k] + (arrival[k] - target[k] / service) * dt). Returns the summed backlog, the
    targets and the decisions.
    """
    service, dt = 0.1, 1.0
    backlog, target = 0.0, 1
    history: list[MetricsSnapshot] = []
    total, targets, decisions = 0.0, [], []
    for k in range(ticks):
        arrival = 10.0 + 4.0 * k
        s = snap(
            t=k * dt,
            backlog=int(backlog),
            arrival_rate=arrival,
            completion_rate=min(arrival, target / service),
            concurrency=target,
            busy=target if backlog else min(target, math.ceil(arrival * service)),
            service_time=service,
            oldest_wait=backlog / arrival,
        )
        decision = strategy.decide(s, history)
        history.append(s)
        target = max(s.min_concurrency, min(s.max_concurrency, decision.target))  # the supervisor's clamp
        total += backlog
        targets.append(target)
        decisions.append(decision)
        backlog = max(0.0, backlog + (arrival - target / service) * dt)
    return total, targets, decisions


def test_predictive_beats_default_on_a_linear_ramp() -> None:
    default_backlog, default_targets, _ = simulate_ramp(DefaultStrategy())
    predictive_backlog, predictive_targets, decisions = simulate_ramp(PredictiveStrategy())
    assert predictive_backlog < default_backlog / 2
    # True need at tick k is ceil((10 + 4k) * 0.1); it reaches 12 at k = 28. The forecast gets there first.
    first_at_12 = predictive_targets.index(next(t for t in predictive_targets if t >= 12))
    assert first_at_12 < default_targets.index(next(t for t in default_targets if t >= 12))
    assert first_at_12 < 28
    late = decisions[-1]
    assert late.confidence is not None and late.confidence > 0.9
    assert late.details["predicted_arrival_rate"] == pytest.approx(10.0 + 4.0 * (39 + 5))
    assert late.details["horizon"] == 5.0 and "forecast in 5 s" in late.reason


def test_predictive_falls_back_to_default_without_enough_points_or_confidence() -> None:
    burst = snap(t=1.0, concurrency=4, backlog=1200, arrival_rate=30.0, busy=4)
    few = PredictiveStrategy().decide(burst, quiet(1, concurrency=4))
    assert few.target == DefaultStrategy().decide(burst, quiet(1, concurrency=4)).target
    assert "default rule (only 2 points" in few.reason and few.confidence is None
    # Backlog and arrivals jumping about: no line fits, so the default rule decides and the low confidence shows.
    noisy = [
        snap(t=float(i), backlog=(0, 900, 50, 1000, 0)[i], arrival_rate=(50.0, 1.0, 60.0, 2.0, 40.0)[i])
        for i in range(5)
    ]
    decision = run(PredictiveStrategy(), noisy)[-1]
    assert decision.confidence is not None and decision.confidence < 0.6
    assert "default rule (forecast r²" in decision.reason and "predicted_backlog" in decision.details


# -- idle ------------------------------------------------------------------------------------------------------------


def test_scale_down_needs_sustained_idleness_and_goes_one_step_at_a_time() -> None:
    strategy = DefaultStrategy()  # idle_ticks=5, down_fraction=0.25
    t, current, targets = 0.0, 40, []
    for _ in range(16):
        s = snap(t=t, concurrency=current, busy=2, arrival_rate=20.0)  # needs ceil(20 * 0.05) = 1
        decision = strategy.decide(s, [])
        targets.append(decision.target)
        current, t = decision.target, t + 1.0  # the supervisor applies each step
    # Four holds, then -10; the count restarts at the new concurrency: four holds, -7; four holds, -5.
    assert targets == [40] * 4 + [30] + [30] * 4 + [23] + [23] * 4 + [18] + [18]


@pytest.mark.parametrize(
    ("cls", "holds", "stepped_to"),
    [(DefaultStrategy, 4, 30), (AggressiveStrategy, 2, 20), (ConservativeStrategy, 9, 35), (PredictiveStrategy, 4, 30)],
)
def test_each_strategy_steps_down_after_its_own_idle_span(
    cls: type[DefaultStrategy], holds: int, stepped_to: int
) -> None:
    idle = [snap(t=float(i), concurrency=40, busy=2, arrival_rate=20.0) for i in range(holds + 1)]
    assert [d.target for d in run(cls(), idle)] == [40] * holds + [stepped_to]


def test_any_busy_tick_restarts_the_idle_count() -> None:
    strategy = DefaultStrategy()
    idle = [snap(t=float(i), concurrency=40, busy=2) for i in range(4)]
    busy = snap(t=4.0, concurrency=40, busy=30)
    more_idle = [snap(t=5.0 + i, concurrency=40, busy=2) for i in range(5)]
    targets = [d.target for d in run(strategy, [*idle, busy, *more_idle])]
    assert targets == [40] * 9 + [30]


def test_idle_step_down_never_goes_below_the_need() -> None:
    strategy = DefaultStrategy()
    steady = [snap(t=float(i), concurrency=40, busy=19, arrival_rate=760.0) for i in range(6)]  # need 38
    assert [d.target for d in run(strategy, steady)] == [40] * 4 + [38, 38]


# -- errors ----------------------------------------------------------------------------------------------------------


def pressured(t: float, current: int, error_rate: float) -> MetricsSnapshot:
    """Plenty of growing backlog (need far above ``current``) with the given error rate."""
    backlog = 20_000 + 100 * int(t)
    return snap(t=t, concurrency=current, busy=current, backlog=backlog, arrival_rate=100.0, error_rate=error_rate)


def test_default_backs_off_multiplicatively_on_errors_then_recovers_additively() -> None:
    strategy = DefaultStrategy()
    history: list[MetricsSnapshot] = []
    current, targets = 40, []
    for t, error_rate in enumerate([0.5, 0.5, 0.05, 0.05, 0.05]):
        s = pressured(float(t), current, error_rate)
        decision = strategy.decide(s, history)
        history.append(s)
        targets.append(decision.target)
        current = decision.target
    assert targets == [20, 10, 11, 12, 13]  # never up while failing, despite a backlog that needs far more
    assert "error rate 50.0% > 20%" in strategy.decide(pressured(5.0, 13, 0.5), history).reason
    recovering = strategy.decide(pressured(6.0, 13, 0.0), history)
    assert "recovering after errors" in recovering.reason


def test_a_falling_error_rate_after_a_back_off_holds_instead_of_halving_again() -> None:
    strategy = DefaultStrategy()
    rates = [0.5, 0.4, 0.3, 0.45]  # the window still counts old failures, then a fresh rise
    snapshots = [pressured(float(t), (40, 20, 20, 20)[t], rate) for t, rate in enumerate(rates)]
    decisions = run(strategy, snapshots)
    assert [d.target for d in decisions] == [20, 20, 20, 10]
    assert "falling since the back-off" in decisions[1].reason


def test_recovery_ends_at_the_concurrency_that_met_the_errors() -> None:
    strategy = DefaultStrategy()
    strategy.decide(pressured(0.0, 40, 0.5), [])
    assert strategy.decide(pressured(1.0, 39, 0.0), []).target == 40
    assert strategy.decide(pressured(2.0, 40, 0.0), []).target == 1015  # sized again: ceil(5 + 20200 * 0.05 / 1)


def test_aggressive_scales_up_on_errors_while_work_waits() -> None:
    quiet_but_failing = snap(t=1.0, concurrency=10, busy=10, error_rate=0.5, completion_rate=100.0, backlog=5)
    decision = AggressiveStrategy().decide(quiet_but_failing, quiet(1))
    assert decision.target >= 15 and "retries count as backlog" in decision.reason
    # With nothing waiting the failures were dead-lettered: more concurrency would only add load.
    drained = snap(t=1.0, concurrency=10, busy=10, error_rate=0.5, completion_rate=100.0)
    assert AggressiveStrategy().decide(drained, quiet(1)).target <= 10
    assert DefaultStrategy().decide(quiet_but_failing, quiet(1)).target == 5
    assert ConservativeStrategy().decide(quiet_but_failing, quiet(1)).target == 5


def test_burst_is_not_counted_twice_through_the_arrival_rate() -> None:
    # 10,000 jobs landed within the rate window: they are the backlog, and also inflate the arrival rate.
    burst = snap(t=1.0, concurrency=2, busy=2, backlog=10_000, arrival_rate=10_000.0, completion_rate=40.0)
    decision = DefaultStrategy().decide(burst, quiet(1, concurrency=2))
    assert decision.target == 502  # 10,000 x 50 ms / 1 s + 40/s x 50 ms, not 10,000/s x 50 ms = 500 more


def test_a_back_off_the_governor_held_is_asked_for_again() -> None:
    strategy = DefaultStrategy()
    first = strategy.decide(snap(t=1.0, concurrency=8, busy=8, error_rate=0.5), quiet(1, concurrency=8))
    assert first.target == 4
    # The governor held it (still 8); the rate dips a little but nothing was backed off yet.
    again = strategy.decide(snap(t=2.0, concurrency=8, busy=8, error_rate=0.45), [snap(t=1.0, error_rate=0.5)])
    assert again.target == 4, again.reason


def test_a_long_calm_ends_the_additive_recovery() -> None:
    strategy = DefaultStrategy()
    strategy.decide(snap(t=0.0, concurrency=40, busy=40, error_rate=0.5), quiet(1, concurrency=40))
    calm = [snap(t=float(i), concurrency=20, busy=15, backlog=0) for i in range(1, 12)]
    for i, s in enumerate(calm):
        strategy.decide(s, calm[:i])
    big = snap(t=13.0, concurrency=20, busy=20, backlog=20_000, arrival_rate=100.0)
    decision = strategy.decide(big, [*calm, snap(t=12.5, concurrency=20, busy=20, backlog=10_000)])
    assert decision.target > 21, decision.reason  # sized from demand again, not +1 toward the old 40


# -- CPU-bound loop, unknown service time ----------------------------------------------------------------------------


def test_loop_lag_holds_increases_but_not_error_backoff() -> None:
    growth = [snap(t=float(i), concurrency=4, backlog=300 * i, busy=4) for i in range(4)]
    burst = snap(t=4.0, concurrency=4, backlog=1200, arrival_rate=30.0, busy=4, loop_lag=0.3)
    for cls in ALL:
        decision = cls().decide(burst, growth)
        assert decision.target == 4 and "CPU-bound" in decision.reason and "300 ms" in decision.reason
    failing = dataclasses.replace(burst, error_rate=0.5, concurrency=40)
    assert DefaultStrategy().decide(failing, []).target == 20


def test_unknown_service_time_probes_by_doubling() -> None:
    waiting = snap(concurrency=8, backlog=100, service_time=None)
    decision = DefaultStrategy().decide(waiting, [])
    assert decision.target == 16 and "service time unknown" in decision.reason
    assert AggressiveStrategy().decide(waiting, []).target == 32
    assert DefaultStrategy().decide(snap(concurrency=8, service_time=None), []).target == 8  # nothing waits
    never_ran = [snap(t=float(i), concurrency=8, service_time=None) for i in range(5)]
    assert run(DefaultStrategy(), never_ran)[-1].target == 6  # an idle worker shrinks before its first job
    assert DefaultStrategy().decide(dataclasses.replace(waiting, loop_lag=1.0), []).target == 8


# -- every strategy --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL)
def test_decisions_are_deterministic_and_explained(cls: type[DefaultStrategy]) -> None:
    _, first, decisions = simulate_ramp(cls())
    _, second, _ = simulate_ramp(cls())
    assert first == second
    assert all(d.reason and len(d.reason) < 300 for d in decisions)
    holds = [d for d in decisions if d.reason.startswith("holding")]
    assert holds and all(d.reason.startswith(f"holding at {d.target}:") for d in holds)


@pytest.mark.parametrize("cls", ALL)
def test_strategies_satisfy_the_protocol_and_validate_their_knobs(cls: type[DefaultStrategy]) -> None:
    strategy = cls()
    assert isinstance(strategy, Strategy) and cls.__doc__
    with pytest.raises(ConfigurationError, match="drain_target must be > 0"):
        cls(drain_target=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        strategy.drain_target = 1.0  # type: ignore[misc]


def test_predictive_validates_its_own_knobs() -> None:
    with pytest.raises(ConfigurationError, match="window >= 3"):
        PredictiveStrategy(window=2)


# -- get_strategy ----------------------------------------------------------------------------------------------------


def test_get_strategy_builds_new_instances_by_name() -> None:
    for name, cls in [
        ("default", DefaultStrategy),
        ("aggressive", AggressiveStrategy),
        ("conservative", ConservativeStrategy),
        ("predictive", PredictiveStrategy),
    ]:
        strategy = get_strategy(name)
        assert type(strategy) is cls and strategy.name == name
        assert get_strategy(name) is not strategy  # strategies keep state: never share one between supervisors
    assert type(get_strategy(" Predictive ")) is PredictiveStrategy


def test_get_strategy_rejects_unknown_names_listing_the_valid_ones() -> None:
    with pytest.raises(ConfigurationError, match="default, aggressive, conservative, predictive"):
        get_strategy("turbo")
    with pytest.raises(ConfigurationError):
        get_strategy(42)  # type: ignore[arg-type]


def test_custom_strategy_objects_pass_through() -> None:
    class Fixed:
        """Always eight."""

        name = "fixed"

        def decide(self, snapshot: MetricsSnapshot, history: Sequence[MetricsSnapshot]) -> Decision:
            return Decision(8, "fixed at 8")

    fixed = Fixed()
    assert isinstance(fixed, Strategy)
    assert get_strategy(fixed) is fixed
    default = DefaultStrategy(drain_target=1.0)
    assert get_strategy(default) is default


@pytest.mark.parametrize("strategy", [DefaultStrategy, PredictiveStrategy])
def test_short_jobs_are_sized_by_what_a_slot_takes_per_job_not_only_by_their_run_time(
    strategy: type[DefaultStrategy],
) -> None:
    """3 ms jobs on a busy loop: claiming and settling make a slot take 9 ms per job (``slot_cycle``). Sized by the
    3 ms alone, 3,000 waiting jobs "need" 9 slots and the backlog drains in 3 s instead of 1; sized by the 9 ms,
    27 (3,000 x 0.009 / 1)."""
    late = {"backlog": 3000, "oldest_wait": 6.0, "concurrency": 2, "busy": 2, "service_time": 0.003}
    assert run(strategy(), [snap(**late)])[-1].target == 9
    decision = run(strategy(), [snap(**late, slot_cycle=0.009)])[-1]
    assert decision.target == 27, decision
    assert "service 9 ms per slot (3 ms running)" in decision.reason, decision.reason
    # A slot cycle shorter than the run time (impossible, but a stale figure) never sizes below the run time.
    assert snap(service_time=0.05, slot_cycle=0.01).effective_service_time == 0.05
    assert snap(service_time=None, slot_cycle=0.01).effective_service_time is None
