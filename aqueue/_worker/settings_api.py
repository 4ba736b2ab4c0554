"""The settings face of a :class:`~aqueue.Worker`: what it runs and how, read-only.

A base class of ``Worker`` (which sets the attributes it reads in its constructor), kept apart so that the worker's
module holds its lifecycle. The same for a worker of one queue and of several (whose lanes share these settings).
"""

from __future__ import annotations

from collections.abc import Mapping

from aqueue._core.tasks import Tasks
from aqueue._worker.options import WorkerOptions
from aqueue._worker.settler import JobObserver
from aqueue.autoscale.scaling import Strategy

__all__ = ["Settings"]


class Settings:
    """The read-only settings of a worker."""

    _opts: WorkerOptions
    _tasks: Tasks
    _registries: tuple[Tasks, ...]
    _weights: dict[str, int]
    _bounds: tuple[int, int, int]  # min, max, initial concurrency
    _observers: list[JobObserver]

    @property
    def tasks(self) -> Tasks:
        """The registry whose queue this worker runs (of several: the first)."""
        return self._tasks

    @property
    def registries(self) -> tuple[Tasks, ...]:
        """Every registry this worker runs, in the order given (``(tasks,)`` for one)."""
        return self._registries

    @property
    def weights(self) -> dict[str, int]:
        """Each queue's weight in the sharing of the slots (a copy)."""
        return dict(self._weights)

    @property
    def id(self) -> str:
        """The worker's id: ``name``, or ``host-pid-random``."""
        return self._opts.id

    @property
    def metadata(self) -> Mapping[str, str]:
        """The user key-values given at construction (read-only), shown in the worker's registry entry."""
        return self._opts.metadata

    @property
    def min_concurrency(self) -> int:
        """The lower bound of the concurrency (equal to the upper one for a fixed-concurrency worker)."""
        return self._bounds[0]

    @property
    def max_concurrency(self) -> int:
        """The upper bound of the concurrency (equal to the lower one for a fixed-concurrency worker)."""
        return self._bounds[1]

    @property
    def strategy(self) -> Strategy:
        """The :class:`Strategy` that sizes an autoscaling worker (a built-in name is resolved to one)."""
        return self._opts.strategy

    @property
    def scale_interval(self) -> float:
        """Seconds between two autoscaling decisions."""
        return self._opts.scale_interval

    @property
    def cooldown(self) -> float:
        """Seconds the autoscaler waits before changing direction (and between two steps down)."""
        return self._opts.cooldown

    @property
    def prefetch(self) -> int:
        """Jobs claimed beyond the free slots."""
        return self._opts.prefetch

    @property
    def lease(self) -> float:
        """Seconds a claimed job may go without a heartbeat before another worker takes it back (of several queues:
        the first's; each lane's default is its own queue's)."""
        return self._opts.lease

    @property
    def shutdown_timeout(self) -> float:
        """Seconds :meth:`stop` lets running jobs finish before cancelling them and putting them back."""
        return self._opts.shutdown_timeout

    @property
    def observers(self) -> list[JobObserver]:
        """Per-attempt observers, a list to append to (e.g. the web app's histograms): each is called after every
        attempt with the task name, the seconds it ran, the seconds it waited in the stream, and how it ended
        (``ok``, ``retry``, ``dead`` or ``cancel``). They run on the slot's path: quick, never blocking. On a worker
        of several queues this list sees the jobs of every queue, and ``worker.lane(queue).observers`` those of one."""
        return self._observers
