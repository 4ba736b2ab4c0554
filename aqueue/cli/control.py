"""Job-control commands of the ``aqueue`` CLI: ``job``, ``dead-letter list|reprocess``, ``retry``, ``cancel``,
``pause``, ``resume``, ``cleanup``.

Each one locates the :class:`~aqueue.Tasks` like ``info`` and ``enqueue`` do (``MODULE:ATTR``, ``--redis``,
``--queue``), prints a human-readable report or, with ``--json``, one JSON document, and exits 0 when everything
asked for was done, 1 when some of it was not (a job already finished, an unknown id), 2 on a user error.
:func:`add_commands` registers them on the parser :func:`aqueue.cli.main.build_parser` builds. Dead letters, re-runs,
job views and cancellation go through the :class:`~aqueue.Tasks` admin methods (:mod:`aqueue._core.admin`), the
same ones the REST API calls.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import math
import re
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from aqueue._core.errors import UnknownJob
from aqueue._core.tasks import FINISHED_STATUSES
from aqueue.cli.options import CliError, count
from aqueue.cli.session import prepare, session
from aqueue.cli.text import describe_pause, one_line, plural, print_json, span, table, when

if TYPE_CHECKING:
    from aqueue._core.admin import RequeueResult

__all__ = ["add_commands", "parse_duration", "parse_statuses"]

_REMOTE = "control a queue from the process that runs its worker"
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)\s*", re.IGNORECASE)


# -- value parsing -------------------------------------------------------------------------------------------


def parse_duration(text: str) -> float:
    """Seconds from ``3600``, ``30s``, ``15m``, ``2h`` or ``7d`` (fractions allowed: ``1.5h``)."""
    match = _DURATION.fullmatch(text)
    seconds = float(match[1]) * _UNITS[match[2].lower()] if match else math.nan
    if not math.isfinite(seconds):
        raise argparse.ArgumentTypeError(f"expected a duration such as 3600, 30s, 15m, 2h or 7d, got {text!r}")
    return seconds


def parse_statuses(text: str) -> list[str]:
    """A comma-separated list of finished statuses, deduplicated in order."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    bad = [name for name in names if name not in FINISHED_STATUSES]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(FINISHED_STATUSES)}, got {text!r}"
        )
    return list(dict.fromkeys(names))


# -- dead-letter list ----------------------------------------------------------------------------------------


def cmd_dead_list(args: argparse.Namespace) -> int:
    """Print the newest dead-letter entries: entry id, when, job id, task and reason."""
    tasks = prepare(args, _REMOTE)
    page = session(tasks, lambda: tasks.dead_letters(args.limit))
    assert page is not None
    entries, total = page.entries, page.total
    if args.json:
        print_json({"queue": tasks.queue, "total": total, "entries": [dataclasses.asdict(e) for e in entries]})
        return 0
    shown = f", newest {len(entries)} shown" if total > len(entries) else ""
    print(f"{plural(total, 'dead-letter entry', 'dead-letter entries')} in queue {tasks.queue}{shown}")
    if entries:
        rows: list[tuple[str, ...]] = [("ENTRY", "DEAD AT", "JOB", "TASK", "REASON")]
        rows += [(e.id, when(e.dead_at), e.job, e.task, one_line(e.reason, 80)) for e in entries]
        table(rows)
    return 0


# -- dead-letter reprocess -----------------------------------------------------------------------------------


def cmd_dead_reprocess(args: argparse.Namespace) -> int:
    """Put dead jobs back on their streams: the given ids, the oldest ``--max N``, or ``--all``."""
    chosen = [flag for flag, given in (("JOB_ID", args.job_ids), ("--all", args.all), ("--max", args.max)) if given]
    if len(chosen) != 1:
        raise CliError(f"give exactly one of JOB_ID..., --all or --max N (got {' and '.join(chosen) or 'none'})")
    tasks = prepare(args, _REMOTE)

    async def run() -> tuple[RequeueResult, int]:
        result = await tasks.reprocess(args.job_ids or None, max=None if args.all else args.max)
        return result, (await tasks.dead_letters(1)).total

    got = session(tasks, run)
    assert got is not None
    result, left = got
    skipped = result.skipped
    if args.json:
        print_json({"requeued": result.requeued, "skipped": [{"id": i, "reason": why} for i, why in skipped.items()],
                    "left": left})  # fmt: skip
    else:
        entries = plural(left, "dead-letter entry", "dead-letter entries")
        print(f"requeued {plural(len(result.requeued), 'job')}; {entries} left")
        for job_id, why in skipped.items():
            print(f"skipped {job_id}: {why}")
    return 1 if skipped else 0


