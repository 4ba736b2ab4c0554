"""The operator's side of the broker: what the queue holds, and the actions taken on it as a whole.

Stage: none of the pipeline's own; it reads every stage's state (depths per level, scheduled, dead letters,
workers, counters, cron state, workflows) for ``Tasks.info()``, the autoscaler's sample, the web app and the CLI,
and acts on the queue: requeue finished or failed jobs (back to the stream stage), clean up finished records, pause
and resume (the claim script reads the pause; workers follow the control stream).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from aqueue._core import codec
from aqueue._core.info import LimitUsage, QueueInfo
from aqueue._core.wire import EnqueueItem, QueueSample
from aqueue._redis.base import BrokerBase
from aqueue._redis.guard import unavailable
from aqueue._redis.keys import GROUP

__all__ = ["CONTROL_MAXLEN", "GROUPS_LEVEL", "Admin"]

#: Approximate cap of the control stream (worker commands: cancel a running job, resume).
CONTROL_MAXLEN = 1000
#: The key under which the autoscaler's sample counts grouped jobs waiting, beside the priority levels.
GROUPS_LEVEL = "(groups)"
#: Groups listed with their use in ``Tasks.info().limits`` (the first in turn).
_GROUPS_SHOWN = 20


class Admin(BrokerBase):
    """Queue-wide reads (info, sample, counters, workers, dead letters, records, cron, workflows) and actions
    (requeue, cleanup, pause and resume)."""

    @unavailable
    async def ping(self) -> None:
        """Return once Redis answers; :class:`BrokerUnavailable` if it does not."""
        await self.redis.ping()

    @unavailable
    async def info(self, task_limits: Mapping[str, int] | None = None) -> QueueInfo:
        """Depths per level, claimed, scheduled, dead-letter size, live workers, lifetime counters, and the use of
        the concurrency limits (``task_limits``: task → limit) and groups."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in k.streams:
                pipe.xlen(stream)
                pipe.xpending(stream, GROUP)
            pipe.zcard(k.scheduled)
            pipe.xlen(k.dead)
            pipe.zrange(k.workers, 0, -1)
            pipe.hgetall(k.stats)
            pipe.xpending(k.group_ready, GROUP)
            replies = await pipe.execute(raise_on_error=False)
        queued: dict[str, int] = {}
        active = 0
        for i, name in enumerate(self.settings.priority_names):
            length, pend = replies[2 * i], replies[2 * i + 1]
            claimed = int(pend["pending"]) if isinstance(pend, dict) else 0
            queued[name] = max(0, (int(length) if isinstance(length, int) else 0) - claimed)
            active += claimed
        scheduled, dead, worker_ids, stats, gpend = replies[2 * len(k.streams) :]
        gclaimed = int(gpend["pending"]) if isinstance(gpend, dict) else 0
        active += gclaimed
        workers: list[dict[str, Any]] = []
        if worker_ids:
            async with self.redis.pipeline(transaction=False) as pipe:
                for wid in worker_ids:
                    pipe.hget(k.worker(wid), "info")
                infos = await pipe.execute()
            workers = [codec.decode(i) for i in infos if i]
        limits, groups, grouped = await self._limits(task_limits or {})
        return QueueInfo(
            queued=queued,
            active=active,
            scheduled=int(scheduled),
            dead=int(dead),
            workers=workers,
            stats={key: int(v) for key, v in (stats or {}).items()},
            limits=limits,
            groups=groups,
            grouped=grouped,
        )

    async def _limits(self, task_limits: Mapping[str, int]) -> tuple[tuple[LimitUsage, ...], int, int]:
        """Each limited task's permits in use and parked jobs; the groups waiting (the first 20 with their jobs
        and permits in use); the jobs waiting in groups."""
        k, group_limit = self.keys, self.settings.group_concurrency
        async with self.redis.pipeline(transaction=False) as pipe:
            for task in task_limits:
                pipe.scard(k.permits_task(task))
                pipe.llen(k.parked(task))
            pipe.zcard(k.groups)
            pipe.get(k.group_jobs)
            pipe.zrange(k.groups, 0, _GROUPS_SHOWN - 1)
            replies = await pipe.execute()
        n = 2 * len(task_limits)
        out = [
            LimitUsage("task", task, int(replies[2 * i]), limit, int(replies[2 * i + 1]))
            for i, (task, limit) in enumerate(task_limits.items())
        ]
        groups, grouped, first = int(replies[n]), max(0, int(replies[n + 1] or 0)), replies[n + 2]
        if first:
            async with self.redis.pipeline(transaction=False) as pipe:
                for g in first:
                    pipe.scard(k.permits_group(g))
                    pipe.llen(k.group(g))
                counts = await pipe.execute()
            out += [
                LimitUsage("group", g, int(counts[2 * i]), group_limit, int(counts[2 * i + 1]))
                for i, g in enumerate(first)
            ]
        return tuple(out), groups, grouped

    @unavailable
    async def sample(self, worker_ttl_ms: int) -> QueueSample:
        """Backlog per level, pending, oldest waiting entry, due jobs, live workers and counters: one call."""
        k = self.keys
        r = await self._script(
            "snapshot", [k.scheduled, k.stats, k.workers, *k.ready, k.group_jobs], [GROUP, worker_ttl_ms]
        )
        waiting: dict[str, int] = {}
        pending = 0
        oldest: int | None = None
        for i, name in enumerate(self.settings.priority_names):
            w, p, o = (int(v) for v in r[6 + 3 * i : 9 + 3 * i])
            waiting[name] = w
            pending += p
            if o >= 0 and w > 0:
                oldest = o if oldest is None else min(oldest, o)
        gi = 6 + 3 * len(self.settings.priority_names)
        gw, gp, go = (int(v) for v in r[gi : gi + 3])
        if gw + int(r[-1]) > 0:  # grouped jobs: given their turn, and waiting for it
            waiting[GROUPS_LEVEL] = gw + max(0, int(r[-1]))
            if go >= 0 and gw > 0:
                oldest = go if oldest is None else min(oldest, go)
        pending += gp
        now, due, workers, enqueued, succeeded, failed = (int(v) for v in r[:6])
        return QueueSample(now, due, workers, enqueued, succeeded, failed, waiting, pending, oldest)

    @unavailable
    async def counters(self) -> dict[str, int]:
        """The queue's lifetime counters (``enqueued``, ``succeeded``, ``failed``, ``retried``, ``dead``, …)."""
        raw: dict[str, str] = await self.redis.hgetall(self.keys.stats)
        return {name: int(value) for name, value in raw.items()}

    @unavailable
    async def task_counters(self) -> dict[str, dict[str, int]]:
        """Lifetime counters per task, queue-wide: ``{task: {"enqueued": n, "succeeded": n, …}}``."""
        raw: dict[str, str] = await self.redis.hgetall(self.keys.task_stats)
        out: dict[str, dict[str, int]] = {}
        for name, value in raw.items():
            counter, _, task = name.partition(":")  # counters never hold ':', task names may
            out.setdefault(task, {})[counter] = int(value)
        return out

    @unavailable
    async def heartbeats(self) -> tuple[int, dict[str, int]]:
        """Redis time (ms) and the last heartbeat (ms, Redis clock) of every registered worker."""
        if self._conn.cluster:  # no keyless command in a cluster pipeline: ask the queue's own node for its time
            seen = await self.redis.zrange(self.keys.workers, 0, -1, withscores=True)
            node = self.redis.get_node_from_key(self.keys.workers)
            sec, usec = await self.redis.execute_command("TIME", target_nodes=node)
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.time()
                pipe.zrange(self.keys.workers, 0, -1, withscores=True)
                (sec, usec), seen = await pipe.execute()
        return int(sec) * 1000 + int(usec) // 1000, {wid: int(score) for wid, score in seen}

    @unavailable
    async def dead_letters(self, limit: int = 100) -> list[tuple[str, dict[str, str]]]:
        """The newest dead-letter entries, newest first."""
        entries: list[tuple[str, dict[str, str]]] = await self.redis.xrevrange(self.keys.dead, count=limit)
        return entries

    @unavailable
    async def dead_page(self, after: str | None, count: int, newest_first: bool) -> list[tuple[str, dict[str, str]]]:
        """One page of dead-letter entries beyond the id ``after`` (from the start when None)."""
        k = self.keys.dead
        if newest_first:
            top = "+" if after is None else f"({after}"
            page: list[tuple[str, dict[str, str]]] = await self.redis.xrevrange(k, max=top, min="-", count=count)
        else:
            bottom = "-" if after is None else f"({after}"
            page = await self.redis.xrange(k, min=bottom, max="+", count=count)
        return page

    @unavailable
    async def dead_length(self) -> int:
        """Entries in the dead-letter stream."""
        return int(await self.redis.xlen(self.keys.dead))

    @unavailable
    async def record_fields(self, job_ids: Sequence[str], fields: Sequence[str]) -> list[dict[str, str] | None]:
        """Some fields of many job records in one round trip; None where a record does not exist."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(self.keys.job(job_id), *fields)
            replies = await pipe.execute()
        out: list[dict[str, str] | None] = []
        for values in replies:
            found = {name: v for name, v in zip(fields, values, strict=True) if v is not None}
            out.append(found if "task" in found else None)
        return out

    @unavailable
    async def requeue(
        self, jobs: Sequence[tuple[str, ...]], source: str, statuses: Sequence[str]
    ) -> tuple[list[str], list[tuple[str, str]]]:
        """Put jobs whose status is one of ``statuses`` back on their streams: ``jobs`` are (job id, its
        dead-letter entry ids…); ``source`` (``retry``, ``reprocess``) goes in each ``requeued`` event.

        Returns the job ids requeued and (job id, reason) for each one skipped.
        """
        k = self.keys
        requeued, flat = await self._script(
            "requeue",
            [k.events, k.scheduled, k.dead, k.stats],
            [k.prefix, self.settings.events_maxlen, source, orjson.dumps([list(j) for j in jobs]), ",".join(statuses)],
        )
        if requeued:
            self._bump()
        return list(requeued), [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]

    @unavailable
    async def cleanup(self, older_than_ms: int, statuses: Sequence[str], limit: int = 1000) -> tuple[int, bool]:
        """Delete up to ``limit`` finished records of ``statuses`` older than ``older_than_ms``; (deleted, more)."""
        k = self.keys
        deleted, more = await self._script(
            "cleanup", [k.events], [k.prefix, self.settings.events_maxlen, older_than_ms, limit, *statuses]
        )
        if int(deleted):
            self._bump()
        return int(deleted), bool(more)

    @unavailable
    async def set_paused(self, paused: bool, by: str) -> bool:
        """Pause or resume the queue, with its event and control command; False if it already was so.

        The pause record is ``{"at": Redis time in s, "by": by}``.
        """
        k = self.keys
        sec, usec = await self.redis.time()
        info = codec.encode({"at": round(int(sec) + int(usec) / 1e6, 3), "by": by}) if paused else "{}"
        async with self.redis.pipeline(transaction=True) as pipe:
            if paused:
                pipe.set(k.paused, info, nx=True)
            else:
                pipe.delete(k.paused)
            changed = bool((await pipe.execute())[0])
        if changed:
            cmd = "pause" if paused else "resume"
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xadd(k.control, {"cmd": cmd}, maxlen=CONTROL_MAXLEN, approximate=True)
                pipe.xadd(
                    k.events,
                    {"type": "paused" if paused else "resumed", "info": info},
                    maxlen=self.settings.events_maxlen,
                    approximate=True,
                )
                await pipe.execute()
            self._bump()
        return changed

    @unavailable
    async def paused(self) -> str | None:
        """The pause record (JSON) while the queue is paused, else None."""
        value: str | None = await self.redis.get(self.keys.paused)
        return value

    @unavailable
    async def cron_state(self) -> dict[str, dict[str, str]]:
        """Recorded state of every cron job: {name: {"last", "next", "job", "schedule", "task", "startup"}}."""
        raw: dict[str, str] = await self.redis.hgetall(self.keys.cron)
        out: dict[str, dict[str, str]] = {}
        for field_name, value in raw.items():
            name, _, what = field_name.rpartition(":")
            out.setdefault(name, {})[what] = value
        return out

    @unavailable
    async def cron_startup(
        self, name: str, window_ms: int, next_ms: int, description: str, task: str, item: EnqueueItem
    ) -> bool:
        """Enqueue a cron job's startup run unless one was enqueued less than ``window_ms`` ago (Redis clock)."""
        k = self.keys
        job = orjson.dumps(item.wire()).decode()
        args = [k.prefix, self.settings.events_maxlen, name, 0, next_ms, description, task, job, window_ms]
        fired = await self._script("cron", [k.events, k.stats], args)
        if fired:
            self._bump()
        return bool(fired)

    @unavailable
    async def workflow(self, workflow_id: str) -> dict[str, str]:
        """The workflow's hash (``steps`` JSON, ``left``, ``name``, ``created_at``…), {} if there is none."""
        result: dict[str, str] = await self.redis.hgetall(self.keys.workflow(workflow_id))
        return result
