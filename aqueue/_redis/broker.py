"""The broker: the only code that issues Redis commands.

Every state change is one Lua script (loaded once, called by SHA) that also writes its event. Blocking waits
(idle workers, scheduler wake-ups, event readers) block inside Redis; on ``memory://`` they wait on an in-process
signal instead, because fakeredis does not block.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, ParamSpec, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import orjson
import redis.exceptions as rexc

from aqueue._core import codec
from aqueue._core.errors import AqueueError, BrokerUnavailable, ConfigurationError, PermissionDenied
from aqueue._core.info import QueueInfo
from aqueue._core.settings import QueueSettings
from aqueue._core.wire import Claimed, ClaimTurn, EnqueueItem, Outcome, QueueSample, ScheduleState
from aqueue._redis.breaker import CircuitBreaker, judge
from aqueue._redis.connect import Connection, waiting_for_pool
from aqueue._redis.keys import GROUP, Keys

__all__ = ["Broker", "BulkWrite"]

P = ParamSpec("P")
T = TypeVar("T")

#: Approximate cap of the stream that keeps scaling decisions apart from the (much busier) events stream.
SCALING_MAXLEN = 1000

_SCRIPTS = (
    "enqueue", "claim", "settle", "promote", "heartbeat", "release", "snapshot", "requeue", "cancel", "progress",
    "cleanup", "cron",
)  # fmt: skip

#: How claim.lua takes messages: new ones (``read``), named ones handed to this worker (``given``), or this
#: worker's own that an earlier run under its name left behind (``taken``).
ClaimMode = Literal["read", "given", "taken"]

#: Approximate cap of the control stream (worker commands: cancel a running job, resume).
CONTROL_MAXLEN = 1000


def _load_sources() -> dict[str, str]:
    lua = resources.files("aqueue._redis").joinpath("lua")
    prelude = lua.joinpath("_prelude.lua").read_text()
    return {name: prelude + "\n" + lua.joinpath(f"{name}.lua").read_text() for name in _SCRIPTS}


_SOURCES = _load_sources()


_inside: ContextVar[bool] = ContextVar("aqueue_broker_call", default=False)


def _deadline_error(broker: Broker, seconds: float) -> tuple[BrokerUnavailable, bool]:
    """The error of a call whose deadline ran out, and whether it counts as an outage (not when the call was still
    waiting for a free connection)."""
    within = f"within {round(seconds, 1):g} s"
    if waiting_for_pool():
        return BrokerUnavailable(f"no free Redis connection {within}: every connection of the client is in use (raise "
                                 "the URL's max_connections)"), False  # fmt: skip
    return BrokerUnavailable(f"Redis at {broker.breaker.where} did not answer {within}"), True


def _block_seconds(fn: Callable[..., Any]) -> Callable[[tuple[Any, ...], dict[str, Any]], float] | None:
    """How much longer than the deadline a call of ``fn`` may take: a blocking read's ``timeout`` (its block time
    in Redis), a bulk write's 0.1 ms per item; None for every other method."""
    names = list(inspect.signature(fn).parameters)
    if "timeout" in names:
        at = names.index("timeout")
        return lambda args, kwargs: float(kwargs["timeout"] if "timeout" in kwargs else args[at])
    if "items" in names:
        at = names.index("items")
        return lambda args, kwargs: len(kwargs["items"] if "items" in kwargs else args[at]) * 1e-4
    return None


