"""Job-control commands of the ``aqueue`` CLI: ``job``, ``dead-letter list|reprocess``, ``cancel``, ``pause``,
``resume``, ``cleanup``.

Each one locates the :class:`~aqueue.Tasks` like ``info`` and ``enqueue`` do (``MODULE:ATTR``, ``--redis``,
``--queue``), prints a human-readable report or, with ``--json``, one JSON document, and exits 0 when everything
asked for was done, 1 when some of it was not (a job already finished, an unknown id), 2 on a user error.
:func:`add_commands` registers them on the parser :func:`aqueue.cli.main.build_parser` builds.
"""

from __future__ import annotations

import argparse
import getpass
import math
import re
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from aqueue._core.tasks import FINISHED_STATUSES
from aqueue._redis.broker import Broker
from aqueue.cli.main import CliError, _count, _prepare, _session

__all__ = ["add_commands", "describe_pause", "parse_duration", "parse_statuses"]

#: Jobs one cancel or requeue script call handles.
BATCH = 1000
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


# -- output helpers ------------------------------------------------------------------------------------------


def _print_json(data: Any) -> None:
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def _when(ts: float | None) -> str:
    if ts is None:
        return "an unknown time"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(seconds: float) -> str:
    """``45s``, ``1.5m``, ``2h``, ``7d``."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or unit == "s":
            return f"{seconds / size:.1f}".rstrip("0").rstrip(".") + unit
    raise AssertionError("unreachable")


def describe_pause(paused: dict[str, Any]) -> str:
    """``since 2024-05-01 12:00:00 UTC (5m ago) by NAME`` for a :meth:`Tasks.paused` record."""
    at = paused.get("at")
    at = float(at) if isinstance(at, int | float) and math.isfinite(at) else None
    age = "" if at is None else f" ({_span(time.time() - at)} ago)"
    return f"since {_when(at)}{age} by {paused.get('by') or 'unknown'}"


def _one_line(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


# -- dead-letter list ----------------------------------------------------------------------------------------


def cmd_dead_list(args: argparse.Namespace) -> int:
    """Print the newest dead-letter entries: entry id, when, job id, task and reason."""
    from aqueue.web.listing import dead_entry_view  # the web package imports aiohttp: only when needed

    tasks = _prepare(args, _REMOTE)

    async def read() -> tuple[list[tuple[str, dict[str, str]]], int]:
        broker = await tasks._broker()
        return await broker.dead_page(None, args.limit, newest_first=True), await broker.dead_length()

    got = _session(tasks, read)
    assert got is not None
    page, total = got
    entries = [dead_entry_view(entry_id, fields) for entry_id, fields in page]
    if args.json:
        _print_json({"queue": tasks.queue, "total": total, "entries": entries})
        return 0
    shown = f", newest {len(entries)} shown" if total > len(entries) else ""
    print(f"{_plural(total, 'dead-letter entry', 'dead-letter entries')} in queue {tasks.queue}{shown}")
    if entries:
        rows: list[tuple[str, ...]] = [("ENTRY", "DEAD AT", "JOB", "TASK", "REASON")]
        rows += [(e["id"], _when(e["dead_at"]), e["job"], e["task"], _one_line(e["reason"], 80)) for e in entries]
        _table(rows)
    return 0


# -- dead-letter reprocess -----------------------------------------------------------------------------------


async def reprocess(
    broker: Broker, job_ids: list[str] | None, limit: int | None
) -> tuple[list[str], list[tuple[str, str]]]:
    """Put dead jobs back on their streams: ``job_ids``, else the oldest ``limit`` (None: all) dead jobs.

    Returns the job ids requeued and (job id, reason) for each one skipped. Without ids it works in batches of
    :data:`BATCH`, oldest first, and never takes a job twice: one that fails again while this runs, and is
    dead-lettered again, is left for the next run rather than looping forever.
    """
    from aqueue.web.listing import find_dead_entries, oldest_dead  # imports aiohttp: only when needed

    requeued: list[str] = []
    skipped: list[tuple[str, str]] = []
    if job_ids is not None:
        ids = list(dict.fromkeys(job_ids))
        for i in range(0, len(ids), BATCH):
            batch = ids[i : i + BATCH]
            entries = await find_dead_entries(broker, batch)
            done, why = await broker.requeue([(j, *entries.get(j, [])) for j in batch], "reprocess")
            requeued += done
            skipped += why
        return requeued, skipped
    seen: set[str] = set()
    while limit is None or len(seen) < limit:
        want = BATCH if limit is None else min(BATCH, limit - len(seen))
        found = await oldest_dead(broker, want)
        fresh = [(j, *entry_ids) for j, entry_ids in found.items() if j not in seen]
        if not fresh:
            break
        seen.update(item[0] for item in fresh)
        done, why = await broker.requeue(fresh, "reprocess")
        requeued += done
        skipped += why
        if len(found) < want:  # that was every dead job left
            break
    return requeued, skipped


def cmd_dead_reprocess(args: argparse.Namespace) -> int:
    """Put dead jobs back on their streams: the given ids, the oldest ``--max N``, or ``--all``."""
    chosen = [flag for flag, given in (("JOB_ID", args.job_ids), ("--all", args.all), ("--max", args.max)) if given]
    if len(chosen) != 1:
        raise CliError(f"give exactly one of JOB_ID..., --all or --max N (got {' and '.join(chosen) or 'none'})")
    tasks = _prepare(args, _REMOTE)

    async def run() -> tuple[list[str], list[tuple[str, str]], int]:
        broker = await tasks._broker()
        limit = None if args.all else args.max
        requeued, skipped = await reprocess(broker, args.job_ids or None, limit)
        return requeued, skipped, await broker.dead_length()

    got = _session(tasks, run)
    assert got is not None
    requeued, skipped, left = got
    if args.json:
        _print_json({"requeued": requeued, "skipped": [{"id": i, "reason": why} for i, why in skipped], "left": left})
    else:
        entries = _plural(left, "dead-letter entry", "dead-letter entries")
        print(f"requeued {_plural(len(requeued), 'job')}; {entries} left")
        for job_id, why in skipped:
            print(f"skipped {job_id}: {why}")
    return 1 if skipped else 0


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
    tasks = _prepare(args, _REMOTE)
    ids = list(dict.fromkeys(args.job_ids))

    async def run() -> list[str]:
        broker = await tasks._broker()
        states: list[str] = []
        for i in range(0, len(ids), BATCH):
            states += await broker.cancel(ids[i : i + BATCH], args.reason)
        return states

    states = _session(tasks, run)
    assert states is not None
    ok = [state in ("cancelled", "cancelling") for state in states]
    if args.json:
        jobs = [{"id": i, "status": s, "cancelled": c} for i, s, c in zip(ids, states, ok, strict=True)]
        _print_json({"jobs": jobs})
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
    tasks = _prepare(args, _REMOTE)
    by = args.by if args.by is not None else _default_by()

    async def run() -> tuple[bool, dict[str, Any] | None]:
        changed = await tasks.pause(by=by)
        return changed, await tasks.paused()

    got = _session(tasks, run)
    assert got is not None
    changed, state = got
    if args.json:
        _print_json({"queue": tasks.queue, "changed": changed, "paused": state})
    elif changed:
        print(f"paused queue {tasks.queue}: no worker starts a job until `aqueue resume`")
    else:
        print(f"queue {tasks.queue} was already paused {describe_pause(state or {})}")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    """Resume a paused queue."""
    tasks = _prepare(args, _REMOTE)
    changed = _session(tasks, tasks.resume)
    assert changed is not None
    if args.json:
        _print_json({"queue": tasks.queue, "changed": changed, "paused": None})
    else:
        print(f"resumed queue {tasks.queue}" if changed else f"queue {tasks.queue} was not paused")
    return 0


# -- cleanup -------------------------------------------------------------------------------------------------


def cmd_cleanup(args: argparse.Namespace) -> int:
    """Delete finished job records that ended at least ``--older-than`` ago."""
    tasks = _prepare(args, _REMOTE)
    statuses = args.status if args.status is not None else list(FINISHED_STATUSES)
    deleted = _session(tasks, lambda: tasks.cleanup(older_than=args.older_than, statuses=statuses))
    assert deleted is not None
    if args.json:
        _print_json({"queue": tasks.queue, "deleted": deleted, "older_than": args.older_than, "statuses": statuses})
    else:
        age = f" that finished at least {_span(args.older_than)} ago" if args.older_than else ""
        print(f"deleted {_plural(deleted, 'job record')} ({', '.join(statuses)}){age}")
    return 0


# -- job -----------------------------------------------------------------------------------------------------


def _job_lines(view: dict[str, Any]) -> list[str]:
    """A job's record as ``field  value`` lines: what it is, where it stands, and how it ended."""
    attempts = view["attempts"] or 0
    limit = f" of {view['max_attempts']}" if view.get("max_attempts") else ""
    lines = [
        f"task       {view['task']}",
        f"status     {view['status']} (attempt {attempts}{limit})",
        f"priority   {view['priority'] or 'unknown'}",
    ]
    call = [orjson.dumps(a).decode() for a in view["args"]]
    call += [f"{k}={orjson.dumps(v).decode()}" for k, v in view["kwargs"].items()]
    lines.append(f"call       {view['task']}({_one_line(', '.join(call), 200)})")
    waiting = view["status"] in ("queued", "scheduled", "waiting", "failed")  # due and expiry matter only then
    for label, key in (("enqueued", "enqueued_at"), ("due", "due_at"), ("expires", "expires_at"),
                       ("started", "started_at"), ("finished", "finished_at")):  # fmt: skip
        if view.get(key) is not None and (waiting or key not in ("due_at", "expires_at")):
            lines.append(f"{label:<10} {_when(view[key])}")
    if view.get("started_at") is not None and view.get("finished_at") is not None:
        lines.append(f"took       {max(0.0, view['finished_at'] - view['started_at']):.3f}s")
    if view.get("worker"):
        lines.append(f"worker     {view['worker']}")
    if view.get("progress") is not None:
        message = f" {view['progress_message']}" if view.get("progress_message") else ""
        lines.append(f"progress   {view['progress']:g}%{message}")
    if view.get("workflow"):
        lines.append(f"workflow   {view['workflow']} (step {view.get('step') or '?'})")
    if view.get("cancel_requested") and view["status"] == "active":
        lines.append("cancel     requested: its worker was told to stop it")
    if view["status"] == "succeeded":
        lines.append(f"result     {_one_line(orjson.dumps(view['result']).decode(), 2000)}")
    if view.get("error"):
        first, *more = str(view["error"]).splitlines() or [""]
        lines += [f"error      {first}", *(f"           {line}" for line in more)]
    if view.get("traceback"):
        lines.append("traceback")
        lines += ["  " + line for line in str(view["traceback"]).rstrip().splitlines()]
    return lines


