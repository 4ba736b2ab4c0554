"""``async with tasks.batch():`` — the jobs enqueued inside the block stand or fall with it, for its caller.

Every enqueue made in the block's context (``Task.enqueue``, ``Tasks.enqueue``, ``enqueue_many``, chains and
workflows) notes the handles it returns in the batches open in that context (:data:`_open`: one ContextVar lookup per
enqueue, nothing more when no batch is open). If the block raises, the batch cancels the jobs it created (not the
existing jobs a duplicate enqueue returned) that have not started, in one script call; jobs already running are left
to finish, and the exception says so in a note. Stage: enqueue.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aqueue._core.job import Job
    from aqueue._redis.broker import Broker

__all__ = ["Batch", "note_enqueued"]

log = logging.getLogger("aqueue.batch")

#: The batches open in this context, outermost first (a tuple: entering copies, so sibling tasks never share one).
_open: ContextVar[tuple[Batch, ...]] = ContextVar("aqueue_batches", default=())


def note_enqueued(jobs: list[Job[Any]]) -> None:
    """Called by every enqueue with the handles it returns: they join the batches open here."""
    for batch in _open.get():
        batch.jobs.extend(jobs)


class Batch:
    """The jobs enqueued inside one ``async with tasks.batch() as batch:`` block (:meth:`Tasks.batch`).

    After a block that raised: ``cancelled`` holds the ids of the jobs cancelled before they started, ``running``
    those already running (left to finish), ``finished`` those that had finished already.
    """

    def __init__(self) -> None:
        #: Handles returned by the enqueues made in the block (and in tasks it awaited), in order; a duplicate
        #: enqueue's handle (``job.duplicate``) names an existing job, which the batch never cancels.
        self.jobs: list[Job[Any]] = []
        self.cancelled: list[str] = []  #: ids of the jobs that will not run (cancelled now, or already)
        self.running: list[str] = []  #: ids already running when the block raised: left to finish
        self.finished: list[str] = []  #: ids that had already finished when the block raised

    def __repr__(self) -> str:
        return (
            f"Batch(jobs={len(self.jobs)}, cancelled={len(self.cancelled)}, running={len(self.running)}, "
            f"finished={len(self.finished)})"
        )

    @property
    def created(self) -> list[str]:
        """Ids of the jobs this block created (duplicates left out), each once, in order."""
        return list(dict.fromkeys(job.id for job in self.jobs if not job.duplicate))

    async def _undo(self, broker: Broker, why: BaseException) -> None:
        """Cancel the created jobs that have not started; note on ``why`` what happened to each."""
        ids = self.created
        if not ids:
            return
        try:
            states = await broker.cancel(ids, f"batch failed: {type(why).__name__}", running=False)
        except Exception as exc:  # the block's own exception matters more: say what was not undone, raise that
            why.add_note(f"aqueue batch: {len(ids)} jobs enqueued in the block could not be cancelled: {exc}")
            log.error("batch: cancelling %d jobs failed: %s", len(ids), exc)
            return
        for job_id, state in zip(ids, states, strict=True):
            if state in ("cancelled", "already-cancelled"):  # already: a workflow step whose parent was just cancelled
                self.cancelled.append(job_id)
            elif state == "running":
                self.running.append(job_id)
            else:  # already-<status>, or unknown (its record expired)
                self.finished.append(job_id)
        note = f"aqueue batch: cancelled {len(self.cancelled)} of the {len(ids)} jobs enqueued in the block"
        if self.running:
            note += f"; {len(self.running)} already running, left to finish: {', '.join(self.running[:10])}"
        if self.finished:
            note += f"; {len(self.finished)} already finished"
        why.add_note(note)
