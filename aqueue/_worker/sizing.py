"""A worker's concurrency target and its changes: the supervisor's decisions and manual overrides.

Growing starts new slot coroutines at once; shrinking cancels idle slots and lets busy surplus slots leave after
their current job, so no running job is ever cancelled to shrink. Each applied change is kept in the history and
written as a ``scaling`` event.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING

from aqueue._core.errors import BrokerUnavailable
from aqueue._worker.settler import Settler
from aqueue.autoscale.scaling import ScalingRecord

if TYPE_CHECKING:
    from aqueue._core.tasks import Tasks

__all__ = ["Sizing"]

log = logging.getLogger("aqueue._worker.worker")


class Sizing:
    """The concurrency target of one worker, within its bounds."""

    def __init__(self, owner: str, tasks: Tasks, settler: Settler, bounds: tuple[int, int, int]) -> None:
        self.low, self.high, self.target = bounds  # from concurrency_bounds(): min, max, initial target
        self._owner = owner
        self._tasks = tasks
        self._settler = settler
        self._override: tuple[int, float] | None = None  # manual target, monotonic expiry
        self.ups = 0  # applied increases
        self.downs = 0  # applied decreases
        self.history: deque[ScalingRecord] = deque(maxlen=50)  # the latest applied changes, oldest first

    @property
    def override(self) -> int | None:
        """The manual target while it holds, else None."""
        if self._override is not None and time.monotonic() >= self._override[1]:
            self._override = None
        return None if self._override is None else self._override[0]

    async def scale_to(self, concurrency: int, ttl: float | None) -> None:
        """A manual target, clamped to the bounds, holding for ``ttl`` seconds (None: until released)."""
        target = max(self.low, min(self.high, concurrency))
        self._override = (target, time.monotonic() + ttl if ttl is not None else float("inf"))
        if target != self.target:
            await self.apply(target, f"manual override to {concurrency}", "manual", None, "{}")

    def release(self) -> None:
        """End a manual target."""
        self._override = None

    async def apply(
        self, target: int, reason: str, strategy: str, confidence: float | None, inputs: str
    ) -> ScalingRecord:
        """Set the target to ``target`` now, without clamping; record the change and write its ``scaling`` event."""
        old, self.target = self.target, target
        record = ScalingRecord(time.time(), old, target, reason, strategy, confidence)
        self.history.append(record)
        if target > old:
            self.ups += 1
        else:
            self.downs += 1
        self._settler.resize(target)
        log.info("worker %s: concurrency %d -> %d (%s: %s)", self._owner, old, target, strategy, reason)
        fields: dict[str, str | int | float] = {
            "type": "scaling", "worker": self._owner, "from": old, "to": target, "reason": reason,
            "strategy": strategy, "inputs": inputs,
        }  # fmt: skip
        if confidence is not None:
            fields["confidence"] = round(confidence, 3)
        try:
            await (await self._tasks._broker()).record_scaling(fields)
        except BrokerUnavailable as exc:
            log.log(exc.log_level, "worker %s: scaling event not written: %s", self._owner, exc)
        return record
