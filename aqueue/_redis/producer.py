"""The producer's side of the broker: jobs written, read back, cancelled, and their progress recorded.

Stage: enqueue (writing a job's record and its stream entry, or its scheduled entry, with its events), and the
producer's reads of what became of it. ``progress`` is written from inside a running job (the run stage) and
``cancel`` reaches a running job through the control stream its worker follows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis.exceptions as rexc

from aqueue._core.errors import BrokerUnavailable
from aqueue._core.wire import EnqueueItem
from aqueue._redis.base import BrokerBase
from aqueue._redis.guard import unavailable

__all__ = ["BulkWrite", "Producer"]


@dataclass(frozen=True, slots=True)
class BulkWrite:
    """What :meth:`Producer.enqueue_many` wrote: the duplicates, and after a failure midway, what it did not write."""

    duplicates: dict[int, str]  #: {index: existing job id} for the items that were duplicates of a holder's key
    not_written: list[int]  #: indexes of the items not written, in order ([] when all were)
    error: BrokerUnavailable | None  #: the error that stopped them (None when all were written)

    @property
    def reason(self) -> str:
        """Why the items were not written, for a message (the redis-py error, e.g. ``OOM command not allowed…``)."""
        if self.error is None:
            return ""
        cause = self.error.__cause__
        if isinstance(cause, rexc.OutOfMemoryError):
            return f"Redis is out of memory (maxmemory reached): {cause}"
        return str(cause or self.error)


def _named(item: EnqueueItem) -> bool:
    """Whether the item's job id is the caller's (``job_id``) rather than a fresh one."""
    return bool(item.options and item.options.get("id"))


class Producer(BrokerBase):
    """Enqueue one job, a batch, a workflow's steps, or many pipelined; read records; cancel; record progress."""

    def _enqueue_args(self, items: Sequence[EnqueueItem], workflow: str = "") -> tuple[list[str], list[Any]]:
        k = self.keys
        jobs = orjson.dumps([it.wire() for it in items])
        return [k.events, k.scheduled, k.stats, k.wake], [k.prefix, self.settings.events_maxlen, jobs, workflow]

    @staticmethod
    def _duplicates(flat: list[Any], offset: int = 0) -> dict[int, str]:
        return {int(flat[i]) - 1 + offset: str(flat[i + 1]) for i in range(0, len(flat), 2)}

    @unavailable
    async def enqueue(self, items: Sequence[EnqueueItem], workflow: str = "") -> dict[int, str]:
        """Write jobs in one script call (one round trip); returns {index: existing job id} for duplicates.

        ``workflow`` is '' or the JSON header ``[id, steps JSON, step count, name]`` of a workflow whose steps
        ``items`` are (parents before children).
        """
        dups = await self._script("enqueue", *self._enqueue_args(items, workflow))
        self._bump()
        return self._duplicates(dups)

    async def enqueue_many(self, items: Sequence[EnqueueItem], chunk: int = 500) -> BulkWrite:
        """Write many jobs: one script call per ``chunk`` jobs, all pipelined in one round trip.

        Each call is atomic, the batch is not: when Redis refuses some calls (it reached ``maxmemory`` midway) or
        the connection drops midway, the calls that ran stay written. Raises :class:`BrokerUnavailable` when no job
        was written, or when Redis stopped answering before it could tell which were; else the returned
        :class:`BulkWrite` says which items were not written, and why.
        """
        replies: dict[int, Any] = {}
        try:
            await self._send_chunks(items, chunk, replies)
        except BrokerUnavailable as exc:
            error: BrokerUnavailable = exc
        else:
            return BulkWrite(self._bulk_duplicates(replies), [], None)
        if not replies:  # the connection failed: some calls may have run before it did (raises if Redis is away)
            replies = await self._chunks_written(items, chunk)
        failed = [start for start, reply in sorted(replies.items()) if isinstance(reply, BaseException)]
        missed = [i for start in failed for i in range(start, min(start + chunk, len(items)))]
        if len(missed) == len(items):
            raise error
        return BulkWrite(self._bulk_duplicates(replies), missed, error)

    @staticmethod
    def _bulk_duplicates(replies: dict[int, Any]) -> dict[int, str]:
        dups: dict[int, str] = {}
        for start, flat in replies.items():
            if isinstance(flat, list):
                dups.update(Producer._duplicates(flat, start))
        return dups

    @unavailable
    async def _send_chunks(self, items: Sequence[EnqueueItem], chunk: int, replies: dict[int, Any]) -> None:
        """Send one enqueue call per ``chunk`` items in one pipeline, and put each call's reply (or error) in
        ``replies`` under the index of its first item; raise the first call's error, if any."""
        if not self._sha:
            await self.prepare()
        todo = list(range(0, len(items), chunk))
        for attempt in (1, 2):
            async with self.redis.pipeline(transaction=False) as pipe:
                for start in todo:
                    keys, args = self._enqueue_args(items[start : start + chunk])
                    pipe.execute_command("EVALSHA", self._sha["enqueue"], len(keys), *keys, *args)
                results = await pipe.execute(raise_on_error=False)
            replies.update(zip(todo, results, strict=True))
            todo = [start for start in todo if isinstance(replies[start], rexc.NoScriptError)]
            if not todo or attempt == 2:
                break
            await self.prepare(force=True)  # the script cache was lost (restart, SCRIPT FLUSH): those did not run
        self._bump()
        for start in sorted(replies):
            if isinstance(replies[start], BaseException):
                raise replies[start]

    @unavailable
    async def _chunks_written(self, items: Sequence[EnqueueItem], chunk: int) -> dict[int, Any]:
        """After a pipeline lost its connection, which of its calls ran, as :meth:`_send_chunks` would have put it.

        A call is atomic, so it ran if any record it writes exists. Its items without a record were duplicates: their
        holder is read from the dedup key. A call whose items were all duplicates wrote no record and counts as not
        run: sending its items again resolves them to the same jobs. An item with a caller-chosen id tells nothing
        (its record may be an earlier job's): a call of only such items counts as not run, for the same reason.
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            for it in items:
                pipe.exists(self.keys.job(it.job_id))
            found = await pipe.execute()
        replies: dict[int, Any] = {}
        dups: list[int] = []  # items of calls that ran, without a record of their own
        for start in range(0, len(items), chunk):
            part = range(start, min(start + chunk, len(items)))
            if any(found[i] and not _named(items[i]) for i in part):
                replies[start] = []
                dups += [i for i in part if not found[i]]
            else:
                replies[start] = BrokerUnavailable("the connection dropped before this call ran")
        if dups:
            async with self.redis.pipeline(transaction=False) as pipe:
                for i in dups:
                    pipe.get(self.keys.dedup((items[i].options or {}).get("dk", "")))
                holders = await pipe.execute()
            for i, holder in zip(dups, holders, strict=True):
                if holder:  # flat as the script answers: index in its call (1-based), holder
                    replies[i - i % chunk] += [i % chunk + 1, holder]
        return replies

    @unavailable
    async def get_record(self, job_id: str) -> dict[str, str]:
        """The record hash of a job ({} if there is none)."""
        result: dict[str, str] = await self.redis.hgetall(self.keys.job(job_id))
        return result

    @unavailable
    async def get_records(self, job_ids: Sequence[str]) -> list[dict[str, str]]:
        """The record hashes of many jobs in one round trip ({} where there is none)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(self.keys.job(job_id))
            replies: list[dict[str, str]] = await pipe.execute()
        return replies

    @unavailable
    async def cancel(self, job_ids: Sequence[str], reason: str = "cancelled", running: bool = True) -> list[str]:
        """Cancel jobs; one state per job: ``cancelled`` (now), ``cancelling`` (running: its worker was told),
        ``unknown`` (no record), or ``already-<status>`` for a job that had finished (``already-cancelled``, …).
        With ``running`` False, a running job is left alone: ``running``."""
        k, s = self.keys, self.settings
        out = await self._script(
            "cancel",
            [k.events, k.scheduled, k.stats],
            [k.prefix, s.events_maxlen, int(s.succeeded_ttl * 1000), reason, "1" if running else "0", *job_ids],
        )
        self._bump()
        return [str(x) for x in out]

    @unavailable
    async def progress(self, job_id: str, value: float, message: str) -> bool:
        """Record a running job's progress (and its ``progress`` event); False if the job is not running."""
        k = self.keys
        done = await self._script(
            "progress", [k.events], [k.prefix, self.settings.events_maxlen, job_id, repr(float(value)), message]
        )
        self._bump()
        return bool(done)
