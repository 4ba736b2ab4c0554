"""Small asyncio helpers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aqueue._core.errors import BrokerUnavailable

__all__ = ["cancel_and_wait", "retry_unavailable"]

T = TypeVar("T")

log = logging.getLogger("aqueue")


async def cancel_and_wait(*tasks: asyncio.Task[None], interval: float = 0.1) -> None:
    """Cancel tasks and wait until each has ended (their results and errors are discarded).

    Cancelling again until done: on Python 3.11 a cancellation that lands while a client library's internal
    ``wait_for`` completes can be swallowed (CPython gh-86296), which would leave a loop running forever.
    """
    pending = {t for t in tasks if not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=interval)
    for t in tasks:
        if not t.cancelled() and (exc := t.exception()) is not None:
            log.error("task %s ended with an error", t.get_name(), exc_info=exc)


async def retry_unavailable(what: str, fn: Callable[[], Awaitable[T]], attempts: int) -> T:
    """Call ``fn``, retrying with doubling delays while Redis is unavailable; the last failure propagates."""
    delay = 0.1
    for i in range(attempts):
        try:
            return await fn()
        except BrokerUnavailable as exc:
            if i == attempts - 1:
                raise
            log.log(exc.log_level, "%s failed: %s; retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")
