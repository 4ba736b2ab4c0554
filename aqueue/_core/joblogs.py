"""Job logs: the stdlib ``logging`` records a job emits while it runs, kept on its record.

A worker run installs :func:`install` once per process: a log record factory wrapping the current one (the library
adds no handler and changes no level, so an application's logging configuration, ``logging.lastResort`` included,
works as before). A record made while a job runs (the job's task, its middleware, a thread of a plain-function task:
they all see the job's context) at its registry's :attr:`QueueSettings.job_log_level` or above is appended, as
one :class:`LogLine`, to that job's context; :func:`take` hands the lines to the outcome, so they are written with the
settle call, never a round trip per line. Only records that the logging system makes at all are seen: a logger
whose level is above the record's drops it before any factory runs.

Caps, per attempt here and per job in ``settle.lua``: the last :data:`MAX_LINES` lines, at most
:data:`MAX_BYTES` of messages, each message cut at :data:`MAX_LINE`; the record counts the lines dropped.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

import orjson

from aqueue._core.context import JobContext, LogBuffer, _current
from aqueue._core.record import LogLine

__all__ = ["MAX_BYTES", "MAX_LINE", "MAX_LINES", "add", "install", "keep", "take"]

MAX_LINES = 100  #: lines kept per job (the last ones)
MAX_BYTES = 64 * 1024  #: characters of messages kept per job (the last ones)
MAX_LINE = 8 * 1024  #: characters kept of one message (its traceback included)


_Factory = Callable[..., logging.LogRecord]
_installed: _Factory | None = None


def install() -> None:
    """Keep job logs in this process from now on (idempotent; a worker run calls it when it starts)."""
    global _installed
    current = logging.getLogRecordFactory()
    if current is _installed:
        return
    _installed = _factory(current)
    logging.setLogRecordFactory(_installed)


def _factory(inner: _Factory) -> _Factory:
    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = inner(*args, **kwargs)
        job = _current.get()  # the one lookup a record made outside a job costs
        if job is not None:
            level = job.tasks.settings.job_log_level
            if level is not None and record.levelno >= level:
                keep(_buffer_of(job), record)
        return record

    return make


def _buffer_of(job: JobContext) -> LogBuffer:
    """The job's buffer, made at its first line: a job that logs nothing costs nothing."""
    buffer = job._logs
    if buffer is None:
        buffer = LogBuffer()
        object.__setattr__(job, "_logs", buffer)
    return buffer


def _trim(buffer: LogBuffer) -> None:
    """A job logging in a loop: keep the last :data:`MAX_LINES` now and then (at twice that), not per line."""
    lines = buffer.lines
    if len(lines) > 2 * MAX_LINES:
        buffer.dropped += len(lines) - MAX_LINES
        del lines[:-MAX_LINES]


def keep(buffer: LogBuffer, record: logging.LogRecord) -> None:
    """Append ``record`` to ``buffer`` as a :class:`LogLine` (message cut at :data:`MAX_LINE`)."""
    try:
        message = record.getMessage()
    except Exception as exc:  # a bad format string: logging itself reports it at emit; keep what can be read
        message = f"{record.msg!r} (unformattable: {exc!r})"
    if record.exc_info and record.exc_info[1] is not None:
        message += "\n" + "".join(traceback.format_exception(record.exc_info[1])).rstrip()
    if len(message) > MAX_LINE:
        message = message[: MAX_LINE - 14] + " … (truncated)"
    buffer.lines.append(LogLine(record.created, record.levelname, message))
    _trim(buffer)


def add(lines: list[Any]) -> None:
    """Add lines logged elsewhere for the running job (``[seconds, level, message]``, from a process-pool child)."""
    job = _current.get()
    if job is None or not lines:
        return
    buffer = _buffer_of(job)
    buffer.lines.extend(LogLine(float(ts), str(level), str(message)) for ts, level, message in lines)
    _trim(buffer)


def take(buffer: LogBuffer) -> tuple[str, int]:
    """The wire form of one attempt's lines (a JSON array of ``[ms, level, message]``) capped to the last
    :data:`MAX_LINES` and :data:`MAX_BYTES`, and how many lines of the attempt were dropped."""
    lines = buffer.lines
    keep: list[tuple[int, str, str]] = []
    size = 0
    for line in reversed(lines):
        size += len(line.message)
        if len(keep) == MAX_LINES or size > MAX_BYTES:
            break
        keep.append((round(line.timestamp * 1000), line.level, line.message))
    keep.reverse()
    return orjson.dumps(keep).decode(), buffer.dropped + len(lines) - len(keep)
