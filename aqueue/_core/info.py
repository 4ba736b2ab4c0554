"""What :meth:`aqueue.Tasks.info` returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["LimitUsage", "QueueInfo"]


@dataclass(frozen=True, slots=True)
class LimitUsage:
    """One concurrency limit as :meth:`Tasks.info` saw it: a task's ``concurrency_limit`` or a group's."""

    kind: Literal["task", "group"]  #: what is limited
    name: str  #: the task's or the group's name
    running: int  #: jobs holding one of its permits now (across all workers)
    limit: int | None  #: the most that may run at once (None: a group with no limit)
    waiting: int  #: jobs waiting for a permit (task) or for their group's turn (group)


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """A snapshot of a queue's depths and workers, as :meth:`Tasks.info` reads it (a few pipelined commands, not one
    atomic read)."""

    queued: dict[str, int]  #: jobs waiting in each priority level's stream, by level name
    active: int  #: jobs claimed by a worker and not yet settled (running, or prefetched)
    scheduled: int  #: jobs waiting for a due time: delayed, waiting for a retry, or held back by a rate limit
    dead: int  #: entries in the dead-letter stream
    #: One dict per live worker, as it last reported itself: ``id``, ``host``, ``pid``, ``queue``, ``concurrency``,
    #: ``min_concurrency``, ``max_concurrency``, ``strategy``, ``busy``, ``processed``, ``failed``, ``started_at``,
    #: ``heartbeat_at``, ``failing`` (sub-tasks that keep failing) and ``metadata`` (the ``str`` to ``str`` key-values
    #: given to the worker: ``Worker(metadata=...)``, ``aqueue worker --meta KEY=VALUE``; ``{}`` when none).
    workers: list[dict[str, Any]]
    #: Lifetime counters of the queue: ``enqueued``, ``succeeded``, ``failed`` (failed attempts), ``retried``,
    #: ``dead``, ``cancelled``, ``expired``, ``reprocessed``; a counter appears once it is first counted.
    stats: dict[str, int]
    #: Concurrency limits in use: every task with a ``concurrency_limit``, and the first groups waiting for their
    #: turn (at most 20), each with its running jobs, limit and waiting jobs.
    limits: tuple[LimitUsage, ...] = ()
    groups: int = 0  #: groups with jobs waiting for their turn
    grouped: int = 0  #: jobs waiting in a group for its turn (not yet in a stream)

    def worker_metadata(self) -> dict[str, dict[str, str]]:
        """The metadata of each live worker, by worker id (``{}`` for a worker given none): which versions or
        regions are running now, say."""
        out: dict[str, dict[str, str]] = {}
        for w in self.workers:
            meta = w.get("metadata")
            out[str(w.get("id"))] = {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}
        return out
