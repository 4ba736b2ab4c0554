"""Logging of the ``aqueue`` command: configured here and only here (the library never touches logging
configuration), as text lines or one JSON object per line."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

from aqueue._core.context import _current

__all__ = ["JsonFormatter", "log", "setup_logging"]

#: The CLI's own logger (its name is the one the command's log lines have always carried).
log = logging.getLogger("aqueue.cli.main")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message`` (and ``exc`` with a traceback); a record
    logged while a job runs (by the task, its middleware, or the worker about it) also has ``job_id``, ``task``,
    ``attempt`` and ``queue``."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a single-line JSON object."""
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        out: dict[str, object] = {
            "ts": ts,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job = _current.get()  # formatted where it was logged (a StreamHandler): in the job's context
        if job is not None:
            out |= {"job_id": job.job_id, "task": job.task, "attempt": job.attempt, "queue": job.tasks.queue}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def setup_logging(level: str, fmt: str) -> None:
    """Send every log record to stderr at ``level`` and above, as ``fmt`` (``text`` or ``json``) lines."""
    handler = logging.StreamHandler(sys.stderr)
    text = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    handler.setFormatter(JsonFormatter() if fmt == "json" else text)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
