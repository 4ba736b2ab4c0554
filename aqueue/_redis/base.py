"""What every part of the broker shares: the client, its circuit breaker, and the scripts called by SHA.

Stage: none of its own; the role classes built on :class:`BrokerBase` (:mod:`~aqueue._redis.producer` for enqueue,
:mod:`~aqueue._redis.consumer` for claim → run → settle, :mod:`~aqueue._redis.events` for events,
:mod:`~aqueue._redis.admin` for inspection and operator actions) call Redis through it. On ``memory://`` it also
holds the in-process signal that stands in for blocking reads, bumped after every write.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.exceptions as rexc

from aqueue._core.settings import QueueSettings
from aqueue._redis.breaker import CircuitBreaker
from aqueue._redis.connect import Connection
from aqueue._redis.guard import redacted, unavailable
from aqueue._redis.keys import GROUP, Keys
from aqueue._redis.scripts import SOURCES

__all__ = ["BrokerBase"]


class BrokerBase:
    """The client of one queue, its breaker, its key names and settings, and its loaded scripts."""

    def __init__(self, conn: Connection, keys: Keys, settings: QueueSettings) -> None:
        self._conn = conn
        # Typed as Any on purpose: redis-py's annotations describe replies as unions of bytes, str and int, while
        # this client decodes every reply to str (decode_responses=True); the wrappers give the real types.
        self.redis: Any = conn.client
        self.keys = keys
        self.settings = settings
        self._local = conn.local
        self._sha: dict[str, str] = {}
        #: Reports an outage once, fails calls fast while Redis is down, probes for its return.
        self.breaker = CircuitBreaker(redacted(conn.url))
        self._stream_index = {name: i + 1 for i, name in enumerate(keys.ready)}

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
            shas = [await self.redis.script_load(source) for source in SOURCES.values()]
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                for source in SOURCES.values():
                    pipe.script_load(source)
                shas = await pipe.execute()
        self._sha = dict(zip(SOURCES, shas, strict=True))

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
        """Create the consumer group on every ready stream and the group stream (idempotent)."""
        for stream in self.keys.ready:
            try:
                await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except rexc.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def close(self) -> None:
        """Close the client's connections."""
        await self.redis.aclose()
