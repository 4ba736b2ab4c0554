"""Property tests (hypothesis) of what goes into a job: bad input is refused at once, good input arrives exactly.

- Any JSON value (None, booleans, integers over orjson's 64-bit range, finite floats, any text with NUL and
  astral characters, nested lists and objects) passed as arguments comes back from ``job.result()`` exactly: same
  types, same float bits, same key order.
- A value JSON cannot carry back, anywhere inside the arguments, raises ``SerializationError`` at ``spec()`` and at
  ``enqueue()`` and writes nothing (counters, depths, events unchanged).
- A keyword argument may have any name, ``self`` included.
- ``with_options(...)`` with any values, good or bad, raises ``ConfigurationError`` at once, or enqueues a job whose
  record says exactly what was asked; never another exception. And what it accepts never breaks a worker.

Each backend (``memory://`` and the real Redis) gets one :class:`Harness`: an event loop in a background thread
holding a ``Tasks`` with a running worker and a producer-only ``Tasks`` on another queue, so that hypothesis
examples, run synchronously in the test's thread, go through the real enqueue → claim → run → settle → result
path without paying for a loop and a worker each. The real Redis gets fewer examples than ``memory://``. Failures
are described by the assertion messages as well as by hypothesis' "Failing test case" report.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import enum
import gc
import math
import uuid
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any

import hypothesis.core
import hypothesis.vendor.pretty
import orjson
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

import aqueue
from aqueue.web.bodies import MAX_SECONDS
from tests.helpers import REDIS_URL, LoopThread, delete_queue, wait_until

# schemathesis' pytest plugin (loaded in every session once it is installed) swaps hypothesis' printer of failing
# examples for one that prints nothing, to speed up its own coverage phase; every property here would then report
# "Failing test case: check(args=, kwargs=)". Put hypothesis' own printer back (schemathesis patches only once).
hypothesis.core.RepresentationPrinter = hypothesis.vendor.pretty.RepresentationPrinter  # type: ignore[misc]

NAN, INF = float("nan"), float("inf")
#: Examples per property and backend, sized so that the file runs in about 13 s on a 2-core box when everything
#: passes (a failing property also shrinks its example, which takes longer).
EXAMPLES = {
    "round_trip": {"memory": 60, "redis": 30},
    "refused": {"memory": 40, "redis": 20},
    "options": {"memory": 120, "redis": 40},
}


# -- strategies --------------------------------------------------------------------------------------------------

#: Every JSON scalar orjson carries back unchanged: integers over its whole range (signed 64-bit and up to the
#: unsigned 64-bit maximum), finite floats (negative zero, subnormals), any text without lone surrogates (NUL,
#: line separators, astral characters included).
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
#: Keyword names: any text except ``self``, which has its own test (the producer API cannot take it).
kwarg_names = st.text(max_size=10).filter(lambda name: name != "self")


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    ONE = 1


#: Values JSON cannot carry back as they were: orjson refuses some and silently turns others into something else
#: (NaN and the infinities into ``null``, an enum into its value, a UUID into a string).
unserializable = st.one_of(
    st.sampled_from([NAN, INF, -INF]),
    st.integers(min_value=2**64),
    st.integers(max_value=-(2**63) - 1),
    st.binary(),
    st.sets(st.integers(), max_size=3),
    st.builds(object),
    st.dictionaries(st.integers() | st.none() | st.booleans(), json_values, min_size=1, max_size=2),
    st.text(max_size=3).map(lambda s: s + "\ud800"),  # a lone surrogate: not UTF-8
    st.uuids(),
    st.sampled_from([Colour.RED, Level.ONE]),
    st.decimals(allow_nan=False),
    st.datetimes(),
)


def _insert(parts: tuple[list[Any], Any, int]) -> list[Any]:
    items, bad, at = parts
    return [*items[:at], bad, *items[at:]]


#: A JSON structure with one value it cannot carry somewhere inside, at any depth.
poisoned = st.recursive(
    unserializable,
    lambda inner: (
        st.tuples(st.lists(json_values, max_size=3), inner, st.integers(0, 3)).map(_insert)
        | st.tuples(st.dictionaries(st.text(max_size=5), json_values, max_size=3), st.text(max_size=5), inner).map(
            lambda t: {**t[0], t[1]: t[2]}
        )
    ),
    max_leaves=4,
)

#: Numbers of seconds: ordinary values, zero and the smallest floats, negatives, huge values, the non-finite ones.
any_number = st.one_of(
    st.floats(min_value=0, max_value=1000),
    st.sampled_from([0.0, -0.0, 5e-324, 1e-9, 0.0004, 0.0005, 1e9, 1e15, 1e300, -1e-9, -1.0, NAN, INF, -INF]),
    st.floats(),
    st.integers(min_value=-(10**6), max_value=10**20),
)
#: What the options that are durations take: those numbers, or timedeltas.
any_seconds = any_number | st.timedeltas(
    min_value=datetime.timedelta(days=-2), max_value=datetime.timedelta(days=10_000)
)


def some_options(priorities: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Keyword arguments for ``with_options``: each option absent or drawn from good and bad values alike."""
    candidates: dict[str, st.SearchStrategy[Any]] = {
        "priority": st.sampled_from(priorities) | st.text(max_size=8),
        "delay": any_seconds,
        "max_attempts": st.integers(min_value=-3, max_value=20) | st.integers(min_value=-(2**70), max_value=2**70),
        "timeout": any_seconds,
        "backoff_base": any_number,
        "backoff_max": any_number,
        "ttl": any_seconds,
        "dedup_key": st.text(max_size=8) | st.text(min_size=500, max_size=520) | st.just("k\ud800"),
        "dedup_ttl": any_seconds,
        "dedup_mode": st.sampled_from(["drop", "replace"]) | st.text(max_size=8),
    }
    return st.fixed_dictionaries({}, optional=candidates)


