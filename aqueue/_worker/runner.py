"""Runs one claimed job under its timeout and turns how it ended into an :class:`Outcome`. No Redis here."""

from __future__ import annotations

import asyncio
import functools
import math
import random
import traceback
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from aqueue._core import codec
from aqueue._core.context import JobContext, WatchedJob, _current
from aqueue._core.errors import Reject, Retry, SerializationError
from aqueue._core.options import MAX_SECONDS, NO_HEADERS
from aqueue._core.wire import Claimed, Outcome
from aqueue._worker.middleware import run_chain
from aqueue._worker.procpool import ProcessPool, ResultNotJSON

if TYPE_CHECKING:
    from aqueue._core.task import Task
    from aqueue._core.tasks import Tasks

__all__ = ["run_job"]


def _backoff_ms(attempt: int, base: float, cap: float) -> int:
    # Capped at a day and computed without overflow: base * 2 ** (attempt - 1) can exceed a float.
    try:
        delay = min(cap, base * 2.0 ** min(max(0, attempt - 1), 1000))
    except OverflowError:
        delay = cap
    return round(min(delay, 86_400.0) * random.uniform(0.5, 1.0) * 1000)


def _retry_ms(attempt: int, opts: dict[str, Any]) -> int:
    """Milliseconds before the next attempt: the job's constant ``retry_delay`` when it has a usable one, else
    the exponential backoff with jitter."""
    fixed = opts.get("retry_delay")
    if isinstance(fixed, int | float) and not isinstance(fixed, bool) and 0 <= fixed <= MAX_SECONDS:
        return round(fixed * 1000)
    base, cap = (float(v) for v in opts["backoff"])
    return _backoff_ms(attempt, base, cap)


def _dead(c: Claimed, error: str, tb: str = "") -> Outcome:
    return Outcome("dead", c.stream, c.msg_id, c.job_id, error=error, traceback=tb)


def _check_spec(args: object, kwargs: object, opts: dict[str, Any], timeout: object) -> None:
    """Raise ``ValueError``/``TypeError``/``KeyError`` for a spec that cannot run: the job is dead-lettered before
    it runs, whether or not it would have failed."""
    int(opts["max_attempts"])
    base, cap = (float(v) for v in opts["backoff"])
    if not (math.isfinite(base) and math.isfinite(cap) and base >= 0 and cap >= 0):
        raise ValueError(f"backoff must be finite numbers >= 0, got {opts['backoff']!r}")
    if timeout is not None and not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a finite number > 0, got {timeout!r}")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise TypeError("arguments must be a list and keyword arguments an object")


def _unknown(tasks: Tasks, c: Claimed) -> Outcome:
    known = ", ".join(sorted(tasks.names)[:20])
    return _dead(c, f"unknown task {c.task!r} (this worker knows: {known})")


async def run_job(tasks: Tasks, c: Claimed, pool: ProcessPool | None = None) -> Outcome:
    """Run ``c`` and return its outcome; never raises except ``CancelledError`` (shutdown).

    The hot path: a job of an async task without a timeout costs one decode, one check, one context and one await
    here, and no ``Timeout`` object. A registry with middleware runs the task inside the chain
    (:func:`~aqueue._worker.middleware.run_chain`). (:class:`~aqueue._worker.loopwatch.LoopWatch` looks for this
    function's frame and its local ``c`` to name a job that blocks the loop: the task is awaited from here.)
    """
    try:
        spec = codec.decode(c.spec)
        args: list[Any] = spec["a"]
        kwargs: dict[str, Any] = spec["k"]
        opts: dict[str, Any] = spec["o"]
        timeout: float | None = opts.get("timeout")
        _check_spec(args, kwargs, opts, timeout)
        h = spec.get("h")  # absent for a job without headers: the shared empty mapping, nothing allocated
        headers: Mapping[str, str] = NO_HEADERS if h is None else MappingProxyType(h)
        if c.inputs:
            args = [codec.decode(c.inputs), *args]  # a workflow step: its parents' results come first
    except (ValueError, TypeError, KeyError) as exc:
        return _dead(c, f"undecodable job spec: {type(exc).__name__}: {exc}")
    task = tasks.get(c.task)
    if task is None:
        return _unknown(tasks, c)
    deadline: asyncio.Timeout | None = None
    middlewares = tasks._middlewares
    try:
        if middlewares:  # one test per job when there are none: the hot path allocates nothing more
            job = WatchedJob(tasks, c.job_id, c.task, c.attempt, headers)
            _current.set(job)
            call, deadline = _bind(task, args, kwargs, timeout, pool)
            result = await run_chain(middlewares, job, call)
        else:
            _current.set(JobContext(tasks, c.job_id, c.task, c.attempt, headers))
            if timeout is None and task.is_async:
                result = await task.fn(*args, **kwargs)  # no Timeout object for the common case: hot path
            else:
                deadline = asyncio.timeout(timeout)
                result = await _call(task, args, kwargs, deadline, pool)
    except Exception as exc:
        return _failed(c, exc, task.arguments_error, args, kwargs, opts, deadline)
    try:
        encoded = codec.encode(result, f"result of task {c.task!r}")
    except SerializationError as exc:
        return _dead(c, str(exc))
    return Outcome("ok", c.stream, c.msg_id, c.job_id, result=encoded)


