"""CronSchedule: pure tick arithmetic for cron expressions and fixed intervals (no Redis)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from zoneinfo import ZoneInfo

import pytest

from aqueue._core.cron import CronSchedule, parse_every
from aqueue._core.errors import ConfigurationError

pytestmark = pytest.mark.no_redis  # needs no Redis: runs without one (tests/conftest.py)

UTC = dt.UTC
PARIS = ZoneInfo("Europe/Paris")


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, milli: int = 0) -> int:
    """Unix ms of a UTC wall-clock time."""
    return int(dt.datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()) * 1000 + milli


def local_ms(zone: ZoneInfo, year: int, month: int, day: int, hour: int, minute: int = 0, fold: int = 0) -> int:
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=zone, fold=fold).timestamp()) * 1000


def every_five() -> CronSchedule:
    return CronSchedule(name="five", task="t", cron="*/5 * * * *")


# -- next_after ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (ms(2025, 1, 1, 0, 0), ms(2025, 1, 1, 0, 5)),  # exactly on a tick -> the next one
        (ms(2025, 1, 1, 0, 2, 30, 123), ms(2025, 1, 1, 0, 5)),
        (ms(2025, 1, 1, 0, 4, 59, 999), ms(2025, 1, 1, 0, 5)),  # 1 ms before a tick
        (ms(2025, 1, 1, 0, 5), ms(2025, 1, 1, 0, 10)),  # on a tick
        (ms(2025, 1, 1, 0, 5, 0, 1), ms(2025, 1, 1, 0, 10)),  # 1 ms after a tick
        (ms(2024, 12, 31, 23, 57, 12), ms(2025, 1, 1, 0, 0)),  # crosses the year
        (0, 300_000),
    ],
)
def test_next_after_every_five_minutes(now: int, expected: int) -> None:
    assert every_five().next_after(now) == expected


def test_next_after_returns_int_and_chains() -> None:
    s = every_five()
    t = ms(2025, 6, 1, 12, 1)
    chain = []
    for _ in range(4):
        t = s.next_after(t)
        assert type(t) is int
        chain.append(t)
    assert chain == [ms(2025, 6, 1, 12, m) for m in (5, 10, 15, 20)]


def test_cron_in_paris_across_spring_dst_change() -> None:
    s = CronSchedule(name="morning", task="t", cron="0 9 * * *", tz="Europe/Paris")
    # 2025-03-30 02:00 CET -> 03:00 CEST: 09:00 local is 08:00Z before, 07:00Z after.
    first = s.next_after(ms(2025, 3, 28, 12))
    second = s.next_after(first)
    third = s.next_after(second)
    assert first == ms(2025, 3, 29, 8)
    assert second == ms(2025, 3, 30, 7)
    assert third == ms(2025, 3, 31, 7)
    assert s.ticks_between(ms(2025, 3, 28, 12), ms(2025, 3, 31, 12), 10) == [first, second, third]


def test_cron_in_paris_across_autumn_dst_change() -> None:
    s = CronSchedule(name="morning", task="t", cron="0 9 * * *", tz="Europe/Paris")
    assert s.next_after(ms(2025, 10, 25, 12)) == ms(2025, 10, 26, 8)  # 09:00 CET
    assert s.next_after(ms(2025, 10, 24, 12)) == ms(2025, 10, 25, 7)  # 09:00 CEST


def test_local_time_skipped_by_spring_forward_runs_after_the_gap() -> None:
    s = CronSchedule(name="night", task="t", cron="30 2 * * *", tz="Europe/Paris")
    # 02:30 does not exist on 2025-03-30: it runs at 03:00 CEST (01:00Z), once.
    assert s.next_after(ms(2025, 3, 29, 12)) == ms(2025, 3, 30, 1)
    assert s.next_after(ms(2025, 3, 30, 1)) == ms(2025, 3, 31, 0, 30)
    assert s.ticks_between(ms(2025, 3, 28, 12), ms(2025, 3, 31, 12), 10) == [
        ms(2025, 3, 29, 1, 30),
        ms(2025, 3, 30, 1),
        ms(2025, 3, 31, 0, 30),
    ]


def test_fixed_hour_runs_once_when_the_local_time_repeats() -> None:
    s = CronSchedule(name="night", task="t", cron="30 2 * * *", tz="Europe/Paris")
    # 02:30 happens twice on 2025-10-26 (00:30Z in CEST, 01:30Z in CET): run only the first.
    assert s.next_after(ms(2025, 10, 25, 12)) == ms(2025, 10, 26, 0, 30)
    assert s.next_after(ms(2025, 10, 26, 0, 30)) == ms(2025, 10, 27, 1, 30)
    assert s.ticks_between(ms(2025, 10, 24, 12), ms(2025, 10, 27, 12), 10) == [
        ms(2025, 10, 25, 0, 30),
        ms(2025, 10, 26, 0, 30),
        ms(2025, 10, 27, 1, 30),
    ]


def test_wildcard_hour_follows_real_time_through_the_repeated_hour() -> None:
    s = CronSchedule(name="half", task="t", cron="*/30 * * * *", tz="Europe/Paris")
    ticks = s.ticks_between(ms(2025, 10, 25, 23, 45), ms(2025, 10, 26, 2, 0), 100)
    assert ticks == [ms(2025, 10, 26, h, m) for h in (0, 1) for m in (0, 30)] + [ms(2025, 10, 26, 2)]
    assert [local_ms(PARIS, 2025, 10, 26, 2, 30, fold=f) for f in (0, 1)] == [ticks[1], ticks[3]]
    assert s.next_after(ms(2025, 10, 26, 0, 30)) == ms(2025, 10, 26, 1, 0)


def test_next_after_and_ticks_between_agree() -> None:
    ny = ZoneInfo("America/New_York")
    s = CronSchedule(name="mixed", task="t", cron="15 1-22/3 * * *", tz="America/New_York")
    start, end = local_ms(ny, 2025, 11, 1, 0), local_ms(ny, 2025, 11, 5, 0)  # spans the 2025-11-02 fall-back
    walked = []
    t = start
    while (t := s.next_after(t)) <= end:
        walked.append(t)
    assert walked == s.ticks_between(start, end, 1000)
    assert len(walked) == 4 * 8  # 4 days, 8 ticks a day; the repeated 01:15 on Nov 2 runs once
    assert walked[0] == local_ms(ny, 2025, 11, 1, 1, 15)
    assert walked[8] == local_ms(ny, 2025, 11, 2, 1, 15, fold=0) == ms(2025, 11, 2, 5, 15)
    assert walked[9] == local_ms(ny, 2025, 11, 2, 4, 15) == ms(2025, 11, 2, 9, 15)


def test_alias_expression() -> None:
    s = CronSchedule(name="daily", task="t", cron="@daily")
    assert s.next_after(ms(2025, 2, 28, 13)) == ms(2025, 3, 1)


# -- every ---------------------------------------------------------------------------------------------------------


def test_every_ticks_are_aligned_to_the_epoch() -> None:
    s = CronSchedule(name="ping", task="t", every=30)
    assert s.every == 30.0
    assert s.next_after(0) == 30_000
    assert s.next_after(29_999) == 30_000
    assert s.next_after(30_000) == 60_000
    assert s.next_after(ms(2025, 1, 1, 0, 0, 45, 500)) == ms(2025, 1, 1, 0, 1)
    # Another process (or another name/task) computes the same ticks.
    other = CronSchedule(name="pong", task="u", every=30.0, tz="Asia/Tokyo")
    assert other.next_after(ms(2025, 1, 1, 0, 0, 45, 500)) == ms(2025, 1, 1, 0, 1)


def test_every_fractional_seconds() -> None:
    s = CronSchedule(name="fast", task="t", every=0.25)
    assert s.next_after(1_000) == 1_250
    assert s.ticks_between(1_000, 2_000, 10) == [1_250, 1_500, 1_750, 2_000]


def test_every_ticks_between() -> None:
    s = CronSchedule(name="ping", task="t", every=30)
    assert s.ticks_between(0, 120_000, 10) == [30_000, 60_000, 90_000, 120_000]  # after exclusive, until inclusive
    assert s.ticks_between(0, 120_000, 2) == [90_000, 120_000]  # the most recent ones
    assert s.ticks_between(1, 29_999, 10) == []
    assert s.ticks_between(ms(2000, 1, 1), ms(2025, 1, 1, 0, 0, 10), 3) == [
        ms(2024, 12, 31, 23, 59),
        ms(2024, 12, 31, 23, 59, 30),
        ms(2025, 1, 1),
    ]


# -- ticks_between -------------------------------------------------------------------------------------------------


def test_ticks_between_bounds_and_limit() -> None:
    s = every_five()
    after, until = ms(2025, 1, 1, 0, 0), ms(2025, 1, 1, 0, 20)
    assert s.ticks_between(after, until, 10) == [ms(2025, 1, 1, 0, m) for m in (5, 10, 15, 20)]
    assert s.ticks_between(after, until, 2) == [ms(2025, 1, 1, 0, 15), ms(2025, 1, 1, 0, 20)]
    assert s.ticks_between(after, until - 1, 10) == [ms(2025, 1, 1, 0, m) for m in (5, 10, 15)]
    assert s.ticks_between(after, until, 0) == []
    assert s.ticks_between(until, after, 5) == []
    assert s.ticks_between(after, after + 1, 5) == []


def test_ticks_between_over_a_year_long_gap_is_bounded_by_limit() -> None:
    s = CronSchedule(name="minutely", task="t", cron="* * * * *")
    after, until = ms(2024, 1, 1), ms(2025, 1, 1, 0, 0, 30)
    started = time.perf_counter()
    ticks = s.ticks_between(after, until, 3)
    elapsed = time.perf_counter() - started
    assert ticks == [ms(2024, 12, 31, 23, 58), ms(2024, 12, 31, 23, 59), ms(2025, 1, 1)]
    assert elapsed < 0.5  # ~525,000 ticks in the gap; only 3 are visited


def test_next_after_is_fast() -> None:
    s = CronSchedule(name="yearly", task="t", cron="0 0 1 1 *", tz="Europe/Paris")
    started = time.perf_counter()
    for year in range(2000, 2100):
        assert s.next_after(ms(year, 6, 1)) == local_ms(PARIS, year + 1, 1, 1, 0)
    assert time.perf_counter() - started < 2.0


# -- describe / value semantics ------------------------------------------------------------------------------------


def test_describe() -> None:
    assert every_five().describe() == "cron '*/5 * * * *' (UTC)"
    assert CronSchedule(name="m", task="t", cron="0 9 * * *", tz="Europe/Paris").describe() == (
        "cron '0 9 * * *' (Europe/Paris)"
    )
    assert CronSchedule(name="p", task="t", every=30).describe() == "every 30s"
    assert CronSchedule(name="p", task="t", every=0.5).describe() == "every 0.5s"


def test_schedule_is_a_frozen_hashable_value() -> None:
    a = CronSchedule(name="x", task="t", cron="*/5  *   * * *", catch_up=2)
    b = CronSchedule(name="x", task="t", cron="*/5 * * * *", catch_up=2)
    assert a.cron == "*/5 * * * *"  # whitespace normalised
    assert a == b
    assert hash(a) == hash(b)
    assert a.catch_up == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.catch_up = 3  # type: ignore[misc]
    assert dataclasses.replace(a, catch_up=0).catch_up == 0


# -- validation ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("catch_up", [-1, -100, 1.5, True, "2"])
def test_catch_up_must_be_a_non_negative_int(catch_up: object) -> None:
    with pytest.raises(ConfigurationError, match="catch_up"):
        CronSchedule(name="x", task="t", cron="* * * * *", catch_up=catch_up)  # type: ignore[arg-type]


def test_catch_up_accepts_zero_and_positive() -> None:
    assert CronSchedule(name="x", task="t", every=1).catch_up == 0
    assert CronSchedule(name="x", task="t", every=1, catch_up=10).catch_up == 10


@pytest.mark.parametrize(
    "expression",
    ["not a cron", "61 * * * *", "* * * *", "0 0 0 * * * *", "* 25 * * *", "", "@reboot", "0 0 31 2 *"],
)
def test_bad_cron_expression(expression: str) -> None:
    with pytest.raises(ConfigurationError, match="cron"):
        CronSchedule(name="x", task="t", cron=expression)


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "Europe", "", "../etc/passwd", "/UTC"])
def test_unknown_time_zone(zone: str) -> None:
    with pytest.raises(ConfigurationError, match="time zone"):
        CronSchedule(name="x", task="t", cron="* * * * *", tz=zone)


def test_exactly_one_of_cron_and_every() -> None:
    with pytest.raises(ConfigurationError, match="exactly one"):
        CronSchedule(name="x", task="t")
    with pytest.raises(ConfigurationError, match="exactly one"):
        CronSchedule(name="x", task="t", cron="* * * * *", every=60)


@pytest.mark.parametrize("name", ["", "a:b", "a,b", "a b", "tab\tname", "new\nline"])
def test_bad_name(name: str) -> None:
    with pytest.raises(ConfigurationError, match="name"):
        CronSchedule(name=name, task="t", every=1)


def test_bad_task() -> None:
    with pytest.raises(ConfigurationError, match="task"):
        CronSchedule(name="x", task="", every=1)


@pytest.mark.parametrize("every", [0, -1, 0.0, float("nan"), float("inf"), 0.0001])
def test_bad_every(every: float) -> None:
    with pytest.raises(ConfigurationError, match="every"):
        CronSchedule(name="x", task="t", every=every)


def test_parse_every() -> None:
    assert parse_every(30) == 30.0
    assert type(parse_every(30)) is float
    assert parse_every(1.5) == 1.5
    assert parse_every(dt.timedelta(minutes=2)) == 120.0
    assert parse_every(dt.timedelta(milliseconds=250)) == 0.25
    for bad in (dt.timedelta(0), dt.timedelta(seconds=-5), 0, -3.0, float("nan")):
        with pytest.raises(ConfigurationError):
            parse_every(bad)
    with pytest.raises(ConfigurationError):
        parse_every(True)
    with pytest.raises(ConfigurationError):
        parse_every("30")  # type: ignore[arg-type]
