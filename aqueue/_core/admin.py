"""Administration of a queue from Python: the dead-letter queue and re-running jobs.

:class:`Tasks` inherits these methods; the REST routes and the CLI call them instead of talking to the broker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aqueue._redis.broker import Broker

__all__ = ["AdminMixin"]


class AdminMixin:
    """Dead letters and re-runs (see the module docstring)."""

    async def _broker(self) -> Broker:
        raise NotImplementedError  # provided by Tasks
