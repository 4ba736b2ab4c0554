"""The entry point of a process-pool child (``@tasks.task(executor="process")``), and the frames both ends speak.

A child is a fresh interpreter (the ``spawn`` start method): it imports the task modules, says it is ready, then
answers one request at a time on its socket until the socket closes. A request is the JSON array ``[module,
qualname, args, kwargs, task name, job log level or null]``; the function is found by name (the module attribute is
the registered :class:`Task`, whose ``fn`` runs). A reply is one kind byte and JSON: ``o`` and the result, or ``e``
and ``{"kind", "type", "module", "message", "traceback", "after"}`` where ``kind`` is ``error``, ``retry``,
``reject`` or ``result`` (a result JSON cannot carry). When the call logged anything at the job log level, the reply
is preceded by ``L``, an 8-byte length and the lines' JSON (``[[seconds, level, message], ...]``): the child's root
logger is set to that level, with a handler that keeps those lines and one that prints warnings to stderr as
Python's last-resort handler would. Nothing is pickled but the socket itself at start-up.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import signal
import socket
import struct
import sys
import traceback
from collections.abc import Callable
from typing import Any, BinaryIO

import orjson

__all__ = ["find_function", "main", "read_frame", "split_logs", "write_frame"]

_HEADER = struct.Struct("!Q")
#: What ``aqueue.current_job()`` and ``aqueue.progress()`` raise in a child.
UNAVAILABLE = (
    "aqueue.current_job() and aqueue.progress() are not available in a task run with executor='process': the job "
    "runs in a separate process; pass what it needs as arguments"
)


def write_frame(sock: socket.socket, payload: bytes) -> None:
    """Send one frame (8-byte length, then the payload) on a blocking socket."""
    sock.sendall(_HEADER.pack(len(payload)) + payload)


def read_frame(stream: BinaryIO) -> bytes | None:
    """One frame from a blocking stream, or None at the end of it."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    payload = stream.read(size)
    return payload if len(payload) == size else None


def find_function(module: str, qualname: str) -> Callable[..., Any]:
    """The function registered as ``module.qualname`` (the :class:`Task` there, or a plain function)."""
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    fn = getattr(obj, "fn", obj)  # the decorator put a Task at that name: its function runs
    if not callable(fn):
        raise TypeError(f"{module}.{qualname} is not a function")
    return fn  # type: ignore[no-any-return]


def _error(exc: BaseException) -> bytes:
    from aqueue._core.errors import Reject, Retry, SerializationError

    kind = "error"
    if isinstance(exc, Retry):
        kind = "retry"
    elif isinstance(exc, Reject):
        kind = "reject"
    elif isinstance(exc, _ResultError):
        kind, exc = "result", exc.__cause__ if isinstance(exc.__cause__, SerializationError) else exc
    tb = "" if kind != "error" else traceback.format_exc()
    description = {
        "kind": kind,
        "type": type(exc).__qualname__,
        "module": type(exc).__module__,
        "message": str(exc),
        "traceback": tb,
        "after": getattr(exc, "after", None) if kind == "retry" else None,
    }
    return b"e" + orjson.dumps(description, default=str)


class _ResultError(Exception):
    """The function returned, but JSON cannot carry its result (the cause says why)."""


class _Keep(logging.Handler):
    """Keeps the records of the call running (capped as in the worker: :mod:`aqueue._core.joblogs`)."""

    def __init__(self) -> None:
        from aqueue._core.context import LogBuffer

        super().__init__()
        self.buffer = LogBuffer()

    def emit(self, record: logging.LogRecord) -> None:
        from aqueue._core.joblogs import keep

        keep(self.buffer, record)

    def take(self) -> bytes:
        """The lines kept since the last take, framed for the reply (b'' when none)."""
        lines, self.buffer.lines = self.buffer.lines, []
        if not lines:
            return b""
        body = orjson.dumps([(line.timestamp, line.level, line.message) for line in lines])
        return b"L" + _HEADER.pack(len(body)) + body


def _handle(request: bytes, kept: _Keep) -> bytes:
    from aqueue._core import codec

    try:
        module, qualname, args, kwargs, name, level = orjson.loads(request)
        kept.setLevel(logging.CRITICAL + 1 if level is None else level)  # None: keep nothing
        logging.getLogger().setLevel(logging.WARNING if level is None else min(level, logging.WARNING))
        result = find_function(module, qualname)(*args, **kwargs)
        try:
            return kept.take() + b"o" + codec.encode(result, f"result of task {name!r}").encode()
        except Exception as exc:
            raise _ResultError(str(exc)) from exc
    except BaseException as exc:  # SystemExit too: the child stays, the attempt fails
        return kept.take() + _error(exc)


def split_logs(reply: bytes) -> tuple[list[Any], bytes]:
    """A reply's log lines (none when it has no ``L`` part) and the rest of it."""
    if reply[:1] != b"L":
        return [], reply
    (size,) = _HEADER.unpack_from(reply, 1)
    end = 1 + _HEADER.size + size
    return orjson.loads(reply[1 + _HEADER.size : end]), reply[end:]


def _die_with_parent() -> None:
    """On Linux, ask the kernel to kill this process when its parent dies (no orphan if the worker is killed)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def main(sock: socket.socket, modules: list[str]) -> None:
    """Serve requests on ``sock`` until it closes (the worker closing the pool, or the worker gone)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the whole group: the worker decides
    _die_with_parent()
    from aqueue._core import context

    context._unavailable = UNAVAILABLE
    kept = _Keep()
    stderr = logging.StreamHandler()  # a handler on the root ends logging.lastResort: warnings still print
    stderr.setLevel(logging.WARNING)
    logging.getLogger().handlers[:] = [kept, stderr]
    for name in modules:  # imported before the first job, so it does not pay for them
        try:
            importlib.import_module(name)
        except Exception:
            print(f"aqueue process pool: importing {name} failed:", file=sys.stderr)
            traceback.print_exc()
    sock.setblocking(True)
    stream = sock.makefile("rb")
    write_frame(sock, b"r")
    while (request := read_frame(stream)) is not None:
        write_frame(sock, _handle(request, kept))
