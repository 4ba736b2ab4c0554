"""A circuit breaker in front of Redis: an outage is reported once, calls fail fast, recovery is probed.

Closed (normal) → after ``threshold`` consecutive connection failures → open: calls raise
:class:`~aqueue.BrokerUnavailable` at once (``quiet``), except one probe per ``probe_interval`` (doubling from
0.1 s up to 2 s) that really tries Redis. The first call that succeeds closes it. The breaker logs one ERROR line
when it opens, one WARNING every 30 s while it stays open, and one WARNING when it closes; retry loops log quiet
failures at debug level. Its state is in ``/health/ready`` and the ``aqueue_redis_circuit_open`` metric.

Only an outage feeds it: a call that got any reply (an error reply too) closes it, and errors retrying cannot help
(wrong password, missing ACL rights, a request too large, a TLS or URL mistake, a full connection pool) are reported
as what they are without counting as an outage. :func:`judge` sorts a failure into one of these.
"""

from __future__ import annotations

import logging
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import redis.exceptions as rexc

from aqueue._core.errors import AqueueError, BrokerUnavailable, ConfigurationError, PermissionDenied

__all__ = ["MAX_RETRY_DELAY", "CircuitBreaker", "Verdict", "judge"]

#: Longest wait between two retries of a worker loop while Redis is down. Short on purpose: while the circuit is
#: open a retry costs nothing (it fails in this process without touching Redis) and the one due probe gets through.
MAX_RETRY_DELAY = 1.0

log = logging.getLogger("aqueue.redis")

_REMIND_EVERY = 30.0


class CircuitBreaker:
    """Tracks consecutive Redis connection failures of one client (see the module docstring)."""

    def __init__(self, where: str, threshold: int = 3, max_probe_interval: float = 2.0) -> None:
        self.where = where
        self.threshold = threshold
        self.max_probe_interval = max_probe_interval
        self.failures = 0  #: consecutive connection failures
        self.opened_at: float | None = None  #: wall-clock time the circuit opened, None while closed
        self.opened_total = 0  #: how many times it opened
        self.last_error = ""
        self._probe_interval = 0.1
        self._next_probe = 0.0
        self._next_reminder = 0.0

    @property
    def is_open(self) -> bool:
        """True while Redis is considered down."""
        return self.opened_at is not None

    @property
    def state(self) -> str:
        """``closed`` or ``open``."""
        return "open" if self.is_open else "closed"

    def before_call(self) -> None:
        """Let the call through, or raise a quiet :class:`BrokerUnavailable` while open and no probe is due."""
        if self.opened_at is None:
            return
        now = time.monotonic()
        if now >= self._next_probe:
            self._next_probe = now + self._probe_interval  # this call is the probe; others wait for the next slot
            self._probe_interval = min(self._probe_interval * 2, self.max_probe_interval)
            return
        exc = BrokerUnavailable(f"Redis at {self.where} is unavailable (circuit open for "
                                f"{time.time() - self.opened_at:.1f} s): {self.last_error}")  # fmt: skip
        exc.quiet = True
        raise exc

    def failed(self, error: BaseException) -> bool:
        """Record a connection failure; returns True if the failure is already reported (quiet)."""
        self.failures += 1
        self.last_error = str(error) or type(error).__name__
        now = time.monotonic()
        if self.opened_at is None:
            if self.failures < self.threshold:
                return False
            self.opened_at = time.time()
            self.opened_total += 1
            self._probe_interval = 0.1
            self._next_probe = now + self._probe_interval
            self._next_reminder = now + _REMIND_EVERY
            log.error("Redis at %s unavailable after %d failures (%s): circuit open; calls fail fast and enqueue "
                      "raises BrokerUnavailable until a probe gets through", self.where, self.failures,
                      self.last_error)  # fmt: skip
            return False
        if now >= self._next_reminder:
            self._next_reminder = now + _REMIND_EVERY
            log.warning("Redis at %s still unavailable after %.0f s (%s)", self.where, time.time() - self.opened_at,
                        self.last_error)  # fmt: skip
        return True

    def succeeded(self) -> None:
        """Record a call that reached Redis: closes an open circuit."""
        if self.opened_at is not None:
            log.warning("Redis at %s answers again after %.1f s: circuit closed", self.where,
                        time.time() - self.opened_at)  # fmt: skip
            self.opened_at = None
        self.failures = 0


# -- what a failure means ----------------------------------------------------------------------------------------

#: Where the rights a queue needs are described.
ACL_DOCS = "docs/deployment.md#acl"

