"""What every command that talks to a queue does first: import the ``MODULE:ATTR`` :class:`Tasks` (``worker`` and
``web`` take several), apply ``--redis``/``--queue``, and run its work in a fresh event loop that connects first
(one clear error if Redis does not answer) and closes the registries at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aqueue._core.errors import BrokerUnavailable
from aqueue._core.tasks import Tasks
from aqueue.cli.logs import log
from aqueue.cli.options import CliError

__all__ = ["load_tasks", "prepare", "prepare_all", "redact", "session"]

T = TypeVar("T")


def load_tasks(target: str) -> Tasks:
    """Import ``MODULE:ATTR`` (the current directory first on ``sys.path``) and return that :class:`Tasks`."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise CliError(f"expected MODULE:ATTR such as myapp.jobs:tasks, got {target!r}")
    # The console script's sys.path[0] is its bin directory, not the project the user is standing in.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        name = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
        if name and (module_name + ".").startswith(name + "."):  # the module itself, not one it imports
            raise CliError(f"cannot import module {module_name!r}: {exc}") from None
        log.debug("importing %s failed", module_name, exc_info=True)  # the traceback, for --log-level debug
        raise CliError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CliError(f"module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not isinstance(obj, Tasks):
        raise CliError(f"{target} is {type(obj).__name__!r}, not an aqueue.Tasks")
    return obj


def redact(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``."""
    password = urlsplit(url).password
    return url if password is None else url.replace(f":{password}@", ":***@", 1)


def prepare(args: argparse.Namespace, needs_server: str | None) -> Tasks:
    """Load the target, apply ``--redis``/``--queue``; ``needs_server``: why ``memory://`` will not do."""
    tasks = load_tasks(args.target)
    tasks.configure(redis_url=args.redis, queue=args.queue)
    if needs_server and tasks.redis_url.startswith("memory:"):
        raise CliError(f"{tasks.redis_url} lives inside one process; {needs_server}")
    return tasks


def prepare_all(args: argparse.Namespace, needs_server: str | None) -> list[Tasks]:
    """:func:`prepare` for a command that takes one or more targets (``worker``, ``web``): each is loaded and gets
    ``--redis``; ``--queue`` renames the queue of a single target only, and the queues must be distinct."""
    targets: list[str] = args.target
    if len(targets) == 1:
        return [prepare(argparse.Namespace(**{**vars(args), "target": targets[0]}), needs_server)]
    if args.queue is not None:
        raise CliError("--queue renames the queue of one MODULE:ATTR; with several, each names its own queue")
    registries: list[Tasks] = []
    for target in targets:
        tasks = load_tasks(target)
        if any(t is tasks for t in registries):
            raise CliError(f"{target} is given twice")
        tasks.configure(redis_url=args.redis)
        if needs_server and tasks.redis_url.startswith("memory:"):
            raise CliError(f"{tasks.redis_url} lives inside one process; {needs_server}")
        registries.append(tasks)
    queues = [t.queue for t in registries]
    twice = sorted({q for q in queues if queues.count(q) > 1})
    if twice:
        raise CliError(f"queue {', '.join(map(repr, twice))} is served by two targets: each must have its own queue")
    return registries


def _loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if loop == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        raise CliError("--loop uvloop needs uvloop: pip install 'aqueue[uvloop]'") from None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def session(
    tasks: Tasks | Sequence[Tasks], body: Callable[[], Awaitable[T]] | None = None, loop: str = "asyncio"
) -> T | None:
    """Connect (one clear error if Redis does not answer), run ``body`` and close, in a fresh event loop
    (``loop`` ``uvloop`` runs it on uvloop). ``tasks`` may be several registries: each is connected and closed."""
    registries = [tasks] if isinstance(tasks, Tasks) else list(tasks)

    async def run() -> T | None:
        try:
            for t in registries:
                try:
                    await t._broker()
                except BrokerUnavailable as exc:
                    raise CliError(f"cannot reach Redis at {redact(t.redis_url)}: {exc}") from None
            return None if body is None else await body()
        finally:
            for t in registries:
                await t.close()

    with asyncio.Runner(loop_factory=_loop_factory(loop)) as runner:
        return runner.run(run())
