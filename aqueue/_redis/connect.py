"""Open a Redis client from a URL: ``redis://``, ``rediss://``, ``unix://``, ``memory://`` (in-process fakeredis), or
``redis+cluster://`` / ``rediss+cluster://`` (Redis Cluster).

A cluster URL names one or more nodes to discover the cluster from: ``redis+cluster://[user:password@]host:port
[,host:port...]``. Every key of a queue carries the hash tag ``{queue}``, so a queue lives in one slot (and all its
scripts and transactions run on one node) while different queues spread over the cluster.

``memory://NAME`` gives every client in this process that names the same server the same data, so a producer
and a worker in one process share a queue with no Redis installed. It cannot be shared between processes.

Every other URL takes the query options of :data:`URL_OPTIONS` (``?max_connections=50&ssl_ca_certs=/etc/ca.pem``).
They are checked where the URL is given, so a typo is a :class:`ConfigurationError` there, not a failure at first use.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from aqueue._core.errors import ConfigurationError

__all__ = [
    "DEFAULT_MAX_CONNECTIONS", "DEFAULT_TIMEOUT", "DEFAULT_URL", "MAX_BLOCK", "URL_OPTIONS", "Connection",
    "LocalSignal", "check_url", "open_connection", "resolve_url", "waiting_for_pool",
]  # fmt: skip

DEFAULT_URL = "redis://localhost:6379/0"
#: The longest any blocking command waits inside Redis (seconds).
MAX_BLOCK = 30.0
#: How long one broker call may wait for Redis before it fails with BrokerUnavailable (seconds); a blocking read
#: gets its block time on top.
DEFAULT_TIMEOUT = 5.0
#: Connections a standalone client opens at most; beyond them a call waits for a free one.
DEFAULT_MAX_CONNECTIONS = 100


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
    #: Seconds one broker call may wait for Redis (None on ``memory://``, which cannot hang).
    timeout: float | None = None


def resolve_url(url: str | None) -> str:
    """The URL to use: the given one, else ``$AQUEUE_REDIS_URL``, else ``redis://localhost:6379/0``."""
    return url or os.environ.get("AQUEUE_REDIS_URL") or DEFAULT_URL


_SCHEMES = ("memory", "redis", "rediss", "unix", "redis+cluster", "rediss+cluster")

