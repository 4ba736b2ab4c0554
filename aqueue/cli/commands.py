"""The short commands on a queue: ``enqueue`` (one job, optionally waiting for its result), ``info`` (depths,
counters, workers), and ``demo`` (the self-contained :mod:`aqueue.cli.demo`)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from typing import TYPE_CHECKING, Any

import orjson

from aqueue._core.errors import JobCancelled, JobFailed, ResultTimeout
from aqueue._core.tasks import Tasks
from aqueue.cli.options import CliError
from aqueue.cli.session import prepare, redact, session
from aqueue.cli.text import describe_pause, one_line, print_json, table

if TYPE_CHECKING:
    from aqueue._core.info import QueueInfo

__all__ = ["cmd_demo", "cmd_enqueue", "cmd_info"]


def _json_value(text: str | None, kind: type, flag: str, expected: str) -> Any:
    if text is None:
        return kind()
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CliError(f"{flag}: invalid JSON: {exc}") from None
    if not isinstance(value, kind):
        raise CliError(f"{flag}: expected {expected}, got {text!r}")
    return value


def cmd_enqueue(args: argparse.Namespace) -> int:
    """Enqueue one job of a registered task and print its id."""
    tasks = prepare(args, "enqueue from the process that runs the worker")
    task = tasks.get(args.task)
    if task is None:
        known = ", ".join(sorted(tasks.names)) or "none"
        raise CliError(f"no task {args.task!r} in {args.target} (registered: {known})")
    positional = _json_value(args.args, list, "--args", "a JSON array")
    keywords = _json_value(args.kwargs, dict, "--kwargs", "a JSON object")
    configured = task.with_options(priority=args.priority, delay=args.delay, at=args.at, group=args.group)

    async def run() -> int:
        job = await configured.enqueue(*positional, **keywords)
        print(job.id, flush=True)  # before waiting: a timeout or Ctrl-C still leaves the id
        if args.wait is None:
            return 0
        try:
            value = await job.result(timeout=args.wait)
        except ResultTimeout:
            print(f"aqueue: job {job.id} did not finish within {args.wait:g} s; it goes on (`aqueue job` shows it)",
                  file=sys.stderr)  # fmt: skip
            return 1
        except (JobFailed, JobCancelled) as exc:
            print(f"aqueue: {' '.join(str(exc).split())}", file=sys.stderr)
            return 1
        print(orjson.dumps(value).decode())
        return 0

    code = session(tasks, run)
    assert code is not None
    return code


def _info_data(tasks: Tasks, info: QueueInfo, paused: dict[str, Any] | None) -> dict[str, Any]:
    """What ``info --json`` prints: the queue, its redacted URL, the :class:`QueueInfo` fields and the pause."""
    now = time.time()
    data: dict[str, Any] = {"queue": tasks.queue, "redis_url": redact(tasks.redis_url), **dataclasses.asdict(info)}
    data["paused"] = paused
    for w in data["workers"]:
        w["heartbeat_age"] = round(now - float(w.get("heartbeat_at", now)), 3)
    return data


def _print_info(data: dict[str, Any]) -> None:
    """The ``info`` table: one ``label  value`` line per figure, then the workers."""
    print(f"queue      {data['queue']} on {data['redis_url']}")
    if data["paused"] is not None:
        print(f"paused     {describe_pause(data['paused'])}")
    print("queued     " + "  ".join(f"{name} {n}" for name, n in data["queued"].items()))
    for key in ("active", "scheduled", "dead"):
        print(f"{key:<10} {data[key]}")
    order = ["enqueued", "succeeded", "retried", "failed", "dead"]
    stats = {k: data["stats"].get(k, 0) for k in order} | data["stats"]
    print("counters   " + "  ".join(f"{k} {v}" for k, v in stats.items()))
    workers = data["workers"]
    print(f"workers    {len(workers)}" + (" (busy, processed and failed as of each one's last heartbeat)"
                                           if workers else ""))  # fmt: skip
    if workers:
        columns = ("id", "concurrency", "strategy", "busy", "processed", "failed")
        rows = [(*(c.upper() for c in columns), "HEARTBEAT")]
        rows += [(*(str(w.get(c, "")) for c in columns), f"{w['heartbeat_age']:.1f}s ago") for w in workers]
        if any(w.get("metadata") for w in workers):  # the user's key-values, when any worker has some
            rows = [(*rows[0], "METADATA"), *((*r, _metadata(w)) for r, w in zip(rows[1:], workers, strict=True))]
        table(rows)


def _metadata(worker: dict[str, Any]) -> str:
    """A worker's metadata as ``key=value`` pairs on one line (shortened)."""
    meta = worker.get("metadata")
    pairs = " ".join(f"{k}={v}" for k, v in meta.items()) if isinstance(meta, dict) else ""
    return one_line(pairs, 80)


def cmd_info(args: argparse.Namespace) -> int:
    """Print a queue's depths, counters and live workers, as a table or as JSON."""
    tasks = prepare(args, "ask the process that runs the worker")

    async def read() -> tuple[QueueInfo, dict[str, Any] | None]:
        return await tasks.info(), await tasks.paused()

    got = session(tasks, read)
    assert got is not None
    data = _info_data(tasks, *got)
    if args.json:
        print_json(data)
    else:
        _print_info(data)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the self-contained ``memory://`` demo."""
    from aqueue.cli.demo import run_demo  # only the demo needs it (and the web package it may serve)

    return asyncio.run(
        run_demo(jobs=args.jobs, concurrency=args.concurrency, seconds=args.seconds, web=args.web, rate=args.rate)
    )
