"""Every Redis key of a queue, derived in one place.

All keys of one queue share the hash tag ``{queue}`` so multi-key scripts work on Redis Cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GROUP", "Keys"]

#: The one consumer group every worker of a queue joins.
GROUP = "workers"


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names of one queue."""

    queue: str
    priorities: tuple[str, ...]

    @property
    def prefix(self) -> str:
        """Common prefix ``aqueue:{queue}:``; Lua scripts build job and stream keys from it."""
        return f"aqueue:{{{self.queue}}}:"

    def stream(self, priority: str) -> str:
        """The ready stream of one priority level."""
        return f"{self.prefix}stream:{priority}"

    @property
    def streams(self) -> list[str]:
        """Ready streams in priority order (highest first)."""
        return [self.stream(p) for p in self.priorities]

    def job(self, job_id: str) -> str:
        """The record hash of one job."""
        return f"{self.prefix}job:{job_id}"

    @property
    def scheduled(self) -> str:
        """Sorted set of delayed and backing-off jobs, scored by due time (ms, Redis clock)."""
        return f"{self.prefix}scheduled"

    @property
    def events(self) -> str:
        """Events stream: one entry per state change, capped with MAXLEN ~."""
        return f"{self.prefix}events"

    @property
    def dead(self) -> str:
        """Dead-letter stream: one entry per dead-lettered job, with the reason."""
        return f"{self.prefix}dead"

    @property
    def stats(self) -> str:
        """Hash of lifetime counters (enqueued, succeeded, failed, retried, dead)."""
        return f"{self.prefix}stats"

    @property
    def task_stats(self) -> str:
        """Hash of lifetime counters per task: field ``<counter>:<task>`` (scripts build it from the prefix)."""
        return f"{self.prefix}stats:task"

    @property
    def scaling(self) -> str:
        """Stream of applied scaling decisions only, capped, so they can be listed without reading every event."""
        return f"{self.prefix}scaling"

    @property
    def wake(self) -> str:
        """One-entry stream that wakes schedulers when an earlier due time is added."""
        return f"{self.prefix}wake"

    @property
    def workers(self) -> str:
        """Sorted set of live worker ids scored by last heartbeat (ms)."""
        return f"{self.prefix}workers"

    def worker(self, worker_id: str) -> str:
        """Heartbeat record of one worker."""
        return f"{self.prefix}worker:{worker_id}"

    @property
    def control(self) -> str:
        """Stream of commands to workers (cancel a running job, pause, resume), capped."""
        return f"{self.prefix}control"

    @property
    def paused(self) -> str:
        """Present (with who and when, JSON) while the queue is paused; the claim script reads it."""
        return f"{self.prefix}paused"

    @property
    def cron(self) -> str:
        """Hash of cron state, fields ``<name>:last|next|job|schedule|task``."""
        return f"{self.prefix}cron"

    def workflow(self, workflow_id: str) -> str:
        """Hash of one workflow: ``steps`` (JSON name → job id), ``left``, ``name``, ``created_at``."""
        return f"{self.prefix}wf:{workflow_id}"

    def done(self, status: str) -> str:
        """Cleanup index of finished jobs of one status: a stream, one entry (``ids``: comma-joined) per script
        call that finished some, so entry ids are finish times; trimmed to the retention as it grows."""
        return f"{self.prefix}done:{status}"

    def dedup(self, key: str) -> str:
        """The job id holding a dedup key."""
        return f"{self.prefix}dedup:{key}"
