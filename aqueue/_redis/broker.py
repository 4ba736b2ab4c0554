"""The broker: the only code that issues Redis commands, one class composed of its roles.

Stage: all of them, one role each. :class:`Broker` is :class:`~aqueue._redis.producer.Producer` (enqueue),
:class:`~aqueue._redis.consumer.Consumer` (stream → claim → run → settle, promotion and cron ticks),
:class:`~aqueue._redis.events.Events` (events) and :class:`~aqueue._redis.admin.Admin` (inspection and
queue-wide actions), all on :class:`~aqueue._redis.base.BrokerBase` (the client, the breaker, the scripts).

Every state change is one Lua script (loaded once, called by SHA) that also writes its event. Blocking waits
(idle workers, scheduler wake-ups, event readers) block inside Redis; on ``memory://`` they wait on an in-process
signal instead, because fakeredis does not block. Every method that talks to Redis passes the guard
(:func:`~aqueue._redis.guard.unavailable`): a deadline, the circuit breaker, redis-py errors made aqueue errors.
"""

from __future__ import annotations

from aqueue._redis.admin import Admin
from aqueue._redis.consumer import Consumer
from aqueue._redis.events import Events
from aqueue._redis.producer import BulkWrite, Producer

__all__ = ["Broker", "BulkWrite"]


class Broker(Producer, Consumer, Events, Admin):
    """Typed wrappers around the queue's Redis commands and Lua scripts, by role (see the module docstring)."""
