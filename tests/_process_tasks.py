"""Plain functions that tests/test_executor.py registers with ``executor="process"``: module-level, so the pool's
child processes find them by name (``tests._process_tasks.<name>``)."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import aqueue


def square(n: int) -> int:
    return n * n


def echo(value: Any) -> Any:
    return value


def pid() -> int:
    return os.getpid()


def nap(seconds: float, pidfile: str) -> str:
    """Write this process's id to ``pidfile``, then sleep."""
    Path(pidfile).write_text(str(os.getpid()))
    time.sleep(seconds)
    return "woke"


def crash_once(marker: str) -> str:
    """The first call kills its own process (SIGKILL, as from outside); the next one returns."""
    if not Path(marker).exists():
        Path(marker).write_text("crashed")
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


def retry_once(marker: str) -> str:
    if not Path(marker).exists():
        Path(marker).write_text("retried")
        raise aqueue.Retry("not yet", after=0.05)
    return "done"


def reject(reason: str) -> None:
    raise aqueue.Reject(reason)


def boom(message: str) -> None:
    raise ValueError(message)


def not_json() -> set[int]:
    return {1, 2}


def job_context() -> str:
    return aqueue.current_job().job_id


def burn(n: int) -> int:
    """CPU-bound and GIL-holding: ``sum(range(n))`` is one C call that never lets another thread run."""
    return sum(range(n))


def chatty(n: int) -> int:
    """Log at three levels, then return ``n``."""
    log = logging.getLogger("tests.process.chatty")
    log.setLevel(logging.DEBUG)
    log.debug("debug %d", n)
    log.info("info %d", n)
    log.warning("warning %d", n)
    return n
