"""The guard every broker call passes: its deadline, the circuit breaker, and redis-py failures sorted into aqueue
errors.

Stage: all of them (enqueue → stream → claim → run → settle → events). Each broker method that talks to Redis is
decorated with :func:`unavailable`: it runs under one ``asyncio.timeout`` (the connection's deadline, plus a
blocking read's block time), is refused fast while the breaker is open, and turns what redis-py raises into
:class:`BrokerUnavailable` (an outage, quiet once reported), :class:`PermissionDenied` or a clear
:class:`ConfigurationError` (:func:`~aqueue._redis.breaker.judge`). On the hot path it costs one context variable
set and reset and one ``asyncio.timeout`` per call, nothing per job.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, ParamSpec, Protocol, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import redis.exceptions as rexc

from aqueue._core.errors import AqueueError, BrokerUnavailable, ConfigurationError, PermissionDenied
from aqueue._core.wire import EnqueueItem
from aqueue._redis.breaker import CircuitBreaker, judge
from aqueue._redis.connect import Connection, waiting_for_pool
from aqueue._redis.scripts import command_at

__all__ = ["Guarded", "redacted", "unavailable"]

P = ParamSpec("P")
T = TypeVar("T")


class Guarded(Protocol):
    """What the guard reads of the broker whose method it wraps (:class:`~aqueue._redis.base.BrokerBase`)."""

    redis: Any
    breaker: CircuitBreaker
    _conn: Connection
    _sha: dict[str, str]


_inside: ContextVar[bool] = ContextVar("aqueue_broker_call", default=False)


def _deadline_error(broker: Guarded, seconds: float) -> tuple[BrokerUnavailable, bool]:
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
        broker = cast(Guarded, args[0])
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


async def _judged(broker: Guarded, exc: Exception, request: tuple[Any, ...]) -> Exception:
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


async def _dropped(broker: Guarded, exc: Exception, request: tuple[Any, ...]) -> Exception | None:
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


async def _drop_idle(broker: Guarded) -> None:
    pool = getattr(broker.redis, "connection_pool", None)
    if pool is not None:
        await pool.disconnect(inuse_connections=False)


def _script_command(broker: Guarded, sha: str, line: int) -> str | None:
    """The Redis command called at ``line`` of the loaded script ``sha``, e.g. ``TIME (in aqueue's enqueue script)``."""
    name = next((name for name, known in broker._sha.items() if known == sha), None)
    return command_at(name, line) if name is not None else None


async def _probe(broker: Guarded) -> Exception | None:
    """None if Redis answers a PING within the deadline, else what went wrong."""
    try:
        async with asyncio.timeout(broker._conn.timeout):
            await broker.redis.ping()
    except Exception as exc:
        return exc
    return None


def redacted(url: str) -> str:
    """``url`` with its password replaced by ``***``, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