def cmd_job(args: argparse.Namespace) -> int:
    """Show the records of jobs by id: status, attempts, times, worker, result or error and traceback."""
    from aqueue.web.listing import job_view  # the web package imports aiohttp: only when needed

    tasks = _prepare(args, _REMOTE)
    ids = list(dict.fromkeys(args.job_ids))

    async def read() -> list[dict[str, str]]:
        broker = await tasks._broker()
        return await broker.get_records(ids)

    got = _session(tasks, read)
    assert got is not None
    views = [job_view(job_id, h) if h else None for job_id, h in zip(ids, got, strict=True)]
    if args.json:
        _print_json(
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
    ls.add_argument("--limit", type=_count, default=20, metavar="N", help="entries to show (default 20)")
    rp = with_json(command("reprocess", cmd_dead_reprocess, "put dead jobs back on their streams", "warning",
                           within=actions))  # fmt: skip
    rp.add_argument("job_ids", nargs="*", metavar="JOB_ID", help="dead jobs to put back")
    rp.add_argument("--all", action="store_true", help="every dead job, oldest first, in batches of 1000")
    rp.add_argument("--max", type=_count, metavar="N", help="the oldest N dead jobs")

    j = with_json(command("job", cmd_job, "show jobs by id: status, attempts, times, worker, result or error",
                          "warning"))  # fmt: skip
    j.add_argument("job_ids", nargs="+", metavar="JOB_ID", help="jobs to show")

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
