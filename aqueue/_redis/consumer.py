"""The worker's side of the broker: claim, start, wait for work, settle, promote, heartbeat, release, cron ticks.

Stages: stream → claim (take jobs from the ready streams and mark them active, in one script call; block in
XREADGROUP while there is nothing), run (heartbeats renew the running jobs' leases; the control stream brings
``cancel``, ``pause`` and ``resume``), settle (one script call per batch of outcomes); and the scheduler's
promotion of due jobs back to their streams, and the cron loop's ticks, which enqueue.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import orjson

from aqueue._core.wire import Claimed, ClaimTurn, EnqueueItem, Outcome, ScheduleState
from aqueue._redis.base import BrokerBase
from aqueue._redis.guard import unavailable
from aqueue._redis.keys import GROUP

__all__ = ["ClaimMode", "Consumer"]

#: How claim.lua takes messages: new ones (``read``), named ones handed to this worker (``given``), or this
#: worker's own that an earlier run under its name left behind (``taken``).
ClaimMode = Literal["read", "given", "taken"]


class Consumer(BrokerBase):
    """What a worker process calls: its claim loop, settler, heartbeat, scheduler, control follower and cron loop."""

    def _claim_args(self, consumer: str, mode: ClaimMode, lease_ms: int, limits: str) -> tuple[list[str], list[Any]]:
        k, s = self.keys, self.settings
        keys = [k.events, k.stats, k.dead, *k.ready]
        args: list[Any] = [
            k.prefix, GROUP, consumer, s.events_maxlen, s.dead_maxlen,
            int(s.dead_ttl * 1000), s.max_reclaims, mode, lease_ms, int(s.succeeded_ttl * 1000), limits,
        ]  # fmt: skip
        return keys, args

    @staticmethod
    def _claimed(flat: list[Any]) -> list[Claimed]:
        return [
            Claimed(int(flat[i]), flat[i + 1], flat[i + 2], flat[i + 3], flat[i + 4], int(flat[i + 5]), flat[i + 6])
            for i in range(0, len(flat), 7)
        ]

    @unavailable
    async def claim(
        self, consumer: str, quotas: Sequence[int], cursors: Sequence[str], lease_ms: int, limits: str = ""
    ) -> ClaimTurn:
        """Claim up to ``sum(quotas)`` jobs (taking back idle ones first when ``lease_ms`` > 0).

        ``limits`` is '' or the JSON of the queue's rate limits (``Tasks._rate_limits_json``). While the queue is
        paused nothing is claimed. Messages of ``consumer``'s own whose records say it runs them are renewed, not
        started again: they come back in ``ClaimTurn.own``.
        """
        keys, args = self._claim_args(consumer, "read", lease_ms, limits)
        levels = len(keys) - 3  # the priority levels and the group stream
        quotas = [*quotas, *[0] * (levels - len(quotas))]  # a level with no quota still fills what is left
        cursors = [*cursors, *["0-0"] * (levels - len(cursors))]
        args += [*quotas, *cursors]
        reply = await self._script("claim", keys, args)
        cur, flat, changed, paused, own, consumed = reply[:6]
        if flat or changed:
            self._bump()  # only on change: idle workers of one process must not wake each other in a loop
        groups = len(reply) > 6 and bool(reply[6])
        return ClaimTurn(self._claimed(flat), list(cur), bool(paused), self._triples(own), int(consumed), groups)

    @unavailable
    async def start(
        self, consumer: str, delivered: Sequence[tuple[int, str, str]], limits: str = "", taken: bool = False
    ) -> tuple[list[Claimed], bool]:
        """Mark jobs delivered by :meth:`wait_for_work` active and fetch their specs (or, paused, give them back).

        ``taken``: the messages are ``consumer``'s own that it no longer runs (an earlier run under the same name
        left them); they are started as taken back (a reclaim and an attempt counted).
        """
        keys, args = self._claim_args(consumer, "taken" if taken else "given", 0, limits)
        for item in delivered:
            args += item
        _, flat, changed, paused = (await self._script("claim", keys, args))[:4]
        if flat or changed or paused:
            self._bump()
        return self._claimed(flat), bool(paused)

    @staticmethod
    def _triples(flat: list[Any]) -> list[tuple[int, str, str]]:
        return [(int(flat[i]), str(flat[i + 1]), str(flat[i + 2])) for i in range(0, len(flat), 3)]

    @unavailable
    async def wait_for_work(self, consumer: str, timeout: float) -> list[tuple[int, str, str]]:
        """Block until a ready stream has a message (claimed here, at most one per level) or ``timeout``."""
        if self._local is not None:
            await self._local.wait(timeout)
            return []
        streams = {s: ">" for s in self.keys.ready}
        reply = await self.redis.xreadgroup(GROUP, consumer, streams, count=1, block=max(1, int(timeout * 1000)))
        out: list[tuple[int, str, str]] = []
        for stream, entries in reply or ():
            for msg_id, fields in entries:
                out.append((self._stream_index[stream], msg_id, (fields or {}).get("j", "")))
        return out

    @unavailable
    async def waiting(self, task_limits: Sequence[str]) -> int:
        """Jobs waiting to be claimed anywhere: on the ready streams (not yet delivered), parked for a permit of a
        task of ``task_limits``, or in a group waiting for its turn."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in k.ready:
                pipe.xlen(stream)
                pipe.xpending(stream, GROUP)
            for task in task_limits:
                pipe.llen(k.parked(task))
            pipe.get(k.group_jobs)
            replies = await pipe.execute(raise_on_error=False)
        n = 2 * len(k.ready)
        total = 0
        for length, pending in zip(replies[0:n:2], replies[1:n:2], strict=True):
            claimed = int(pending["pending"]) if isinstance(pending, dict) else 0
            total += max(0, (length if isinstance(length, int) else 0) - claimed)
        total += sum(r for r in replies[n:-1] if isinstance(r, int))
        return total + max(0, int(replies[-1] or 0) if not isinstance(replies[-1], Exception) else 0)

    @unavailable
    async def settle(self, consumer: str, outcomes: Sequence[Outcome]) -> list[int]:
        """Settle a batch of ``consumer``'s attempts in one script call; returns [succeeded, retried, dead, skipped]."""
        k, s = self.keys, self.settings
        args: list[Any] = [
            k.prefix, GROUP, s.events_maxlen, s.dead_maxlen, int(s.succeeded_ttl * 1000), int(s.dead_ttl * 1000),
            orjson.dumps([o.wire() for o in outcomes]), consumer,
        ]  # fmt: skip
        keys = [k.events, k.stats, k.scheduled, k.dead, k.wake, *k.ready]
        counts = await self._script("settle", keys, args)
        self._bump()
        return [int(c) for c in counts]

    @unavailable
    async def promote(self, limit: int = 1000) -> ScheduleState:
        """Move due scheduled jobs to their streams; report the next due time (Redis clock)."""
        k = self.keys
        n, nxt, now, wake_id = await self._script(
            "promote",
            [k.scheduled, k.events, k.wake],
            [k.prefix, limit, self.settings.events_maxlen, int(self.settings.succeeded_ttl * 1000)],
        )
        if int(n):
            self._bump()
        return ScheduleState(int(n), None if int(nxt) < 0 else int(nxt), int(now), wake_id)

    @unavailable
    async def wait_wake(self, last_id: str, timeout: float) -> None:
        """Block until a new due time is announced after ``last_id``, or ``timeout`` seconds."""
        if self._local is not None:
            await self._local.wait(timeout)
            return
        await self.redis.xread({self.keys.wake: last_id}, count=1, block=max(1, int(timeout * 1000)))

    @unavailable
    async def heartbeat(self, consumer: str, running: Sequence[tuple[int, str]], info: str, ttl_ms: int) -> list[str]:
        """Renew owned running messages and the worker record; returns message ids no longer owned."""
        k = self.keys
        args: list[Any] = [GROUP, consumer, ttl_ms, info]
        for item in running:
            args += item
        lost = await self._script("heartbeat", [k.workers, k.worker(consumer), *k.ready], args)
        return list(lost)

    @unavailable
    async def release(self, consumer: str) -> int:
        """Put back every message this consumer holds and leave the group; returns jobs put back."""
        k = self.keys
        n = await self._script(
            "release",
            [k.events, k.workers, k.worker(consumer), *k.ready],
            [k.prefix, GROUP, consumer, self.settings.events_maxlen],
        )
        self._bump()
        return int(n)

    @unavailable
    async def last_control_id(self) -> str:
        """Id of the newest control command, or ``0-0``."""
        last = await self.redis.xrevrange(self.keys.control, count=1)
        return str(last[0][0]) if last else "0-0"

    @unavailable
    async def read_control(self, last_id: str, timeout: float) -> list[tuple[str, dict[str, str]]]:
        """Control commands after ``last_id``, waiting up to ``timeout`` seconds for the first one."""
        key = self.keys.control
        if self._local is not None:
            reply = await self.redis.xread({key: last_id}, count=100)
            if not reply:
                await self._local.wait(timeout)
                reply = await self.redis.xread({key: last_id}, count=100)
        else:
            reply = await self.redis.xread({key: last_id}, count=100, block=max(1, int(timeout * 1000)))
        return [(eid, fields) for _, entries in reply or () for eid, fields in entries]

    @unavailable
    async def cron_tick(
        self, name: str, tick_ms: int, next_ms: int, description: str, task: str, item: EnqueueItem | None
    ) -> bool:
        """Enqueue the job of one cron tick unless another worker did (``item`` None: record the schedule only)."""
        k = self.keys
        job = orjson.dumps(item.wire()).decode() if item is not None else ""
        args = [k.prefix, self.settings.events_maxlen, name, tick_ms, next_ms, description, task, job]
        fired = await self._script("cron", [k.events, k.stats], args)
        if fired:
            self._bump()
        return bool(fired)