# -- comparing exactly -------------------------------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (``True`` is not ``1``, ``-0.0`` is not ``0.0``), with dict
    keys in the same order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


# -- the harness -------------------------------------------------------------------------------------------------


class Harness(LoopThread):
    """A loop in a background thread, with ``tasks`` (a worker runs it) and ``producer`` (no worker)."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.url = REDIS_URL if backend == "redis" else f"memory://props-{uuid.uuid4().hex[:8]}"
        super().__init__(f"props-{backend}")
        self.tasks = aqueue.Tasks(queue=f"props-{uuid.uuid4().hex[:10]}", redis_url=self.url)
        self.producer = aqueue.Tasks(queue=f"props-{uuid.uuid4().hex[:10]}", redis_url=self.url)
        for tasks in (self.tasks, self.producer):

            @tasks.task(name="echo")
            async def echo(*args: Any, **kwargs: Any) -> list[Any]:
                return [list(args), kwargs]

        self.worker = aqueue.Worker(self.tasks, concurrency=20, shutdown_timeout=1.0)
        self._worker_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._worker_task = asyncio.create_task(self.worker.run())

        async def registered() -> bool:
            return any(w["id"] == self.worker.id for w in (await self.tasks.info()).workers)

        await wait_until(registered, 5.0)

    async def stop(self) -> None:
        try:
            if self._worker_task is not None:
                await self.worker.stop()
                await self._worker_task
        finally:
            for tasks in (self.tasks, self.producer):
                await tasks.close()
                await delete_queue(self.url, tasks.queue)

    def echo(self, tasks: aqueue.Tasks | None = None) -> aqueue.Task[..., list[Any]]:
        task = (tasks or self.tasks).get("echo")
        assert task is not None
        return task

    async def footprint(self, tasks: aqueue.Tasks) -> tuple[int, int, int, int]:
        """What an enqueue would change: the enqueued counter, ready and scheduled depths, events written."""
        info = await tasks.info()
        events = await (await tasks._broker()).redis.xlen(tasks._keys.events)
        return info.stats.get("enqueued", 0), sum(info.queued.values()), info.scheduled, events


@pytest.fixture(scope="module", params=[pytest.param("memory", marks=pytest.mark.no_redis), "redis"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    if request.param == "redis":
        request.getfixturevalue("real_redis")  # before this module-scoped fixture, not per test
    h = Harness(request.param)
    try:
        h.run(h.start())
        yield h
    finally:
        h.close()


def examples(n: int, **kwargs: Any) -> settings:
    """Hypothesis settings for a property run inside a test: no deadline, no example database on disk."""
    return settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck), **kwargs)


# -- (a) arguments -----------------------------------------------------------------------------------------------


def test_json_arguments_round_trip_exactly(harness: Harness) -> None:
    echo = harness.echo()

    async def through_a_worker(args: list[Any], kwargs: dict[str, Any]) -> Any:
        job = await echo.enqueue(*args, **kwargs)
        return await job.result(timeout=10)

    @given(args=st.lists(json_values, max_size=4), kwargs=st.dictionaries(kwarg_names, json_values, max_size=4))
    @examples(EXAMPLES["round_trip"][harness.backend])
    @example(args=["", "\x00", "nul\x00inside", "é€😀\u2028\u2029\ufeff", "\\\"'<>&"], kwargs={"\x00": "\x00"})
    @example(args=[2**63 - 1, -(2**63), 2**64 - 1, 2**53 + 1, 0, -1], kwargs={})
    @example(args=[-0.0, 0.0, 5e-324, 1.7976931348623157e308, 0.1, 1e-7, 1e16, -2.5e-300], kwargs={})
    @example(args=[True, False, None, 1, 1.0, [], {}, [[[]]], {"": {"": None}}], kwargs={"a": [1, "1", 1.0, True]})
    @example(args=[{"z": 1, "a": 2, "m": 3}], kwargs={"z": 1, "a": 2})  # key order is kept
    def check(args: list[Any], kwargs: dict[str, Any]) -> None:
        result = harness.run(through_a_worker(args, kwargs))
        assert same(result, [args, kwargs]), (args, kwargs, result)

    check()


def test_values_json_cannot_carry_raise_serialization_error_and_write_nothing(harness: Harness) -> None:
    echo = harness.echo(harness.producer)

    @given(
        prefix=st.lists(json_values, max_size=2),
        bad=poisoned,
        as_keyword=st.booleans(),
        name=kwarg_names,
    )
    @examples(EXAMPLES["refused"][harness.backend])
    @example(prefix=[], bad=NAN, as_keyword=False, name="x")
    @example(prefix=[1], bad={"deep": [1, {"er": INF}]}, as_keyword=True, name="x")
    @example(prefix=[], bad=[2**64], as_keyword=False, name="x")
    @example(prefix=[], bad={1: "int key"}, as_keyword=True, name="x")
    def check(prefix: list[Any], bad: Any, as_keyword: bool, name: str) -> None:
        args, kwargs = (prefix, {name: bad}) if as_keyword else ([*prefix, bad], {})
        before = harness.run(harness.footprint(harness.producer))
        with pytest.raises(aqueue.SerializationError, match="not JSON-serializable"):
            echo.spec(*args, **kwargs)
        with pytest.raises(aqueue.SerializationError, match="not JSON-serializable"):
            harness.run(echo.enqueue(*args, **kwargs))
        with pytest.raises(aqueue.SerializationError, match="not JSON-serializable"):
            echo.with_options(priority="high").spec(*args, **kwargs)
        after = harness.run(harness.footprint(harness.producer))
        assert after == before, ("a refused enqueue wrote something", args, kwargs)

    check()


#: One of each kind (tests/test_bad_input.py has objects, sets, bytes, datetimes, dataclasses, int keys, 2**70).
REFUSED: dict[str, Any] = {
    "nan": NAN,
    "inf": INF,
    "-inf": -INF,
    "nested-nan": [1.0, NAN],
    "nested-inf": {"x": -INF},
    "2**64": 2**64,
    "-2**63-1": -(2**63) - 1,
    "none-key": {None: 1},
    "float-key": {1.5: 1},
    "bool-key": {True: 1},
    "surrogate": "\ud800",
    "enum": Colour.RED,
    "int-enum": Level.ONE,
    "uuid": uuid.UUID(int=1),
    "decimal": Decimal("1.5"),
    "frozenset": frozenset({1}),
    "bytearray": bytearray(b"x"),
    "complex": 1j,
}


@pytest.mark.no_redis
@pytest.mark.parametrize("value", list(REFUSED.values()), ids=list(REFUSED))
def test_each_kind_of_value_json_cannot_carry_is_refused_at_spec(value: Any) -> None:
    """NaN and the infinities matter most: orjson writes them as ``null`` without complaint, so a task would get
    ``None`` for them; an enum or a UUID would arrive as its value or a string.
    """
    tasks = aqueue.Tasks(queue="refusals", redis_url="memory://refusals")

    @tasks.task
    async def takes(v: Any) -> None:
        return None

    with pytest.raises(aqueue.SerializationError, match=r"arguments of task .*takes.* not JSON-serializable"):
        takes.spec(value)
    with pytest.raises(aqueue.SerializationError):
        takes.spec(v=value)


def test_keyword_arguments_may_have_any_name(harness: Harness) -> None:
    """A task's keyword arguments are its own business: ``self`` (or any other name) must reach it."""
    echo = harness.echo()

    async def through_a_worker(kwargs: dict[str, Any]) -> Any:
        return await (await echo.enqueue(**kwargs)).result(timeout=10)

    @given(name=st.sampled_from(["self", "args", "kwargs", "task", "options", "priority", "delay"]) | st.text())
    @examples(20)
    @example(name="self")
    def check(name: str) -> None:
        assert same(echo.spec(**{name: 1}).kwargs, {name: 1})
        assert same(harness.run(through_a_worker({name: [name]})), [[], {name: [name]}])

    check()