# -- retry ---------------------------------------------------------------------------------------------------


def cmd_retry(args: argparse.Namespace) -> int:
    """Re-run finished jobs by id (``Tasks.retry``); exit 1 if some were not requeued or are unknown."""
    tasks = prepare(args, _REMOTE)
    ids = list(dict.fromkeys(args.job_ids))

    async def run() -> list[str | None]:
        """Per job: None when it was requeued, else why not."""
        why: list[str | None] = []
        for job_id in ids:
            try:
                result = await tasks.retry(job_id)
            except UnknownJob:
                why.append("no such job (never enqueued, or its retention expired)")
                continue
            why.append(None if result.requeued else result.skipped.get(job_id, "not requeued"))
        return why

    reasons = session(tasks, run)
    assert reasons is not None
    if args.json:
        jobs = [{"id": i, "requeued": r is None, "reason": r} for i, r in zip(ids, reasons, strict=True)]
        print_json({"jobs": jobs})
    else:
        for job_id, reason in zip(ids, reasons, strict=True):
            print(f"{job_id}  " + ("requeued" if reason is None else f"not requeued: {reason}"))
    return 0 if all(r is None for r in reasons) else 1


# -- cancel --------------------------------------------------------------------------------------------------


def _cancel_text(state: str) -> str:
    if state == "cancelled":
        return "cancelled"
    if state == "cancelling":
        return "cancelling: it is running, its worker was told to stop it"
    if state == "unknown":
        return "not cancelled: no such job (never enqueued, or its retention expired)"
    return f"not cancelled: it already finished ({state.removeprefix('already-')})"


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel jobs by id; exit 1 if some had already finished or are unknown."""
    tasks = prepare(args, _REMOTE)
    ids = list(dict.fromkeys(args.job_ids))
    states = session(tasks, lambda: tasks._cancel_jobs(ids, args.reason))
    assert states is not None
    ok = [state in ("cancelled", "cancelling") for state in states]
    if args.json:
        jobs = [{"id": i, "status": s, "cancelled": c} for i, s, c in zip(ids, states, ok, strict=True)]
        print_json({"jobs": jobs})
    else:
        for job_id, state in zip(ids, states, strict=True):
            print(f"{job_id}  {_cancel_text(state)}")
    return 0 if all(ok) else 1


# -- pause and resume ----------------------------------------------------------------------------------------


def _default_by() -> str:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no user name in the environment or the password database
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def cmd_pause(args: argparse.Namespace) -> int:
    """Pause the queue: no worker starts a job until ``aqueue resume`` (running jobs finish)."""
    tasks = prepare(args, _REMOTE)
    by = args.by if args.by is not None else _default_by()

    async def run() -> tuple[bool, dict[str, Any] | None]:
        changed = await tasks.pause(by=by)
        return changed, await tasks.paused()

    got = session(tasks, run)
    assert got is not None
    changed, state = got
    if args.json:
        print_json({"queue": tasks.queue, "changed": changed, "paused": state})
    elif changed:
        print(f"paused queue {tasks.queue}: no worker starts a job until `aqueue resume`")
    else:
        print(f"queue {tasks.queue} was already paused {describe_pause(state or {})}")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    """Resume a paused queue."""
    tasks = prepare(args, _REMOTE)
    changed = session(tasks, tasks.resume)
    assert changed is not None
    if args.json:
        print_json({"queue": tasks.queue, "changed": changed, "paused": None})
    else:
        print(f"resumed queue {tasks.queue}" if changed else f"queue {tasks.queue} was not paused")
    return 0


# -- cleanup -------------------------------------------------------------------------------------------------


def cmd_cleanup(args: argparse.Namespace) -> int:
    """Delete finished job records that ended at least ``--older-than`` ago."""
    tasks = prepare(args, _REMOTE)
    statuses = args.status if args.status is not None else list(FINISHED_STATUSES)
    deleted = session(tasks, lambda: tasks.cleanup(older_than=args.older_than, statuses=statuses))
    assert deleted is not None
    if args.json:
        print_json({"queue": tasks.queue, "deleted": deleted, "older_than": args.older_than, "statuses": statuses})
    else:
        age = f" that finished at least {span(args.older_than)} ago" if args.older_than else ""
        print(f"deleted {plural(deleted, 'job record')} ({', '.join(statuses)}){age}")
    return 0


# -- job -----------------------------------------------------------------------------------------------------


_TIMES = (("enqueued", "enqueued_at"), ("due", "due_at"), ("expires", "expires_at"), ("started", "started_at"),
          ("finished", "finished_at"))  # fmt: skip


def _call_lines(view: dict[str, Any]) -> list[str]:
    """What the job is: task, status and attempts, priority, and the call with its arguments."""
    attempts = view["attempts"] or 0
    limit = f" of {view['max_attempts']}" if view.get("max_attempts") else ""
    call = [orjson.dumps(a).decode() for a in view["args"]]
    call += [f"{k}={orjson.dumps(v).decode()}" for k, v in view["kwargs"].items()]
    return [
        f"task       {view['task']}",
        f"status     {view['status']} (attempt {attempts}{limit})",
        f"priority   {view['priority'] or 'unknown'}",
        f"call       {view['task']}({one_line(', '.join(call), 200)})",
    ]


def _time_lines(view: dict[str, Any]) -> list[str]:
    """When it was enqueued, is due, expires, started and finished, and how long it took."""
    waiting = view["status"] in ("queued", "scheduled", "waiting", "failed")  # due and expiry matter only then
    lines = [
        f"{label:<10} {when(view[key])}"
        for label, key in _TIMES
        if view.get(key) is not None and (waiting or key not in ("due_at", "expires_at"))
    ]
    if view.get("started_at") is not None and view.get("finished_at") is not None:
        lines.append(f"took       {max(0.0, view['finished_at'] - view['started_at']):.3f}s")
    return lines


def _state_lines(view: dict[str, Any]) -> list[str]:
    """Where it stands: its worker, progress, workflow step, and a pending cancellation."""
    lines = []
    if view.get("worker"):
        lines.append(f"worker     {view['worker']}")
    if view.get("progress") is not None:
        message = f" {view['progress_message']}" if view.get("progress_message") else ""
        lines.append(f"progress   {view['progress']:g}%{message}")
    if view.get("workflow"):
        lines.append(f"workflow   {view['workflow']} (step {view.get('step') or '?'})")
    if view.get("cancel_requested") and view["status"] == "active":
        lines.append("cancel     requested: its worker was told to stop it")
    return lines + _header_lines(view.get("headers") or {})


def _header_lines(headers: dict[str, str]) -> list[str]:
    """The job's headers, one ``name=value`` a line (each on one line, shortened)."""
    pairs = [f"{one_line(k, 128)}={one_line(v, 200)}" for k, v in headers.items()]
    return [f"{'headers' if i == 0 else '':<10} {pair}" for i, pair in enumerate(pairs)]


