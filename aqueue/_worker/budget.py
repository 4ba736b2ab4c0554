"""The slots a worker of several queues shares among them, by weight (``Worker([orders, emails], weights=...)``).

Each queue has its own lane (claim loop, slots, settle loop); the lanes draw on one :class:`Budget` of
``concurrency`` jobs. A lane may claim ``min(its own free slots, the budget's free slots, its share - its busy
jobs)``, where its share is ``ceil(total * weight / sum of the weights of the lanes that have work)``. A lane that
found its queue empty (or paused) is not competing: the others may use its share meanwhile. When work comes back to
it, it takes it at once, even over the budget (its blocking read starts what arrives, at most one job per priority
level, or it claims one job: that is how a quiet queue is never starved by a flooded one), and its share shrinks
the others': they claim nothing more until their busy jobs fall below their new share, and the slots they free come
back to it.

Every lane waiting for a slot wakes when any lane frees one (and when a lane stops competing), since the share of
each depends on all. The single-queue worker has no budget: its claim loop does not change.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

__all__ = ["Budget"]


class Budget:
    """``total`` job slots shared by lanes of the given ``weights`` (lane ``i`` is the ``i``-th weight)."""

    def __init__(self, total: int, weights: Sequence[int]) -> None:
        self.cap = total  # the budget without an override: max_concurrency
        self._weights = list(weights)
        self._idle = [False] * len(self._weights)  # lanes that found nothing to claim: not competing
        self._busy: list[Callable[[], int]] = [lambda: 0] * len(self._weights)
        self._wake: list[Callable[[], None]] = [lambda: None] * len(self._weights)
        self._override: tuple[int, float] | None = None  # scale_to: (total, monotonic expiry)

    def join(self, lane: int, busy: Callable[[], int], wake: Callable[[], None]) -> None:
        """Lane ``lane`` reads its busy jobs with ``busy()``; ``wake()`` wakes its claim loop waiting for a slot."""
        self._busy[lane] = busy
        self._wake[lane] = wake

    @property
    def total(self) -> int:
        """The slots shared now: the cap, or a :meth:`scale_to` override while it holds."""
        override = self.override
        return self.cap if override is None else override

    @property
    def override(self) -> int | None:
        """The total set by :meth:`scale_to` while it holds, else None."""
        if self._override is not None and time.monotonic() >= self._override[1]:
            self._override = None
        return None if self._override is None else self._override[0]

    def scale_to(self, total: int, ttl: float | None) -> None:
        """Share ``total`` slots (the caller clamps it) for ``ttl`` seconds (None: until :meth:`release`)."""
        self._override = (total, time.monotonic() + ttl if ttl is not None else float("inf"))
        self.freed()

    def release(self) -> None:
        """Back to the cap."""
        self._override = None
        self.freed()

    def claimable(self, lane: int, own_free: int) -> int:
        """How many jobs lane ``lane`` may claim now, given ``own_free`` by its own target (see the module
        docstring). A lane asking counts as competing: it is about to look for work."""
        total = self.total
        busy = [b() for b in self._busy]
        weights = self._weights
        competing = sum(w for i, w in enumerate(weights) if i == lane or not self._idle[i])
        share = -(-total * weights[lane] // competing)  # rounded up: the total still caps the sum
        return min(own_free, total - sum(busy), share - busy[lane])

    def idle(self, lane: int) -> bool:
        """Lane ``lane`` last found nothing to claim."""
        return self._idle[lane]

    def competing(self, lane: int, has_work: bool) -> None:
        """Lane ``lane`` found work (``True``) or found its queue empty or paused, or stopped (``False``); the
        others' shares grow when it stops competing, so they wake to claim."""
        if self._idle[lane] == (not has_work):
            return
        self._idle[lane] = not has_work
        if not has_work:
            self.freed()

    def freed(self) -> None:
        """A slot freed somewhere (or the shares changed): every lane waiting for one recomputes."""
        for wake in self._wake:
            wake()