# -- (b) options -------------------------------------------------------------------------------------------------


def _seconds(value: Any) -> Any:
    return value.total_seconds() if isinstance(value, datetime.timedelta) else value


def same_ms(stored: int, wanted: int, seconds: float) -> bool:
    """A millisecond time is exact for durations up to ten years (the REST API's bound, chosen so that they stay
    exact integers in Lua's doubles); beyond, where it may be refused instead, a rounding error is tolerated."""
    return stored == wanted if seconds <= MAX_SECONDS else math.isclose(stored, wanted, rel_tol=1e-12)


def same_number(stored: Any, given: Any) -> bool:
    """The stored number is the one given (an int may come back as the int it was, or as a float)."""
    numbers = (int, float)
    return type(stored) in numbers and type(given) in numbers and stored == given


async def _record_and_dedup(tasks: aqueue.Tasks, job_id: str, key: str | None) -> tuple[dict[str, str], Any, int]:
    broker = await tasks._broker()
    record: dict[str, str] = await broker.get_record(job_id)
    if key is None:
        return record, None, -2
    holder, pttl = await broker.redis.get(tasks._keys.dedup(key)), await broker.redis.pttl(tasks._keys.dedup(key))
    await broker.redis.delete(tasks._keys.dedup(key))  # so that a later example drawing the same key is not a duplicate
    return record, holder, pttl


