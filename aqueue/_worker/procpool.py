"""The worker-owned process pool that runs ``@tasks.task(executor="process")`` jobs, one job per child at a time.

Each child is a ``spawn``-ed interpreter running :func:`aqueue._worker.child.main` on one end of a socket pair; the
worker reads the other end with asyncio streams, so the loop never waits on a child. Only JSON crosses: the request
names the function (module and qualname) and carries the arguments, the reply carries the result or a description
of the error (:mod:`aqueue._worker.child`). A job that ends here without its reply (its timeout, a cancellation, a
forced stop) kills its child (SIGTERM, SIGKILL after :data:`KILL_GRACE`); a child that dies under a job fails that
attempt with :class:`ProcessCrashed`. Either way a fresh child takes its place, so the pool stays at its size.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import logging
import multiprocessing
import os
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NoReturn

import orjson

from aqueue._core import codec, joblogs
from aqueue._core.errors import ConfigurationError, Reject, Retry, SerializationError
from aqueue._worker import child as child_main
from aqueue._worker.child import split_logs

if TYPE_CHECKING:
    from aqueue._core.task import Task

__all__ = [
    "KILL_GRACE",
    "ProcessCrashed",
    "ProcessPool",
    "RemoteError",
    "ResultNotJSON",
    "check_findable",
    "default_size",
]

log = logging.getLogger("aqueue._worker.worker")

#: Seconds a child gets between SIGTERM and SIGKILL when the worker ends its job (timeout, cancellation, stop).
KILL_GRACE = 1.0
#: Seconds a new child may take to start (import aqueue and the task modules) before it counts as failed.
START_TIMEOUT = 60.0
_CONTEXT = multiprocessing.get_context("spawn")  # never fork: the worker has threads and an event loop


def default_size() -> int:
    """The pool's default size: the CPU count (1 when unknown)."""
    return os.cpu_count() or 1


def check_findable(tasks: Iterable[Task[Any, Any]]) -> None:
    """Raise :class:`ConfigurationError` for a process task a child would not find by its module and qualname."""
    for task in tasks:
        module, qualname = task.fn.__module__, task.fn.__qualname__
        try:
            found: Any = child_main.find_function(module, qualname)
        except Exception as exc:
            found = exc
        if found is not task.fn:
            raise ConfigurationError(
                f"task {task.name!r} (executor='process'): {module}.{qualname} does not lead to its function "
                f"({found!r}); a process task must be a module-level function, registered under its own name"
            )


class ProcessCrashed(Exception):
    """The child process running a job died before replying (``os._exit``, a segfault, SIGKILL from outside)."""


class ResultNotJSON(SerializationError):
    """A process task returned what JSON cannot carry: the job is dead-lettered, as for an in-process task."""


class RemoteError(Exception):
    """Base of the exceptions re-raised here for an error raised in a child; each is named as the child's was."""


class _RemoteTraceback(Exception):
    """The child's formatted traceback, chained as the cause of a :class:`RemoteError` so tracebacks show it."""

    def __str__(self) -> str:
        return f'\n"""\n{self.args[0]}"""'


@functools.lru_cache(maxsize=256)
def _remote_type(name: str, module: str) -> type[RemoteError]:
    """A :class:`RemoteError` class named ``name``; for a built-in exception also a subclass of it (a ``TypeError``
    from the child is a ``TypeError`` here: arguments that do not fit the function dead-letter the job)."""
    builtin = getattr(builtins, name, None) if module == "builtins" else None
    if isinstance(builtin, type) and issubclass(builtin, Exception):
        with contextlib.suppress(TypeError):  # a layout conflict: the plain class below
            return type(name, (RemoteError, builtin), {"__module__": module})
    return type(name, (RemoteError,), {"__module__": module})


def _raise_reply(reply: dict[str, Any]) -> NoReturn:
    kind, message = reply.get("kind"), str(reply.get("message", ""))
    if kind == "retry":
        raise Retry(message, after=reply.get("after"))
    if kind == "reject":
        raise Reject(message)
    if kind == "result":
        raise ResultNotJSON(message)
    exc = _remote_type(str(reply.get("type", "Exception")), str(reply.get("module", "builtins")))(message)
    raise exc from _RemoteTraceback(str(reply.get("traceback", "")))


