"""Running one job inside its registry's middleware chain (``@tasks.middleware``), first registered outermost.

Only jobs of a registry with middleware come here: :func:`aqueue._worker.runner.run_job` tests the registry's tuple
once and otherwise calls the task itself, with nothing more allocated.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aqueue._core.context import WatchedJob
from aqueue._core.hooks import Middleware

__all__ = ["run_chain"]


async def run_chain(
    middlewares: tuple[Middleware, ...], job: WatchedJob, call: Callable[[], Awaitable[Any]], depth: int = 0
) -> Any:
    """Enter every middleware with ``job`` (from ``depth`` on), run ``call()`` at the innermost ``yield``, and
    return its result.

    Its exception is raised at each ``yield`` in turn, innermost first: one that a middleware swallows makes the
    attempt a success with result None; one it raises instead (``Retry``, ``Reject``, anything) replaces it. An
    exception a middleware raises before its ``yield`` skips the task and is raised at the ``yield`` of those
    already entered. A generator that does not yield, or yields twice, raises :class:`RuntimeError`. Nested
    ``async with`` blocks, one coroutine per middleware: cheaper per job than an ``AsyncExitStack``.
    """
    async with middlewares[depth](job):
        if depth + 1 < len(middlewares):
            return await run_chain(middlewares, job, call, depth + 1)
        result = await call()
        job._set_result(result)
        return result
    return None  # a middleware swallowed the exception: the attempt succeeded without a result
