"""The supervisor's governor: bounds, one scale-down step per cooldown, no flapping within a cooldown."""

from __future__ import annotations

import pytest

from aqueue.autoscale.supervisor import Governor

pytestmark = pytest.mark.no_redis  # needs no Redis: runs without one (tests/conftest.py)


def test_targets_are_clamped_to_the_bounds() -> None:
    g = Governor(2, 50, cooldown=5.0)
    assert g.govern(10, 500, now=0.0) == (50, "clamped to [2, 50]")
    assert g.govern(50, 0, now=100.0) == (2, "clamped to [2, 50]")


def test_scale_up_is_immediate_and_may_repeat() -> None:
    g = Governor(1, 100, cooldown=5.0)
    assert g.govern(1, 8, now=0.0) == (8, None)
    assert g.govern(8, 20, now=0.5) == (20, None)


def test_scale_down_moves_one_step_per_cooldown() -> None:
    g = Governor(1, 100, cooldown=5.0)
    assert g.govern(40, 30, now=0.0) == (30, None)
    assert g.govern(30, 20, now=1.0) == (30, "held: one scale-down step per cooldown")
    assert g.govern(30, 20, now=5.0) == (20, None)


def test_direction_changes_at_most_once_per_cooldown() -> None:
    g = Governor(1, 100, cooldown=5.0)
    assert g.govern(10, 20, now=0.0) == (20, None)
    assert g.govern(20, 15, now=2.0) == (20, "held: direction change within the cooldown")
    assert g.govern(20, 15, now=5.5) == (15, None)
    assert g.govern(15, 30, now=6.0) == (15, "held: direction change within the cooldown")
    assert g.govern(15, 30, now=10.6) == (30, None)


def test_no_change_wanted_is_no_change() -> None:
    g = Governor(1, 10, cooldown=0.0)
    assert g.govern(5, 5, now=0.0) == (5, None)