async def _call(
    task: Task[Any, Any], args: list[Any], kwargs: dict[str, Any], deadline: asyncio.Timeout, pool: ProcessPool | None
) -> Any:
    """Call the task under ``deadline`` (not entered yet): an async one on this loop, a plain function in a thread,
    or in ``pool``, the worker's process pool, for ``executor="process"``."""
    async with deadline:
        if task.is_async:
            return await task.fn(*args, **kwargs)
        if task.executor == "process" and pool is not None:
            return await pool.run(task.name, task.fn.__module__, task.fn.__qualname__, args, kwargs, deadline)
        call = functools.partial(task.fn, *args, **kwargs)
        return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)


def _bind(
    task: Task[Any, Any], args: list[Any], kwargs: dict[str, Any], timeout: float | None, pool: ProcessPool | None
) -> tuple[Callable[[], Awaitable[Any]], asyncio.Timeout | None]:
    """The task's call for the middleware chain, and its deadline: the timeout covers the task, not the middleware
    (which sees its ``TimeoutError``); an async task without a timeout gets no ``Timeout`` object, as in run_job."""
    if timeout is None and task.is_async:
        return functools.partial(task.fn, *args, **kwargs), None
    deadline = asyncio.timeout(timeout)
    return functools.partial(_call, task, args, kwargs, deadline, pool), deadline


def _failed(
    c: Claimed,
    exc: Exception,
    arguments_error: Callable[[tuple[Any, ...] | list[Any], dict[str, Any]], str | None],
    args: list[Any],
    kwargs: dict[str, Any],
    opts: dict[str, Any],
    deadline: asyncio.Timeout | None,
) -> Outcome:
    """The outcome of an attempt that raised ``exc``: another attempt after a backoff, or dead-lettered."""
    if isinstance(exc, ResultNotJSON):  # a process task's result JSON cannot carry: as for one run here
        return _dead(c, str(exc))
    if isinstance(exc, TypeError) and (why := arguments_error(args, kwargs)) is not None:
        return _dead(c, f"InvalidArguments: {why}")  # a call that can never bind: retrying cannot help
    if isinstance(exc, TimeoutError) and deadline is not None and deadline.expired():
        error, tb = f"TimeoutError: timed out after {opts.get('timeout')} s", ""
    elif isinstance(exc, Reject | Retry):  # the task's own decision: its message says why, no traceback
        error, tb = f"{type(exc).__name__}: {exc}", ""
    else:
        error, tb = f"{type(exc).__name__}: {exc}", traceback.format_exc()
    if c.attempt < int(opts["max_attempts"]) and not isinstance(exc, Reject):
        after = exc.after if isinstance(exc, Retry) else None
        delay = round(after * 1000) if after is not None else _retry_ms(c.attempt, opts)
        return Outcome("retry", c.stream, c.msg_id, c.job_id, error=error, traceback=tb, delay_ms=delay)
    return _dead(c, error, tb)