def test_options_raise_configuration_error_at_once_or_are_reflected_in_the_record(harness: Harness) -> None:
    """``with_options`` (or ``spec``) refuses a value with :class:`ConfigurationError`, or the enqueued job's
    record says exactly what was asked; no other exception, ever, and never one from ``enqueue``."""
    tasks = harness.producer
    echo = harness.echo(tasks)
    retry = tasks.settings.retry

    @given(options=some_options(list(tasks.settings.priority_names)))
    @examples(EXAMPLES["options"][harness.backend])
    @example(options={"delay": NAN})
    @example(options={"ttl": INF})
    @example(options={"timeout": NAN})
    @example(options={"backoff_base": NAN})
    @example(options={"delay": 1e300})
    @example(options={"max_attempts": 2**70})
    @example(options={"dedup_key": "k", "dedup_ttl": INF})
    @example(options={"dedup_key": "k", "dedup_ttl": 1e-9})
    @example(options={"dedup_key": "k\ud800"})
    def check(options: dict[str, Any]) -> None:
        try:
            spec = echo.with_options(**options).spec("x")
        except aqueue.ConfigurationError:
            return
        job = harness.run(tasks.enqueue(spec))
        record, holder, pttl = harness.run(_record_and_dedup(tasks, job.id, options.get("dedup_key")))
        assert record.get("task") == "echo", (record, options)
        assert record["priority"] == options.get("priority", tasks.settings.default_priority)
        o = orjson.loads(record["spec"])["o"]
        assert same(o["max_attempts"], options.get("max_attempts", retry.max_attempts)), (o, options)
        timeout = _seconds(options.get("timeout"))
        if timeout is None or timeout == INF:  # an infinite timeout may be stored as none at all
            assert o["timeout"] is None, (o, options)
        else:
            assert same_number(o["timeout"], timeout), (o, options)
        base, cap = options.get("backoff_base", retry.backoff_base), options.get("backoff_max", retry.backoff_max)
        assert len(o["backoff"]) == 2, (o, options)
        assert same_number(o["backoff"][0], base) and same_number(o["backoff"][1], cap), (o, options)
        enqueued = int(record["enqueued_at"])
        delay = float(_seconds(options.get("delay", 0)))
        delay_ms = round(delay * 1000)
        if delay_ms > 0:
            assert record["status"] == "scheduled", (record, options)
            assert same_ms(int(record["due_at"]), enqueued + delay_ms, delay), (record, options)
        else:
            assert record["status"] == "queued" and "due_at" not in record, (record, options)
        if options.get("ttl") is not None:
            ttl = float(_seconds(options["ttl"]))
            expires = enqueued + max(delay_ms, 0) + round(ttl * 1000)
            assert same_ms(int(record["expires_at"]), expires, max(ttl, delay)), (record, options)
        else:
            assert "expires_at" not in record
        if options.get("dedup_key") is not None:
            assert record["dedup"] == options["dedup_key"], (record, holder)
            if options.get("dedup_ttl") is not None:  # held for that long, whatever happens to the job
                wanted = float(_seconds(options["dedup_ttl"])) * 1000
                assert record["dedup_hold"] == "0", ("a dedup_ttl must not turn into holding until done", options)
                if wanted >= 1000:
                    assert holder == job.id and 0 < pttl <= math.ceil(wanted), (record, pttl, options)
                else:  # may be expiring, or gone already
                    assert holder in (job.id, None) and pttl <= 1000, (record, pttl, options)
            else:
                assert holder == job.id and record["dedup_hold"] == "1" and pttl == -1, (record, holder, pttl)
        else:
            assert "dedup" not in record

    check()