# -- URL options -----------------------------------------------------------------------------------------------


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError("expected seconds > 0")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("expected an integer >= 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("expected an integer >= 0")
    return value


def _boolean(text: str) -> bool:
    if text.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ValueError("expected true or false")
    return text.lower() in ("1", "true", "yes", "on")


def _cert_reqs(text: str) -> str:
    if text.lower() not in ("none", "optional", "required"):
        raise ValueError("expected none, optional or required")
    return text.lower()


#: The query options a Redis URL takes, with how each value is read. ``socket_timeout`` is aqueue's deadline for
#: one call (see ``docs/deployment.md``), not redis-py's per-socket timeout, which would cut blocking reads short.
URL_OPTIONS: dict[str, Callable[[str], Any]] = {
    "socket_timeout": _seconds,
    "socket_connect_timeout": _seconds,
    "socket_keepalive": _boolean,
    "health_check_interval": _non_negative,
    "max_connections": _positive,
    "client_name": str,
    "db": _non_negative,
    "ssl_ca_certs": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "ssl_cert_reqs": _cert_reqs,
    "ssl_check_hostname": _boolean,
    "ssl_ciphers": str,
}


@dataclass(frozen=True)
class _Target:
    """A parsed URL: what redis-py gets, and aqueue's own ``socket_timeout``."""

    scheme: str
    base: str  # the URL without its query
    options: dict[str, Any]  # redis-py keyword arguments from the query
    timeout: float | None  # the URL's socket_timeout
    nodes: list[tuple[str, int]]  # cluster URLs only
    user: str | None
    password: str | None


def _parse(url: str) -> _Target:
    """Split and check ``url``; :class:`ConfigurationError` names what is wrong."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in _SCHEMES:
        raise ConfigurationError(
            f"unsupported Redis URL {url!r}: use redis://, rediss://, unix://, redis+cluster://host:port[,host:port]"
            " or memory:// (in-process)"
        )
    parts = urlsplit(url)
    options = _query_options(parts.query)
    if any(name.startswith("ssl_") for name in options) and not scheme.startswith("rediss"):
        raise ConfigurationError(f"Redis URL options ssl_* need a TLS URL (rediss://), got {scheme}://")
    timeout = options.pop("socket_timeout", None)
    # A ?db= option wins over the path, as in redis-py (which would read a path left in the URL first).
    base = urlunsplit(parts._replace(query="", path="" if "db" in options and scheme != "unix" else parts.path))
    if scheme.endswith("+cluster"):
        nodes, user, password = _cluster_nodes(url, options)
        return _Target(scheme, base, options, timeout, nodes, user, password)
    if scheme in ("redis", "rediss"):
        _check_host_url(url, parts)
    return _Target(scheme, base, options, timeout, [], None, None)


def _query_options(query: str) -> dict[str, Any]:
    """The URL's query options (:data:`URL_OPTIONS`) read, or :class:`ConfigurationError` naming the bad one."""
    options: dict[str, Any] = {}
    for name, text in parse_qsl(query, keep_blank_values=True):
        parse = URL_OPTIONS.get(name)
        if parse is None:
            raise ConfigurationError(f"Redis URL option {name!r} is not supported: use {', '.join(URL_OPTIONS)}")
        try:
            options[name] = parse(text)
        except ValueError as exc:
            raise ConfigurationError(f"Redis URL option {name}={text!r}: {exc}") from None
    return options


def _check_host_url(url: str, parts: SplitResult) -> None:
    """Check the port and the database number of a ``redis://`` or ``rediss://`` URL."""
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise ConfigurationError(f"Redis URL {url!r}: {exc}") from None
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ConfigurationError(f"Redis URL {url!r}: the path must be a database number, got {parts.path!r}")


def _cluster_nodes(url: str, options: dict[str, Any]) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """The startup nodes, user and password of a cluster URL, or :class:`ConfigurationError`."""
    parts = urlsplit(url)
    hosts = parts.netloc.rsplit("@", 1)[-1]
    if parts.path not in ("", "/", "/0") or "db" in options:
        raise ConfigurationError(f"cluster URL {url!r}: Redis Cluster has only database 0 (no path, no db option)")
    nodes: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(f"cluster URL {url!r}: expected host:port[,host:port...], got {item!r}")
        nodes.append((host.strip("[]"), int(port)))
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return nodes, user, password


def check_url(url: str) -> str:
    """The URL's scheme, or :class:`ConfigurationError` if aqueue cannot connect to it (unknown scheme or option, a
    bad option value, port or database number)."""
    return _parse(url).scheme


# -- the pool --------------------------------------------------------------------------------------------------

_pool_wait: ContextVar[bool] = ContextVar("aqueue_pool_wait", default=False)


def waiting_for_pool() -> bool:
    """Whether the current task's last connection request is still waiting for a free connection of a full pool
    (so a deadline that ran out then found a busy client, not a silent Redis)."""
    return _pool_wait.get()


class _WaitingPool(aioredis.BlockingConnectionPool):
    """A bounded pool whose callers wait for a free connection (redis-py's default pool raises instead), and which
    tells the broker's deadline whether a caller was still waiting for one."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        _pool_wait.set(True)
        return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]

    async def ensure_connection(self, connection: Any) -> None:
        _pool_wait.set(False)  # acquired: from here on, waiting is waiting for Redis
        await super().ensure_connection(connection)


# -- opening ---------------------------------------------------------------------------------------------------


def open_connection(url: str, timeout: float | None = None) -> Connection:
    """Create a client for ``url`` (connections open lazily on first command).

    ``timeout`` is the deadline of one broker call in seconds; None takes the URL's ``socket_timeout``, else
    :data:`DEFAULT_TIMEOUT`.
    """
    target = _parse(url)
    if target.scheme == "memory":
        import fakeredis

        name = url.split("://", 1)[1] or "default"
        mem = _memory_servers.get(name)
        if mem is None:
            mem = _memory_servers[name] = _MemoryServer(fakeredis.FakeServer())
        fake: aioredis.Redis = fakeredis.FakeAsyncRedis(server=mem.server, decode_responses=True)
        return Connection(fake, url, mem.signal)
    deadline = timeout or target.timeout or DEFAULT_TIMEOUT
    # No socket timeout: with one, redis-py wraps every send in asyncio.wait_for (a task per command on 3.11) and
    # every read in a timeout context, which measured 157 -> 236 us per PING on a 2-core box, and it would cut
    # blocking reads short. The broker bounds each call instead (one asyncio.timeout, block time included). A dead
    # peer of an idle connection is found by TCP keepalive (idle 10 s, then 3 probes 5 s apart).
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": None,
        "socket_connect_timeout": 5.0,
        "socket_keepalive": True,
        "socket_keepalive_options": _KEEPALIVE,
        **target.options,
    }
    if target.scheme.endswith("+cluster"):
        # redis-py's cluster pool raises MaxConnectionsError when full rather than waiting, so it stays unbounded
        # unless the URL caps it (per node).
        options.setdefault("max_connections", 2**31)
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            username=target.user,
            password=target.password,
            ssl=target.scheme == "rediss+cluster",
            **options,
        )
        # The broker uses the commands both clients share; RedisCluster routes each by its key's slot.
        return Connection(cast(aioredis.Redis, cluster), url, None, cluster=True, timeout=deadline)
    # Bounded and waiting: redis-py >= 6 caps a pool at 100 and raises MaxConnectionsError beyond, which made a busy
    # client look like a Redis outage. 1,000 concurrent enqueues took 0.3-0.4 s cold with 100 connections, 1.7 s with
    # one connection each (benchmarked on a 2-core box). Blocking reads hold a connection each (up to three per
    # worker, one per Tasks for results), far below the cap.
    options.setdefault("max_connections", DEFAULT_MAX_CONNECTIONS)
    options.setdefault("health_check_interval", 30)
    pool = _WaitingPool.from_url(target.base, timeout=None, **options)
    return Connection(aioredis.Redis.from_pool(pool), url, None, timeout=deadline)


def _keepalive_options() -> dict[int, int]:
    options = {"TCP_KEEPIDLE": 10, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}
    return {getattr(socket, name): value for name, value in options.items() if hasattr(socket, name)}


_KEEPALIVE = _keepalive_options()