def unavailable(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Pass a broker method through its circuit breaker within its deadline (``Connection.timeout``, plus a blocking
    read's block time), and turn redis-py failures into aqueue errors (:func:`~aqueue._redis.breaker.judge`):
    :class:`BrokerUnavailable` with the cause attached for an outage or a deadline that ran out (quiet once the
    breaker has reported the outage), a clear error for the failures that retrying cannot help."""
    extra = _block_seconds(fn)

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        if _inside.get():  # a broker call made by another one (e.g. reloading scripts): the outer one counts
            return await fn(*args, **kwargs)
        broker = cast(Broker, args[0])
        breaker = broker.breaker
        breaker.before_call()
        seconds = broker._conn.timeout
        if seconds is not None and extra is not None:
            seconds += extra(args, kwargs)
        token = _inside.set(True)
        try:
            async with asyncio.timeout(seconds):
                result = await fn(*args, **kwargs)
        except AqueueError:
            raise
        except TimeoutError as exc:
            if seconds is None or isinstance(exc, rexc.RedisError):  # not our deadline
                raise
            error, outage = _deadline_error(broker, seconds)
            if outage:
                error.quiet = breaker.failed(exc)
            raise error from None
        except Exception as exc:
            raise await _judged(broker, exc, (*args, *kwargs.values())) from exc
        finally:
            _inside.reset(token)
        breaker.succeeded()
        return result

    return wrapper


async def _judged(broker: Broker, exc: Exception, request: tuple[Any, ...]) -> Exception:
    """The error to raise for ``exc``, a failure of a call with arguments ``request``, after telling the breaker what
    it means."""
    verdict = judge(exc, functools.partial(_script_command, broker))
    if verdict.kind == "ask":
        error = await _dropped(broker, exc, request)
        if error is not None:
            return error
    if verdict.kind in ("down", "ask"):
        assert isinstance(verdict.error, BrokerUnavailable)
        verdict.error.quiet = broker.breaker.failed(exc)
    elif verdict.kind == "answered":
        broker.breaker.succeeded()  # any reply proves Redis answers: closes an open circuit
        if isinstance(verdict.error, ConfigurationError) and "Protocol error" in str(exc):
            await _drop_idle(broker)  # Redis closes a connection after a protocol error; redis-py pooled it again
    return verdict.error or exc


async def _dropped(broker: Broker, exc: Exception, request: tuple[Any, ...]) -> Exception | None:
    """Redis dropped the connection of a call: the error to raise if that was no outage, after asking Redis."""
    problem = await _probe(broker)
    if problem is None:
        broker.breaker.succeeded()
        if "while writing" in str(exc) and _size(request) >= _MIN_BULK_LIMIT:
            # Redis answers on another connection: it dropped this request. An argument bigger than its
            # proto-max-bulk-len makes it reply with a protocol error and close the connection while we still send.
            return ConfigurationError(f"Redis closed the connection while receiving this request, yet it answers: "
                                      f"the request is probably bigger than Redis' proto-max-bulk-len (512 MB by "
                                      f"default) ({exc})")  # fmt: skip
        return BrokerUnavailable(f"Redis dropped the connection ({exc}) and answers again; nothing was done")
    seen = judge(problem, functools.partial(_script_command, broker))
    if isinstance(seen.error, ConfigurationError | PermissionDenied):
        return seen.error  # e.g. the TLS alert of a server that wants a client certificate
    url, why = broker._conn.url, str(problem)
    if "while reading" in why and "reset by peer" in why and url.startswith("rediss") and "ssl_certfile" not in url:
        # Connected (TLS handshake done) twice, and reset instead of an answer, the alert lost in the reset:
        # what a Redis with tls-auth-clients does to a client without a certificate.
        return ConfigurationError(f"Redis accepts the TLS connection, then resets it ({exc}): a Redis with "
                                  "tls-auth-clients needs the URL's ssl_certfile and ssl_keyfile")  # fmt: skip
    return None


#: The smallest proto-max-bulk-len Redis accepts (1 MB): a smaller request cannot exceed it.
_MIN_BULK_LIMIT = 1 << 20


def _size(value: Any, depth: int = 0) -> int:
    """About how many bytes ``value`` (a call's arguments) sends to Redis, for strings and sequences of them."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, EnqueueItem):
        return len(value.spec)
    if isinstance(value, list | tuple) and depth < 3:
        return sum(_size(v, depth + 1) for v in value)
    return 0


async def _drop_idle(broker: Broker) -> None:
    pool = getattr(broker.redis, "connection_pool", None)
    if pool is not None:
        await pool.disconnect(inuse_connections=False)


def _script_command(broker: Broker, sha: str, line: int) -> str | None:
    """The Redis command called at ``line`` of the loaded script ``sha``, e.g. ``TIME (in aqueue's enqueue script)``."""
    name = next((name for name, known in broker._sha.items() if known == sha), None)
    lines = _SOURCES[name].splitlines() if name is not None else []
    found = re.search(r"redis\.p?call\(\s*['\"](\w+)", lines[line - 1]) if 0 < line <= len(lines) else None
    return f"{found.group(1).upper()} (in aqueue's {name} script)" if found else None


async def _probe(broker: Broker) -> Exception | None:
    """None if Redis answers a PING within the deadline, else what went wrong."""
    try:
        async with asyncio.timeout(broker._conn.timeout):
            await broker.redis.ping()
    except Exception as exc:
        return exc
    return None


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True, slots=True)
class BulkWrite:
    """What :meth:`Broker.enqueue_many` wrote: the duplicates, and after a failure midway, what it did not write."""

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


class Broker:
    """Typed wrappers around the queue's Redis commands and Lua scripts."""

    def __init__(self, conn: Connection, keys: Keys, settings: QueueSettings) -> None:
        self._conn = conn
        # Typed as Any on purpose: redis-py's annotations describe replies as unions of bytes, str and int, while
        # this client decodes every reply to str (decode_responses=True); the wrappers below give the real types.
        self.redis: Any = conn.client
        self.keys = keys
        self.settings = settings
        self._local = conn.local
        self._sha: dict[str, str] = {}
        #: Reports an outage once, fails calls fast while Redis is down, probes for its return.
        self.breaker = CircuitBreaker(_redacted(conn.url))
        self._stream_index = {name: i + 1 for i, name in enumerate(keys.streams)}

    @property
    def is_local(self) -> bool:
        """True on ``memory://``, where the data lives in this process only."""
        return self._local is not None

    def _bump(self) -> None:
        if self._local is not None:
            self._local.bump()

    @unavailable
    async def prepare(self, force: bool = False) -> None:
        """Load the scripts (so every call is one EVALSHA round trip) after checking Redis answers."""
        if self._sha and not force:
            return
        if self._conn.cluster:  # SCRIPT LOAD goes to every primary, one script at a time (no pipelining)
            shas = [await self.redis.script_load(source) for source in _SOURCES.values()]
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                for source in _SOURCES.values():
                    pipe.script_load(source)
                shas = await pipe.execute()
        self._sha = dict(zip(_SOURCES, shas, strict=True))

    async def _script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Call a script by SHA; if Redis lost its script cache (restart, SCRIPT FLUSH), load again once."""
        if not self._sha:
            await self.prepare()
        try:
            return await self.redis.evalsha(self._sha[name], len(keys), *keys, *args)
        except rexc.NoScriptError:
            await self.prepare(force=True)
            return await self.redis.evalsha(self._sha[name], len(keys), *keys, *args)

    @unavailable
    async def ensure_groups(self) -> None:
        """Create the consumer group on every ready stream (idempotent)."""
        for stream in self.keys.streams:
            try:
                await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except rexc.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def close(self) -> None:
        """Close the client's connections."""
        await self.redis.aclose()

    # -- producer side ---------------------------------------------------------------------------------------

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
                dups.update(Broker._duplicates(flat, start))
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
        run: sending its items again resolves them to the same jobs.
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            for it in items:
                pipe.exists(self.keys.job(it.job_id))
            found = await pipe.execute()
        replies: dict[int, Any] = {}
        dups: list[int] = []  # items of calls that ran, without a record of their own
        for start in range(0, len(items), chunk):
            part = range(start, min(start + chunk, len(items)))
            if any(found[i] for i in part):
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

    # -- worker side -----------------------------------------------------------------------------------------

    def _claim_args(self, consumer: str, mode: ClaimMode, lease_ms: int, limits: str) -> tuple[list[str], list[Any]]:
        k, s = self.keys, self.settings
        keys = [k.events, k.stats, k.dead, *k.streams]
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

        ``limits`` is '' or the JSON of the queue's rate limits (:meth:`Tasks.rate_limits_json`). While the queue is
        paused nothing is claimed. Messages of ``consumer``'s own whose records say it runs them are renewed, not
        started again: they come back in ``ClaimTurn.own``.
        """
        keys, args = self._claim_args(consumer, "read", lease_ms, limits)
        args += [*quotas, *cursors]
        cur, flat, changed, paused, own, consumed = await self._script("claim", keys, args)
        if flat or changed:
            self._bump()  # only on change: idle workers of one process must not wake each other in a loop
        return ClaimTurn(self._claimed(flat), list(cur), bool(paused), self._triples(own), int(consumed))

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
        _, flat, changed, paused, _, _ = await self._script("claim", keys, args)
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
        streams = {s: ">" for s in self.keys.streams}
        reply = await self.redis.xreadgroup(GROUP, consumer, streams, count=1, block=max(1, int(timeout * 1000)))
        out: list[tuple[int, str, str]] = []
        for stream, entries in reply or ():
            for msg_id, fields in entries:
                out.append((self._stream_index[stream], msg_id, (fields or {}).get("j", "")))
        return out

    @unavailable
    async def settle(self, consumer: str, outcomes: Sequence[Outcome]) -> list[int]:
        """Settle a batch of ``consumer``'s attempts in one script call; returns [succeeded, retried, dead, skipped]."""
        k, s = self.keys, self.settings
        args: list[Any] = [
            k.prefix, GROUP, s.events_maxlen, s.dead_maxlen, int(s.succeeded_ttl * 1000), int(s.dead_ttl * 1000),
            orjson.dumps([o.wire() for o in outcomes]), consumer,
        ]  # fmt: skip
        keys = [k.events, k.stats, k.scheduled, k.dead, k.wake, *k.streams]
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
        lost = await self._script("heartbeat", [k.workers, k.worker(consumer), *k.streams], args)
        return list(lost)

    @unavailable
    async def release(self, consumer: str) -> int:
        """Put back every message this consumer holds and leave the group; returns jobs put back."""
        k = self.keys
        n = await self._script(
            "release",
            [k.events, k.workers, k.worker(consumer), *k.streams],
            [k.prefix, GROUP, consumer, self.settings.events_maxlen],
        )
        self._bump()
        return int(n)

    # -- readers ---------------------------------------------------------------------------------------------

    @unavailable
    async def sample(self, worker_ttl_ms: int) -> QueueSample:
        """Backlog per level, pending, oldest waiting entry, due jobs, live workers and counters: one call."""
        k = self.keys
        r = await self._script("snapshot", [k.scheduled, k.stats, k.workers, *k.streams], [GROUP, worker_ttl_ms])
        waiting: dict[str, int] = {}
        pending = 0
        oldest: int | None = None
        for i, name in enumerate(self.settings.priority_names):
            w, p, o = (int(v) for v in r[6 + 3 * i : 9 + 3 * i])
            waiting[name] = w
            pending += p
            if o >= 0 and w > 0:
                oldest = o if oldest is None else min(oldest, o)
        now, due, workers, enqueued, succeeded, failed = (int(v) for v in r[:6])
        return QueueSample(now, due, workers, enqueued, succeeded, failed, waiting, pending, oldest)

    @unavailable
    async def emit(self, fields: dict[str, str | int | float]) -> str:
        """Append an event that is not a job state change (e.g. ``scaling``) to the events stream."""
        event_id: str = await self.redis.xadd(
            self.keys.events, fields, maxlen=self.settings.events_maxlen, approximate=True
        )
        self._bump()
        return event_id

    @unavailable
    async def last_event_id(self) -> str:
        """Id of the newest event, or ``0-0``."""
        last = await self.redis.xrevrange(self.keys.events, count=1)
        return str(last[0][0]) if last else "0-0"

    @unavailable
    async def read_events(self, last_id: str, count: int, timeout: float) -> list[tuple[str, dict[str, str]]]:
        """Events after ``last_id``, waiting up to ``timeout`` seconds for the first one."""
        if self._local is not None:
            reply = await self.redis.xread({self.keys.events: last_id}, count=count)
            if not reply:
                await self._local.wait(timeout)
                reply = await self.redis.xread({self.keys.events: last_id}, count=count)
        else:
            reply = await self.redis.xread({self.keys.events: last_id}, count=count, block=max(1, int(timeout * 1000)))
        return [(eid, fields) for _, entries in reply or () for eid, fields in entries]

    @unavailable
    async def info(self) -> QueueInfo:
        """Depths per level, claimed, scheduled, dead-letter size, live workers and lifetime counters."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in k.streams:
                pipe.xlen(stream)
                pipe.xpending(stream, GROUP)
            pipe.zcard(k.scheduled)
            pipe.xlen(k.dead)
            pipe.zrange(k.workers, 0, -1)
            pipe.hgetall(k.stats)
            replies = await pipe.execute(raise_on_error=False)
        queued: dict[str, int] = {}
        active = 0
        for i, name in enumerate(self.settings.priority_names):
            length, pend = replies[2 * i], replies[2 * i + 1]
            claimed = int(pend["pending"]) if isinstance(pend, dict) else 0
            queued[name] = max(0, (int(length) if isinstance(length, int) else 0) - claimed)
            active += claimed
        scheduled, dead, worker_ids, stats = replies[2 * len(k.streams) :]
        workers: list[dict[str, Any]] = []
        if worker_ids:
            async with self.redis.pipeline(transaction=False) as pipe:
                for wid in worker_ids:
                    pipe.hget(k.worker(wid), "info")
                infos = await pipe.execute()
            workers = [codec.decode(i) for i in infos if i]
        return QueueInfo(
            queued=queued,
            active=active,
            scheduled=int(scheduled),
            dead=int(dead),
            workers=workers,
            stats={key: int(v) for key, v in (stats or {}).items()},
        )

    @unavailable
    async def dead_letters(self, limit: int = 100) -> list[tuple[str, dict[str, str]]]:
        """The newest dead-letter entries, newest first."""
        entries: list[tuple[str, dict[str, str]]] = await self.redis.xrevrange(self.keys.dead, count=limit)
        return entries

    # -- web

    @unavailable
    async def ping(self) -> None:
        """Return once Redis answers; :class:`BrokerUnavailable` if it does not."""
        await self.redis.ping()

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
    async def record_scaling(self, fields: dict[str, str | int | float]) -> str:
        """Write a ``scaling`` event, and the same entry to the short scaling stream, in one transaction."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.keys.events, fields, maxlen=self.settings.events_maxlen, approximate=True)
            pipe.xadd(self.keys.scaling, fields, maxlen=SCALING_MAXLEN, approximate=True)
            event_id, _ = await pipe.execute()
        self._bump()
        return str(event_id)

    @unavailable
    async def scaling_events(self, count: int) -> list[tuple[str, dict[str, str]]]:
        """The newest scaling decisions, newest first."""
        entries: list[tuple[str, dict[str, str]]] = await self.redis.xrevrange(self.keys.scaling, count=count)
        return entries

    @unavailable
    async def events_before(self, before: str | None, count: int) -> list[tuple[str, dict[str, str]]]:
        """Up to ``count`` events older than the id ``before`` (the newest when None), newest first."""
        top = "+" if before is None else f"({before}"
        entries: list[tuple[str, dict[str, str]]] = await self.redis.xrevrange(
            self.keys.events, max=top, min="-", count=count
        )
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
    async def requeue(self, jobs: Sequence[tuple[str, ...]], source: str) -> tuple[list[str], list[tuple[str, str]]]:
        """Put dead or failed jobs back on their streams: ``jobs`` are (job id, its dead-letter entry ids…).

        Returns the job ids requeued and (job id, reason) for each one skipped.
        """
        k = self.keys
        requeued, flat = await self._script(
            "requeue",
            [k.events, k.scheduled, k.dead, k.stats],
            [k.prefix, self.settings.events_maxlen, source, orjson.dumps([list(j) for j in jobs])],
        )
        if requeued:
            self._bump()
        return list(requeued), [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]

    # -- job control -----------------------------------------------------------------------------------------

    @unavailable
    async def cancel(self, job_ids: Sequence[str], reason: str = "cancelled") -> list[str]:
        """Cancel jobs; one state per job: ``cancelled`` (now), ``cancelling`` (running: its worker was told),
        ``unknown`` (no record), or ``already-<status>`` for a job that had finished (``already-cancelled``, …)."""
        k, s = self.keys, self.settings
        out = await self._script(
            "cancel",
            [k.events, k.scheduled, k.stats],
            [k.prefix, s.events_maxlen, int(s.succeeded_ttl * 1000), reason, *job_ids],
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

    @unavailable
    async def cron_state(self) -> dict[str, dict[str, str]]:
        """Recorded state of every cron job: {name: {"last", "next", "job", "schedule", "task"}}."""
        raw: dict[str, str] = await self.redis.hgetall(self.keys.cron)
        out: dict[str, dict[str, str]] = {}
        for field_name, value in raw.items():
            name, _, what = field_name.rpartition(":")
            out.setdefault(name, {})[what] = value
        return out

    @unavailable
    async def workflow(self, workflow_id: str) -> dict[str, str]:
        """The workflow's hash (``steps`` JSON, ``left``, ``name``, ``created_at``…), {} if there is none."""
        result: dict[str, str] = await self.redis.hgetall(self.keys.workflow(workflow_id))
        return result