# -- options never break a worker --------------------------------------------------------------------------------


_PROBE_TASKS = aqueue.Tasks(queue="probe", redis_url="memory://probe")  # never connects: validates options only


@_PROBE_TASKS.task(name="probe")
async def _probe() -> None:
    return None


async def _first_attempt_and_a_canary(
    url: str, make_job: Callable[[aqueue.Tasks], Awaitable[str]]
) -> tuple[str, Any, list[str]]:
    """A fresh queue and a one-slot worker: a job of task ``fails`` (it fails every attempt) made by ``make_job``,
    which returns its id, then a canary job.

    Returns the failing job's status once its attempt settled (or after a second), the canary's result, and what
    reached the loop's exception handler (a slot that died: "Task exception was never retrieved"). The handler only
    records: formatting such a traceback in the default handler leaves CPython 3.11.7's parser in a state where
    pytest's own report of the failure then dies with "AST constructor recursion depth mismatch".
    """
    loop_errors: list[str] = []
    asyncio.get_running_loop().set_exception_handler(
        lambda _loop, context: loop_errors.append(repr(context.get("exception") or context.get("message")))
    )
    tasks = aqueue.Tasks(queue=f"props-w-{uuid.uuid4().hex[:8]}", redis_url=url)

    @tasks.task(name="fails")
    async def fails() -> None:
        raise RuntimeError("first attempt fails")

    @tasks.task(name="canary")
    async def canary() -> str:
        return "alive"

    worker = aqueue.Worker(tasks, concurrency=1, shutdown_timeout=0.2)
    running = asyncio.create_task(worker.run())
    try:
        job = tasks.job(await make_job(tasks))
        status = "queued"

        async def attempt_settled() -> bool:
            nonlocal status
            status = (await job.record()).status.value
            return status not in ("queued", "active")

        with contextlib.suppress(AssertionError):  # not settled within a second: its slot died
            await wait_until(attempt_settled, 1.0, 0.005)
        alive: Any = "the worker's only slot is gone: it never took the next job"
        if status not in ("queued", "active"):
            with contextlib.suppress(aqueue.ResultTimeout):
                alive = await (await canary.enqueue()).result(timeout=1)
    finally:
        await worker.stop()
        if not running.cancelled():
            await running
        await tasks.close()
        await delete_queue(url, tasks.queue)
        gc.collect()  # a slot task that died reports its exception when collected: here, to the handler above
    return status, alive, loop_errors