def _log_lines(view: dict[str, Any]) -> list[str]:
    """What the job logged: one ``time level message`` line each (a message's further lines indented)."""
    logs = view.get("logs") or []
    if not logs:
        return []
    dropped = view.get("logs_dropped") or 0
    lines = [f"logs       {len(logs)} lines, times UTC" + (f" ({dropped} earlier lines dropped)" if dropped else "")]
    for entry in logs:
        first, *more = str(entry["message"]).splitlines() or [""]
        stamp = datetime.fromtimestamp(entry["timestamp"], UTC).strftime("%H:%M:%S.%f")[:-3]
        lines.append(f"  {stamp} {entry['level']:<7} {first}")
        lines += [f"  {'':<20} {line}" for line in more]
    return lines


def _outcome_lines(view: dict[str, Any]) -> list[str]:
    """How it ended: its result, or its error and traceback."""
    lines = []
    if view["status"] == "succeeded":
        lines.append(f"result     {one_line(orjson.dumps(view['result']).decode(), 2000)}")
    if view.get("error"):
        first, *more = str(view["error"]).splitlines() or [""]
        lines += [f"error      {first}", *(f"           {line}" for line in more)]
    if view.get("traceback"):
        lines.append("traceback")
        lines += ["  " + line for line in str(view["traceback"]).rstrip().splitlines()]
    return lines