#: What "Redis is down" looks like: connection failures, a cluster with a slot no master serves right now, and a
#: Redis at maxmemory refusing writes (noeviction): no queue operation can go on until it is fixed.
_DOWN = (
    rexc.ConnectionError,
    rexc.TimeoutError,
    OSError,
    rexc.ClusterDownError,
    rexc.SlotNotCoveredError,
    rexc.TryAgainError,
    rexc.OutOfMemoryError,
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a failed broker call means: the error to raise instead (None: the original), and for the breaker
    ``down`` (an outage), ``answered`` (Redis replied, so it is up), ``local`` (Redis not involved or not
    judged), or ``ask`` (Redis dropped the connection: a PING on another one tells an outage from a refusal of
    this request or of this client)."""

    error: AqueueError | None
    kind: Literal["down", "answered", "local", "ask"]


def _is_down(exc: BaseException) -> bool:
    """Whether ``exc`` says Redis is unreachable (as opposed to a bad command): redis-py's cluster client raises a
    bare RedisClusterException when it reaches none of the nodes it knows."""
    if isinstance(exc, _DOWN):
        return True
    return isinstance(exc, rexc.RedisClusterException) and "cannot be connected" in str(exc)


def _tls_error(exc: BaseException) -> ssl.SSLError | None:
    """The TLS handshake failure behind ``exc`` (a certificate refused either way, a protocol mismatch); not a TLS
    connection that merely broke (EOF), which is an outage like any other."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        if isinstance(seen, ssl.SSLError) and any(w in str(seen.reason) for w in ("CERTIFICATE", "ALERT", "VERSION")):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


_NOPERM_COMMAND = re.compile(r"permissions to run the '([^']+)' command")
_NOPERM_SCRIPT = re.compile(r"can't run this command or subcommand script: (\w+), on @user_script:(\d+)")


def _permission(message: str, script_command: Callable[[str, int], str | None]) -> PermissionDenied:
    command: str | None = None
    if found := _NOPERM_COMMAND.search(message):
        command = found.group(1).upper()
    elif found := _NOPERM_SCRIPT.search(message):
        command = script_command(found.group(1), int(found.group(2)))
    if command is not None:
        right = command.split()[0].lower()
        return PermissionDenied(f"the Redis user may not run {command}: grant it (ACL SETUSER <user> +{right}); the "
                                f"rights aqueue needs are in {ACL_DOCS}")  # fmt: skip
    if "keys" in message:
        return PermissionDenied(f"the Redis user may not access aqueue's keys: grant them (ACL SETUSER <user> "
                                f"~aqueue:*); the rights aqueue needs are in {ACL_DOCS}")  # fmt: skip
    return PermissionDenied(f"Redis refused a command for lack of rights ({message}); the rights aqueue needs are in "
                            f"{ACL_DOCS}")  # fmt: skip


def _answer(exc: rexc.ResponseError, script_command: Callable[[str, int], str | None]) -> AqueueError | None:
    message = str(exc)
    if isinstance(exc, rexc.NoPermissionError) or "NOPERM" in message or "can't run this command" in message:
        return _permission(message, script_command)
    if "DB index is out of range" in message:
        return ConfigurationError(f"Redis refused the database number of the URL: {message} (Redis has 16 "
                                  "databases, 0-15, unless its `databases` setting says otherwise)")  # fmt: skip
    if message.startswith("Protocol error"):
        return ConfigurationError(f"Redis refused the request: {message}; an argument or result is probably "
                                  "bigger than Redis' proto-max-bulk-len (512 MB by default)")  # fmt: skip
    return None


def judge(exc: Exception, script_command: Callable[[str, int], str | None]) -> Verdict:
    """Sort the failure of a broker call (other than its deadline) for the breaker and the caller.

    ``script_command(sha, line)`` names the Redis command at ``line`` of a loaded script, for a NOPERM message.
    """
    if isinstance(exc, UnicodeEncodeError):
        text = str(exc.object[max(0, exc.start - 40) : exc.end + 40])
        return Verdict(ConfigurationError(f"cannot send {text!r} to Redis: not valid Unicode text ({exc.reason} at "
                                          f"position {exc.start})"), "local")  # fmt: skip
    if isinstance(exc, rexc.AuthenticationError):
        return Verdict(PermissionDenied(f"Redis refused the credentials: authentication failed ({exc}); check the "
                                        "user and password in the Redis URL"), "answered")  # fmt: skip
    if isinstance(exc, rexc.MaxConnectionsError):
        return Verdict(BrokerUnavailable(f"every connection of the client is in use ({exc}); raise the URL's "
                                         "max_connections"), "local")  # fmt: skip
    if (tls := _tls_error(exc)) is not None:
        return Verdict(ConfigurationError(f"TLS with Redis failed: {tls}; check the URL's ssl_ca_certs, "
                                          "ssl_certfile and ssl_keyfile"), "local")  # fmt: skip
    if isinstance(exc, rexc.InvalidResponse):
        return Verdict(ConfigurationError(f"the server does not answer in the Redis protocol ({exc}): is the URL's "
                                          "host:port a Redis (and rediss:// for a TLS port)?"), "local")  # fmt: skip
    if _is_down(exc):
        if isinstance(exc, rexc.OutOfMemoryError):
            return Verdict(BrokerUnavailable(f"Redis is out of memory (maxmemory reached), nothing was written: "
                                             f"{exc}"), "down")  # fmt: skip
        error = BrokerUnavailable(f"Redis is not answering: {type(exc).__name__}: {exc}")
        dropped = any(sign in str(exc) for sign in ("while writing to socket", "Connection reset by peer"))
        return Verdict(error, "ask" if dropped else "down")
    if isinstance(exc, rexc.ResponseError):
        return Verdict(_answer(exc, script_command), "answered")
    return Verdict(None, "local")