@pytest.mark.no_redis
def test_accepted_options_never_break_a_worker() -> None:
    """Whatever ``with_options`` accepts, the worker runs the job (here: a failed attempt, retried or dead) and goes
    on to the next one. Each example gets a fresh ``memory://`` server, queue and one-slot worker."""

    @given(
        options=st.fixed_dictionaries(
            {},
            optional={
                "max_attempts": st.integers(min_value=1, max_value=5) | st.integers(min_value=1, max_value=2**63),
                "timeout": any_seconds,
                "backoff_base": any_number,
                "backoff_max": any_number,
                "ttl": any_seconds,
            },
        )
    )
    @examples(20, phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no shrinking: a failure costs seconds
    @example(options={"max_attempts": 2, "backoff_base": 1e306, "backoff_max": 1e306})
    @example(options={"max_attempts": 2, "backoff_base": NAN})
    def check(options: dict[str, Any]) -> None:
        try:
            _probe.with_options(**options)
        except aqueue.ConfigurationError:
            return

        async def with_options(tasks: aqueue.Tasks) -> str:
            return (await tasks.get("fails").with_options(**options).enqueue()).id  # type: ignore[union-attr]

        url = f"memory://props-w-{uuid.uuid4().hex[:8]}"
        status, alive, loop_errors = asyncio.run(_first_attempt_and_a_canary(url, with_options))
        assert loop_errors == [], (loop_errors, options)
        assert status in ("failed", "scheduled", "dead", "expired"), (status, options)
        assert alive == "alive", (alive, options)

    check()


@pytest.mark.no_redis
def test_a_damaged_spec_never_breaks_a_worker() -> None:
    """Extends tests/test_bad_input.py (undecodable specs, missing records): the options part of a stored spec
    holding any JSON at all. The job fails, is retried or dead-lettered (``undecodable job spec``), and the worker
    keeps its slot for the next job."""

    @given(
        o=st.fixed_dictionaries(
            {"max_attempts": st.integers(min_value=2, max_value=3) | json_scalars},
            optional={
                "timeout": json_scalars,
                "backoff": st.lists(json_scalars, min_size=2, max_size=2) | json_values,
            },
        )
    )
    @examples(20, phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no shrinking: a failure costs seconds
    @example(o={"max_attempts": 2, "timeout": None, "backoff": [None, 1]})
    @example(o={"max_attempts": 2, "timeout": None, "backoff": ["x", 1]})
    def check(o: dict[str, Any]) -> None:
        spec = orjson.dumps({"a": [], "k": {}, "o": o}).decode()

        async def damaged(tasks: aqueue.Tasks) -> str:
            job_id = uuid.uuid4().hex
            broker = await tasks._broker()
            fields = {"task": "fails", "spec": spec, "status": "queued", "priority": "normal", "attempts": "0"}
            await broker.redis.hset(tasks._keys.job(job_id), mapping=fields)
            await broker.redis.xadd(tasks._keys.stream("normal"), {"j": job_id})
            return job_id

        url = f"memory://props-d-{uuid.uuid4().hex[:8]}"
        status, alive, loop_errors = asyncio.run(_first_attempt_and_a_canary(url, damaged))
        assert loop_errors == [], (loop_errors, spec)
        assert status in ("failed", "scheduled", "dead"), (status, spec)
        assert alive == "alive", (alive, spec)

    check()