def _job_lines(view: dict[str, Any]) -> list[str]:
    """A job's record as ``field  value`` lines: what it is, where it stands, and how it ended."""
    return [*_call_lines(view), *_time_lines(view), *_state_lines(view), *_outcome_lines(view), *_log_lines(view)]


def cmd_job(args: argparse.Namespace) -> int:
    """Show the records of jobs by id: status, attempts, times, worker, result or error and traceback."""
    tasks = prepare(args, _REMOTE)
    ids = list(dict.fromkeys(args.job_ids))
    views = session(tasks, lambda: tasks._job_views(ids))
    assert views is not None
    if args.json:
        print_json(
            {"jobs": [v if v is not None else {"id": i, "status": "unknown"} for i, v in zip(ids, views, strict=True)]}
        )
    else:
        for n, (job_id, view) in enumerate(zip(ids, views, strict=True)):
            if n:
                print()
            if view is None:
                print(f"{job_id}  no such job (never enqueued, or its retention expired)")
                continue
            print(job_id)
            for line in _job_lines(view):
                print("  " + line)
    return 1 if None in views else 0


# -- registration --------------------------------------------------------------------------------------------


def add_commands(command: Callable[..., argparse.ArgumentParser], sub: Any) -> None:
    """Register the commands: ``command(name, handler, help, log_level, within=subparsers)`` is the one
    :func:`aqueue.cli.main.build_parser` uses for its own commands (target, ``--redis``, ``--queue``, logging);
    ``sub`` is the parser's sub-parsers action."""

    def with_json(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--json", action="store_true", help="print JSON instead of text")
        return p

    help_dl = "list or reprocess the dead-letter stream"
    dl = sub.add_parser("dead-letter", help=help_dl, description=help_dl, allow_abbrev=False)
    actions = dl.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = with_json(command("list", cmd_dead_list, "show the newest dead-letter entries", "warning", within=actions))
    ls.add_argument("--limit", type=count, default=20, metavar="N", help="entries to show (default 20)")
    rp = with_json(command("reprocess", cmd_dead_reprocess, "put dead jobs back on their streams", "warning",
                           within=actions))  # fmt: skip
    rp.add_argument("job_ids", nargs="*", metavar="JOB_ID", help="dead jobs to put back")
    rp.add_argument("--all", action="store_true", help="every dead job, oldest first, in batches of 1000")
    rp.add_argument("--max", type=count, metavar="N", help="the oldest N dead jobs")

    j = with_json(command("job", cmd_job, "show jobs by id: status, attempts, times, worker, result or error",
                          "warning"))  # fmt: skip
    j.add_argument("job_ids", nargs="+", metavar="JOB_ID", help="jobs to show")

    r = with_json(command("retry", cmd_retry, "re-run dead, cancelled or expired jobs (or failed ones now) by id",
                          "warning"))  # fmt: skip
    r.add_argument("job_ids", nargs="+", metavar="JOB_ID", help="jobs to re-run")

    c = with_json(command("cancel", cmd_cancel, "cancel jobs by id", "warning"))
    c.add_argument("job_ids", nargs="+", metavar="JOB_ID", help="jobs to cancel")
    c.add_argument("--reason", default="cancelled", metavar="TEXT", help="recorded as the job's error")

    p = with_json(command("pause", cmd_pause, "pause the queue: workers start no job until resumed", "warning"))
    p.add_argument("--by", metavar="TEXT", help="who paused it, shown by `aqueue info` (default cli:USER@HOST)")
    with_json(command("resume", cmd_resume, "resume a paused queue", "warning"))

    cl = with_json(command("cleanup", cmd_cleanup, "delete finished job records", "warning"))
    cl.add_argument("--older-than", type=parse_duration, default=0.0, metavar="DURATION",
                    help="only records finished at least this long ago: seconds, or 30s, 15m, 2h, 7d "
                    "(default 0: all)")  # fmt: skip
    cl.add_argument("--status", type=parse_statuses, metavar="LIST",
                    help=f"comma-separated statuses to delete (default {','.join(FINISHED_STATUSES)})")  # fmt: skip
