"""Open a Redis client from a URL: ``redis://``, ``rediss://``, ``unix://``, ``memory://`` (in-process fakeredis), or
``redis+cluster://`` / ``rediss+cluster://`` (Redis Cluster).

A cluster URL names one or more nodes to discover the cluster from: ``redis+cluster://[user:password@]host:port
[,host:port...]``. Every key of a queue carries the hash tag ``{queue}``, so a queue lives in one slot (and all its
scripts and transactions run on one node) while different queues spread over the cluster.

``memory://NAME`` gives every client in this process that names the same server the same data, so a producer
and a worker in one process share a queue with no Redis installed. It cannot be shared between processes.
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from aqueue.errors import ConfigurationError

__all__ = ["DEFAULT_URL", "MAX_BLOCK", "Connection", "LocalSignal", "check_url", "open_connection", "resolve_url"]

DEFAULT_URL = "redis://localhost:6379/0"
#: The longest any blocking command waits inside Redis (seconds).
MAX_BLOCK = 30.0


class LocalSignal:
    """Wakes in-process waiters when a ``memory://`` server changes.

    fakeredis does not block on XREADGROUP, so on ``memory://`` the broker waits on this instead of in Redis.
    """

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    def bump(self) -> None:
        """Wake every current waiter."""
        waiters, self._waiters = self._waiters, set()
        for fut in waiters:
            if not fut.done():
                fut.get_loop().call_soon_threadsafe(_resolve, fut)

    async def wait(self, timeout: float) -> None:
        """Return at the next :meth:`bump` or after ``timeout`` seconds."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        try:
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(fut)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


@dataclass
class _MemoryServer:
    server: Any
    signal: LocalSignal = field(default_factory=LocalSignal)


_memory_servers: dict[str, _MemoryServer] = {}


@dataclass(frozen=True)
class Connection:
    """An open client and, on ``memory://``, the in-process signal that replaces blocking reads."""

    client: aioredis.Redis
    url: str
    local: LocalSignal | None
    #: True for a ``redis+cluster://`` client (a RedisCluster behind the Redis type).
    cluster: bool = False


def resolve_url(url: str | None) -> str:
    """The URL to use: the given one, else ``$AQUEUE_REDIS_URL``, else ``redis://localhost:6379/0``."""
    return url or os.environ.get("AQUEUE_REDIS_URL") or DEFAULT_URL


_SCHEMES = ("memory", "redis", "rediss", "unix", "redis+cluster", "rediss+cluster")


def check_url(url: str) -> str:
    """The URL's scheme, or :class:`ConfigurationError` if aqueue cannot connect to it."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in _SCHEMES:
        raise ConfigurationError(
            f"unsupported Redis URL {url!r}: use redis://, rediss://, unix://, redis+cluster://host:port[,host:port]"
            " or memory:// (in-process)"
        )
    if scheme.endswith("+cluster"):
        _cluster_nodes(url)
    return scheme


def _cluster_nodes(url: str) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """The startup nodes, user and password of a cluster URL, or :class:`ConfigurationError`."""
    parts = urlsplit(url)
    hosts = parts.netloc.rsplit("@", 1)[-1]
    if parts.path not in ("", "/", "/0") or parts.query:
        raise ConfigurationError(f"cluster URL {url!r}: Redis Cluster has only database 0 and takes no options")
    nodes: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(f"cluster URL {url!r}: expected host:port[,host:port...], got {item!r}")
        nodes.append((host.strip("[]"), int(port)))
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return nodes, user, password


def open_connection(url: str) -> Connection:
    """Create a client for ``url`` (connections open lazily on first command)."""
    scheme = check_url(url)
    if scheme == "memory":
        import fakeredis

        name = url.split("://", 1)[1] or "default"
        mem = _memory_servers.get(name)
        if mem is None:
            mem = _memory_servers[name] = _MemoryServer(fakeredis.FakeServer())
        fake: aioredis.Redis = fakeredis.FakeAsyncRedis(server=mem.server, decode_responses=True)
        return Connection(fake, url, mem.signal)
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": None,
        "socket_connect_timeout": 5.0,
        "socket_keepalive": True,
        "socket_keepalive_options": _KEEPALIVE,
    }
    if scheme.endswith("+cluster"):
        nodes, user, password = _cluster_nodes(url)
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in nodes],
            username=user,
            password=password,
            ssl=scheme == "rediss+cluster",
            # Per node, and it raises rather than waits when reached; unbounded like the standalone client's pool
            # (many result() waits each hold a connection for a blocking read).
            max_connections=2**31,
            **options,
        )
        # The broker uses the commands both clients share; RedisCluster routes each by its key's slot.
        return Connection(cast(aioredis.Redis, cluster), url, None, cluster=True)
    # No socket timeout: with one, redis-py wraps every send in asyncio.wait_for (a task per command on 3.11) and
    # every read in a timeout context, which measured 157 -> 236 us per PING on a 2-core box. A dead peer is found
    # by TCP keepalive instead (idle 10 s, then 3 probes 5 s apart); a restarted Redis resets the connection at
    # once. Blocking reads carry their own server-side timeouts (at most MAX_BLOCK).
    client = aioredis.Redis.from_url(url, health_check_interval=30, **options)
    return Connection(client, url, None)


def _keepalive_options() -> dict[int, int]:
    options = {"TCP_KEEPIDLE": 10, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}
    return {getattr(socket, name): value for name, value in options.items() if hasattr(socket, name)}


_KEEPALIVE = _keepalive_options()
