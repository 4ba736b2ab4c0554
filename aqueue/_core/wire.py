"""The values that cross between the producer, the broker and the worker: what is written, claimed and settled.

Each maps onto what one Lua script reads or returns; the scripts in ``aqueue/_redis/lua`` are the other side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["ClaimTurn", "Claimed", "EnqueueItem", "Outcome", "OutcomeKind", "QueueSample", "ScheduleState"]


@dataclass(frozen=True, slots=True)
class EnqueueItem:
    """One job to write: id, task name, priority level, delay in ms, the encoded spec, and the options the
    enqueue script applies (dedup, ttl, workflow links; see ``enqueue_one`` in ``_prelude.lua``)."""

    job_id: str
    task: str
    priority: str
    delay_ms: int
    spec: str
    options: dict[str, Any] | None = None

    def wire(self) -> tuple[Any, ...]:
        """The JSON array the scripts read."""
        return (self.job_id, self.task, self.priority, self.delay_ms, self.spec, self.options or 0)


# Claimed and Outcome are made once per job on the hot path: plain slotted classes, cheaper than frozen ones.
@dataclass(slots=True)
class Claimed:
    """A job claimed by this worker and marked active."""

    stream: int  # 1-based index of its priority stream
    msg_id: str
    job_id: str
    task: str
    spec: str
    attempt: int
    inputs: str = ""  # JSON a workflow step receives from its parents ('' when none)


@dataclass(frozen=True, slots=True)
class ClaimTurn:
    """What one claim call found."""

    jobs: list[Claimed]  #: jobs claimed and marked active, to run now
    cursors: list[str]  #: where the next take-back scan of each stream starts
    paused: bool  #: the queue is paused: nothing was claimed
    #: (stream index, message id, job id) of this consumer's own idle messages: renewed, not started again
    own: list[tuple[int, str, str]]
    consumed: int  #: messages read or taken back, started or not (stale ones are dropped)
    groups: bool = False  #: groups have jobs waiting for their turn (the claim reads the groups' level too)


#: How an attempt ended: it returned (``ok``), it goes back for another attempt (``retry``), it is dead-lettered
#: (``dead``), or it was cancelled while running (``cancel``).
OutcomeKind = Literal["ok", "retry", "dead", "cancel"]


@dataclass(slots=True)
class Outcome:
    """How an attempt ended, as the settle script takes it (see ``settle.lua``)."""

    kind: OutcomeKind
    stream: int  # 1-based index of its priority stream
    msg_id: str
    job_id: str
    result: str = ""  # ok: the encoded return value
    error: str = ""  # retry, dead: why, one line
    traceback: str = ""  # retry, dead: the traceback ('' for a task's own Retry/Reject and for timeouts)
    delay_ms: int = 0  # retry: milliseconds until the next attempt
    logs: str = ""  # what the attempt logged: a JSON array of [ms, level, message] ('' when nothing)
    logs_dropped: int = 0  # lines of the attempt dropped by the caps

    def with_logs(self, logs: str, dropped: int) -> Outcome:
        """This outcome carrying an attempt's logs (built directly: ``dataclasses.replace`` costs several times
        more, and this runs once per job that logged)."""
        return Outcome(
            self.kind, self.stream, self.msg_id, self.job_id, self.result, self.error, self.traceback,
            self.delay_ms, logs, dropped,
        )  # fmt: skip

    def wire(self) -> tuple[str | int, ...]:
        """The array ``settle.lua`` reads: kind, stream, message id, job id, then the kind's three fields, then the
        attempt's logs and the number of lines dropped when it logged anything."""
        if self.kind == "ok":
            out: tuple[str | int, ...] = (self.kind, self.stream, self.msg_id, self.job_id, self.result, "", "")
        else:
            delay = str(self.delay_ms) if self.kind == "retry" else ""
            out = (self.kind, self.stream, self.msg_id, self.job_id, self.error, self.traceback, delay)
        return (*out, self.logs, self.logs_dropped) if self.logs else out


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """What one promotion pass found."""

    promoted: int
    next_due_ms: int | None
    now_ms: int
    wake_id: str


@dataclass(frozen=True, slots=True)
class QueueSample:
    """Raw queue figures for the autoscaler, read in one script call (times in ms on the Redis clock)."""

    now_ms: int
    due: int
    workers: int
    enqueued: int
    succeeded: int
    failed: int
    waiting: dict[str, int]
    pending: int
    oldest_ms: int | None