class _Child:
    """One child process and the worker's end of its socket."""

    def __init__(self, process: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.process = process
        self.reader = reader
        self.writer = writer

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    async def read(self) -> bytes:
        header = await self.reader.readexactly(8)
        return await self.reader.readexactly(int.from_bytes(header, "big"))

    async def call(self, request: bytes) -> bytes:
        """Send one request and return the reply; :class:`ProcessCrashed` if the child dies meanwhile."""
        try:
            self.writer.write(len(request).to_bytes(8, "big") + request)
            await self.writer.drain()
            return await self.read()
        except (asyncio.IncompleteReadError, ConnectionError):
            code = await self.exited(KILL_GRACE)
            raise ProcessCrashed(f"the process running the job exited with code {code}") from None

    async def exited(self, timeout: float) -> int | None:
        """The child's exit code once it has exited, waiting up to ``timeout`` seconds (None if it has not)."""
        if self.process.exitcode is None:
            loop = asyncio.get_running_loop()
            ended = asyncio.Event()  # the sentinel is readable once the process has ended
            loop.add_reader(self.process.sentinel, ended.set)
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await ended.wait()
            finally:
                loop.remove_reader(self.process.sentinel)
            for _ in range(100 if ended.is_set() else 0):  # its files are closed just before it can be reaped
                if self.process.exitcode is not None:
                    break
                await asyncio.sleep(0.002)
        code: int | None = self.process.exitcode
        return code

    async def kill(self) -> None:
        """End the child: SIGTERM, SIGKILL after :data:`KILL_GRACE`; then release what it held."""
        self.writer.close()
        if self.process.exitcode is None:
            self.process.terminate()
            if await self.exited(KILL_GRACE) is None:
                self.process.kill()
                await self.exited(KILL_GRACE * 5)
        with contextlib.suppress(ValueError):
            self.process.close()  # refuses while it still runs (a process that survived SIGKILL: none)


class ProcessPool:
    """``size`` children, started when :meth:`start` is called in the worker's loop and ended by :meth:`close`.

    ``modules`` are imported by every child when it starts (the modules of the process tasks); the children keep the
    log lines of their jobs at ``job_log_level`` and above (None: none), which join the job's logs here.
    """

    def __init__(self, owner: str, size: int, modules: list[str], job_log_level: int | None = None) -> None:
        self._owner = owner
        self.size = size
        self._modules = modules
        self.job_log_level = job_log_level
        self._idle: asyncio.Queue[_Child] = asyncio.Queue()
        self._children: set[_Child] = set()
        self._starting: set[asyncio.Task[None]] = set()  # children being started
        self._background: set[asyncio.Task[None]] = set()  # children being ended
        self._closed = False

    @property
    def pids(self) -> list[int]:
        """The process ids of the children alive now."""
        return [c.pid for c in self._children]

    def start(self) -> None:
        """Start the children (in the background: jobs wait for the first one ready)."""
        self._closed = False
        self._refill()

    def _refill(self) -> None:
        while not self._closed and len(self._children) + len(self._starting) < self.size:
            task = asyncio.get_running_loop().create_task(self._add_child())
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    async def _add_child(self) -> None:
        delay = 0.5
        while not self._closed:
            try:
                child = await self._new_child()
            except Exception as exc:  # a child that cannot start: say so, try again
                log.error("worker %s: a process-pool child failed to start: %s; retrying in %.1fs",
                          self._owner, exc, delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self._children.add(child)
            self._idle.put_nowait(child)
            return

    async def _new_child(self) -> _Child:
        ours, theirs = socket.socketpair()
        process = _CONTEXT.Process(
            target=child_main.main, args=(theirs, self._modules), name="aqueue-pool", daemon=True
        )
        try:
            process.start()  # in the loop's thread: the child's parent-death signal follows this thread
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        new: _Child | None = None
        try:
            reader, writer = await asyncio.open_unix_connection(sock=ours, limit=2**20)
            new = _Child(process, reader, writer)
            async with asyncio.timeout(START_TIMEOUT):
                if await new.read() != b"r":
                    raise ProcessCrashed("the child did not say it was ready")
        except BaseException as exc:
            if new is None:
                ours.close()
                process.kill()
            else:
                await new.kill()
            if isinstance(exc, asyncio.IncompleteReadError):
                raise ProcessCrashed("the child exited while starting") from None
            raise
        return new

    async def run(
        self,
        name: str,
        module: str,
        qualname: str,
        args: list[Any],
        kwargs: dict[str, Any],
        deadline: asyncio.Timeout | None = None,
    ) -> Any:
        """Run ``module.qualname(*args, **kwargs)`` in a child and return its result (the task named ``name``).

        Raises what the task raised (named as in the child, its traceback chained), :class:`ProcessCrashed`,
        :class:`ResultNotJSON`; a cancellation (timeout, cancel, stop) kills the child, and a new one replaces it.
        The job's ``deadline`` (entered) counts from when a child takes the job, not while it waits for a free one.
        """
        request = orjson.dumps([module, qualname, args, kwargs, name, self.job_log_level])
        loop = asyncio.get_running_loop()
        when = deadline.when() if deadline is not None else None
        budget = when - loop.time() if when is not None else None
        child = await self._idle.get()
        while child.process.exitcode is not None:  # it died while idle (killed from outside): not this job's fault
            self._retire(child)
            child = await self._idle.get()
        if deadline is not None and budget is not None:
            deadline.reschedule(loop.time() + budget)
        try:
            reply = await child.call(request)
        except BaseException:
            self._retire(child)
            raise
        self._idle.put_nowait(child)
        lines, reply = split_logs(reply)
        joblogs.add(lines)  # into the running job's logs, as if logged here
        if reply[:1] == b"o":
            return codec.decode(reply[1:])
        _raise_reply(orjson.loads(reply[1:]))

    def _retire(self, child: _Child) -> None:
        """End ``child`` in the background and start another in its place."""
        self._children.discard(child)
        task = asyncio.get_running_loop().create_task(child.kill())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        self._refill()

    async def close(self) -> None:
        """End every child (running jobs' too) and wait until they have exited."""
        self._closed = True
        starting = list(self._starting)
        for task in starting:
            task.cancel()
        await asyncio.gather(*starting, return_exceptions=True)
        children, self._children = list(self._children), set()
        self._idle = asyncio.Queue()
        kills = [asyncio.ensure_future(c.kill()) for c in children]
        await asyncio.gather(*kills, *self._background, return_exceptions=True)
