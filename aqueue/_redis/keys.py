"""Every Redis key of a queue, named in one place for Python and Lua alike.

Stage: all of them (enqueue → stream → claim → run → settle → events): the keys are where each stage keeps its
data. All keys of one queue share the hash tag ``{queue}`` so multi-key scripts work on Redis Cluster.

:data:`SUFFIXES` is the single source of the names after the queue's prefix: :class:`Keys` builds the Python side
from it, and the script loader (:mod:`aqueue._redis.scripts`) prepends it to every Lua script as the table ``K``,
so a script writes ``prefix .. K.job .. id``, never ``prefix .. 'job:' .. id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["GROUP", "SUFFIXES", "Keys"]

#: The one consumer group every worker of a queue joins.
GROUP = "workers"

#: Key name after the prefix ``aqueue:{queue}:``, by the :class:`Keys` member that builds it (and the field of the
#: Lua table ``K``). A suffix ending in ``:`` takes an id (``job:<id>``); the others are whole key names.
SUFFIXES: Mapping[str, str] = MappingProxyType(
    {
        "stream": "stream:",  # stream:<priority>: a ready stream
        "job": "job:",  # job:<id>: a job record
        "scheduled": "scheduled",
        "events": "events",
        "dead": "dead",
        "stats": "stats",
        "task_stats": "stats:task",
        "scaling": "scaling",
        "wake": "wake",
        "workers": "workers",
        "worker": "worker:",  # worker:<id>: a worker's heartbeat record
        "control": "control",
        "paused": "paused",
        "cron": "cron",
        "workflow": "wf:",  # wf:<id>: a workflow
        "done": "done:",  # done:<status>: a cleanup index
        "dedup": "dedup:",  # dedup:<key>: the job holding a dedup key
        "rate_queue": "rate:queue",
        "rate_task": "rate:task:",  # rate:task:<task>: a task's rate limit
        "rate_group": "rate:group:",  # rate:group:<group>: a group's rate limit
        "group": "group:",  # group:<group>: the jobs of one group waiting for its turn
        "groups": "groups",  # the groups with waiting jobs, scored by turn (round robin)
        "group_turn": "groups:turn",  # the last turn given out
        "group_jobs": "groups:jobs",  # jobs waiting in all groups
        "group_ready": "groups:ready",  # the ready stream of grouped jobs given their turn
        "permits_task": "permits:task:",  # permits:task:<task>: ids of the task's jobs holding a permit
        "permits_group": "permits:group:",  # permits:group:<group>: ids of the group's jobs holding a permit
        "parked": "parked:",  # parked:<task>: jobs waiting for a permit of the task's concurrency limit
    }
)

_STREAM = SUFFIXES["stream"]
_JOB = SUFFIXES["job"]
_SCHEDULED = SUFFIXES["scheduled"]
_EVENTS = SUFFIXES["events"]
_DEAD = SUFFIXES["dead"]
_STATS = SUFFIXES["stats"]
_TASK_STATS = SUFFIXES["task_stats"]
_SCALING = SUFFIXES["scaling"]
_WAKE = SUFFIXES["wake"]
_WORKERS = SUFFIXES["workers"]
_WORKER = SUFFIXES["worker"]
_CONTROL = SUFFIXES["control"]
_PAUSED = SUFFIXES["paused"]
_CRON = SUFFIXES["cron"]
_WORKFLOW = SUFFIXES["workflow"]
_DONE = SUFFIXES["done"]
_DEDUP = SUFFIXES["dedup"]
_RATE_QUEUE = SUFFIXES["rate_queue"]
_RATE_TASK = SUFFIXES["rate_task"]
_RATE_GROUP = SUFFIXES["rate_group"]
_GROUP = SUFFIXES["group"]
_GROUP_TURN = SUFFIXES["group_turn"]
_GROUPS = SUFFIXES["groups"]
_GROUP_JOBS = SUFFIXES["group_jobs"]
_GROUP_READY = SUFFIXES["group_ready"]
_PERMITS_TASK = SUFFIXES["permits_task"]
_PERMITS_GROUP = SUFFIXES["permits_group"]
_PARKED = SUFFIXES["parked"]


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
        return f"{self.prefix}{_STREAM}{priority}"

    @property
    def streams(self) -> list[str]:
        """Ready streams in priority order (highest first)."""
        return [self.stream(p) for p in self.priorities]

    @property
    def ready(self) -> list[str]:
        """Every stream workers read, by claim index (1-based in the scripts): the priority streams, highest
        first, then the stream of grouped jobs given their turn."""
        return [*self.streams, self.group_ready]

    def group(self, group: str) -> str:
        """The jobs of one group waiting for its turn, oldest first (a list)."""
        return f"{self.prefix}{_GROUP}{group}"

    @property
    def groups(self) -> str:
        """The groups with waiting jobs, scored by turn: the lowest is served next (a sorted set)."""
        return f"{self.prefix}{_GROUPS}"

    @property
    def group_turn(self) -> str:
        """The last turn given to a group (a counter): a group joining the round gets the next one."""
        return f"{self.prefix}{_GROUP_TURN}"

    @property
    def group_jobs(self) -> str:
        """How many jobs wait in all groups for their turn (a counter)."""
        return f"{self.prefix}{_GROUP_JOBS}"

    @property
    def group_ready(self) -> str:
        """The ready stream of grouped jobs that were given their group's turn (and of wake-up entries)."""
        return f"{self.prefix}{_GROUP_READY}"

    def permits_task(self, task: str) -> str:
        """Ids of the task's jobs holding one of its ``concurrency_limit`` permits (a set)."""
        return f"{self.prefix}{_PERMITS_TASK}{task}"

    def permits_group(self, group: str) -> str:
        """Ids of the group's jobs holding one of its ``group_concurrency`` permits (a set)."""
        return f"{self.prefix}{_PERMITS_GROUP}{group}"

    def parked(self, task: str) -> str:
        """Jobs of a task waiting for a permit of its concurrency limit, oldest first (a list)."""
        return f"{self.prefix}{_PARKED}{task}"

    def job(self, job_id: str) -> str:
        """The record hash of one job."""
        return f"{self.prefix}{_JOB}{job_id}"

    @property
    def scheduled(self) -> str:
        """Sorted set of delayed and backing-off jobs, scored by due time (ms, Redis clock)."""
        return f"{self.prefix}{_SCHEDULED}"

    @property
    def events(self) -> str:
        """Events stream: one entry per state change, capped with MAXLEN ~."""
        return f"{self.prefix}{_EVENTS}"

    @property
    def dead(self) -> str:
        """Dead-letter stream: one entry per dead-lettered job, with the reason."""
        return f"{self.prefix}{_DEAD}"

    @property
    def stats(self) -> str:
        """Hash of lifetime counters (enqueued, succeeded, failed, retried, dead)."""
        return f"{self.prefix}{_STATS}"

    @property
    def task_stats(self) -> str:
        """Hash of lifetime counters per task: field ``<counter>:<task>`` (scripts build it from the prefix)."""
        return f"{self.prefix}{_TASK_STATS}"

    @property
    def scaling(self) -> str:
        """Stream of applied scaling decisions only, capped, so they can be listed without reading every event."""
        return f"{self.prefix}{_SCALING}"

    @property
    def wake(self) -> str:
        """One-entry stream that wakes schedulers when an earlier due time is added."""
        return f"{self.prefix}{_WAKE}"

    @property
    def workers(self) -> str:
        """Sorted set of live worker ids scored by last heartbeat (ms)."""
        return f"{self.prefix}{_WORKERS}"

    def worker(self, worker_id: str) -> str:
        """Heartbeat record of one worker."""
        return f"{self.prefix}{_WORKER}{worker_id}"

    @property
    def control(self) -> str:
        """Stream of commands to workers (cancel a running job, pause, resume), capped."""
        return f"{self.prefix}{_CONTROL}"

    @property
    def paused(self) -> str:
        """Present (with who and when, JSON) while the queue is paused; the claim script reads it."""
        return f"{self.prefix}{_PAUSED}"

    @property
    def cron(self) -> str:
        """Hash of cron state, fields ``<name>:last|next|job|schedule|task|startup``."""
        return f"{self.prefix}{_CRON}"

    def workflow(self, workflow_id: str) -> str:
        """Hash of one workflow: ``steps`` (JSON name → job id), ``left``, ``name``, ``created_at``."""
        return f"{self.prefix}{_WORKFLOW}{workflow_id}"

    def done(self, status: str) -> str:
        """Cleanup index of finished jobs of one status: a stream, one entry (``ids``: comma-joined) per script
        call that finished some, so entry ids are finish times; trimmed to the retention as it grows."""
        return f"{self.prefix}{_DONE}{status}"

    def dedup(self, key: str) -> str:
        """The job id holding a dedup key."""
        return f"{self.prefix}{_DEDUP}{key}"

    @property
    def rate_queue(self) -> str:
        """GCRA theoretical arrival time (ms) of the queue's rate limit; only the claim script writes it."""
        return f"{self.prefix}{_RATE_QUEUE}"

    def rate_task(self, task: str) -> str:
        """GCRA theoretical arrival time (ms) of one task's rate limit; only the claim script writes it."""
        return f"{self.prefix}{_RATE_TASK}{task}"

    def rate_group(self, group: str) -> str:
        """GCRA theoretical arrival time (ms) of one group's rate limit; only the claim script writes it."""
        return f"{self.prefix}{_RATE_GROUP}{group}"
