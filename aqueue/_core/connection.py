"""The connection half of :class:`~aqueue.Tasks`: its broker and events reader, bound to one event loop, and
closing them (after stopping the workers that run on it)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol, Self

from aqueue._core.errors import ConfigurationError
from aqueue._core.events import EventHub
from aqueue._core.settings import QueueSettings
from aqueue._redis.broker import Broker
from aqueue._redis.connect import open_connection
from aqueue._redis.keys import Keys

__all__ = ["ConnectionMixin", "Stoppable"]


class Stoppable(Protocol):
    """What runs on a registry and :meth:`Tasks.close` stops first: a :class:`~aqueue.Worker`. It attaches itself
    with ``_attach`` while it runs; the registry never needs to know more of it than this."""

    def _runs(self, task: asyncio.Task[Any] | None) -> bool:
        """``task`` is one of the jobs it runs (stopping it from there would wait for that very job)."""
        ...

    def request_stop(self, *, cancel_running: bool = False) -> None: ...

    async def stop(self) -> None: ...


class ConnectionMixin:
    """Connecting and closing (see the module docstring); :class:`~aqueue.Tasks` inherits it."""

    queue: str
    redis_timeout: float | None
    _broker_instance: Broker | None
    _hub: EventHub | None
    _lock: asyncio.Lock | None
    _loop: asyncio.AbstractEventLoop | None
    _workers: set[Stoppable]
    _routes: dict[str, Self]
    _url: str | None

    settings: QueueSettings

    if TYPE_CHECKING:

        @property
        def redis_url(self) -> str: ...

        @property
        def _keys(self) -> Keys: ...

    async def _broker(self) -> Broker:
        """Internal: the connected broker, the only code that talks to Redis (connects and loads the scripts on first
        use; :class:`BrokerUnavailable` if Redis does not answer)."""
        if self._loop is not asyncio.get_running_loop():
            self._bind()
        if self._broker_instance is None:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self._broker_instance is None:
                    broker = Broker(open_connection(self.redis_url, self.redis_timeout), self._keys, self.settings)
                    try:
                        await broker.prepare()
                    except BaseException:
                        await broker.close()
                        raise
                    self._broker_instance = broker
        return self._broker_instance

    def _bind(self) -> None:
        """Adopt the running loop: forget a connection, reader and lock left by a closed loop (they cannot be used,
        nor closed, from this one); :class:`ConfigurationError` while the loop that made them is still open."""
        old = self._loop
        if old is not None and not old.is_closed() and (self._broker_instance is not None or self._hub is not None):
            raise ConfigurationError(f"{self!r} is connected in another event loop that is still open: await "
                                     "tasks.close() in that loop first, or use one Tasks per event loop")  # fmt: skip
        self._broker_instance, self._hub, self._lock = None, None, None
        if old is not None and old.is_closed():
            self._workers.clear()  # they ran in the closed loop
        self._loop = asyncio.get_running_loop()

    async def _event_hub(self) -> EventHub:
        """Internal: this process's reader of the queue's events stream (what :meth:`Job.result` waits with),
        started on first use."""
        broker = await self._broker()  # first: a reader left by a closed event loop is dropped there
        if self._hub is None:
            self._hub = EventHub(broker)
        await self._hub.start()
        return self._hub

    def _route(self, queue: str) -> Self:
        """The registry that enqueues this one's jobs on ``queue`` (``with_options(queue=...)``): made on first use
        with this one's Redis URL, settings and tasks (for the argument checks), closed with this one."""
        routed = self._routes.get(queue)
        if routed is None:
            routed = type(self)(queue, self._url, settings=self.settings, redis_timeout=self.redis_timeout)  # type: ignore[call-arg]
            routed._registry = self._registry  # type: ignore[attr-defined]
            self._routes[queue] = routed
        return routed

    def _attach(self, worker: Stoppable) -> None:
        """``worker`` runs on this registry from now on: :meth:`close` stops it first."""
        self._workers.add(worker)

    def _detach(self, worker: Stoppable) -> None:
        self._workers.discard(worker)

    async def close(self, *, cancel_running: bool = False) -> None:
        """Stop the workers running on this registry, then the events reader, and close the Redis connections.
        Using the registry again reconnects.

        A worker still running here is stopped first, as :meth:`Worker.stop` does: it lets its running jobs finish
        (up to its ``shutdown_timeout``) and puts its prefetched ones back, while it can still reach Redis. With
        ``cancel_running`` (what leaving ``async with tasks:`` on an exception does) it cancels its running jobs at
        once and puts them back in the queue for another run.
        """
        if self._loop is not asyncio.get_running_loop():
            self._bind()  # what a closed loop left cannot be closed from this one: it is dropped
        current = asyncio.current_task()
        # Not a worker whose job is closing the registry: stopping it would wait for this very call.
        workers = [w for w in self._workers if not w._runs(current)]
        if workers:
            if cancel_running:
                for worker in workers:
                    worker.request_stop(cancel_running=True)
            await asyncio.gather(*(worker.stop() for worker in workers))
        for routed in self._routes.values():
            await routed.close()
        if self._hub is not None:
            await self._hub.close()
            self._hub = None
        if self._broker_instance is not None:
            await self._broker_instance.close()
            self._broker_instance = None
        self._lock = None  # an asyncio.Lock binds to the loop that first waits on it
        self._loop = None

    async def __aenter__(self) -> Self:
        """``async with tasks:`` returns the registry itself (nothing connects until first use)."""
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """Leaving ``async with tasks:`` closes the registry (:meth:`close`); on an exception, a worker still running
        on it cancels its running jobs and puts them back instead of waiting for them."""
        await self.close(cancel_running=exc_type is not None)
