"""Run every benchmark in sequence, streaming their output, and end with a summary.

Run from the repository root::

    python benchmarks/run_all.py [--quick] [--all] [--only NAME,...] [--redis URL] [--log FILE] [--timeout S]

Runs ``throughput.py``, ``latency.py``, ``sleepers.py``, ``processes.py``, ``memory.py`` and ``groups.py`` (and
``autoscale.py``, about 7 minutes, and ``peers.py``, which installs six other queues in virtual environments, only
with ``--all``), each as a subprocess of this interpreter
(``sys.executable``) with its own defaults, which are the full-report sizes. ``--quick`` passes each the smaller
sizes of ``QUICK`` below; a flag a script does not list in its ``--help`` is dropped with a note, and a script that
does not exist is skipped with a note, so the mapping can lag behind the scripts without breaking the run.
``--redis`` is passed on to every script.

A failing script does not stop the run, nor does a hung one: after ``--timeout`` seconds (default 30 minutes) a
script gets SIGINT (so it can delete its keys), then SIGKILL 30 s later. The summary lists each script's exit
code, wall time and the target lines it marked ``MISSED``; the exit code is 0 only if every script that ran exited
0 (a missed target is reported, not an error: the scripts never assert times).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: Scripts in run order; ``autoscale`` runs only with ``--all``.
ORDER = ("throughput", "latency", "sleepers", "processes", "memory", "groups")
EXTRA = ("autoscale", "peers")
KILL_AFTER = 30.0  # seconds between the timeout's SIGINT and SIGKILL

#: Arguments each script gets with ``--quick`` (full runs use each script's defaults).
QUICK: dict[str, list[str]] = {
    "throughput": ["--jobs", "20000"],
    "latency": ["--seconds", "5"],
    "sleepers": ["--jobs", "20000"],
    "processes": ["--jobs", "20000"],
    "memory": ["--jobs", "40000"],
    "groups": ["--jobs", "20000"],
    "autoscale": ["--quick"],
    "peers": ["--jobs", "5000", "--seconds", "5"],
}


@dataclass
class Result:
    name: str
    code: int | None  # None: skipped
    seconds: float = 0.0
    missed: list[str] = field(default_factory=list)
    note: str = ""


def script_flags(path: Path) -> set[str] | None:
    """The ``--flags`` a script lists in its ``--help``, or None if that did not work."""
    try:
        done = subprocess.run(
            [sys.executable, str(path), "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return set(re.findall(r"(?<![\w-])--[a-z][\w-]*", done.stdout))


def filter_args(args: list[str], known: set[str] | None) -> tuple[list[str], list[str]]:
    """Keep the flags (and their values) a script knows; returns (kept, dropped flags)."""
    if known is None:
        return args, []
    kept: list[str] = []
    dropped: list[str] = []
    i = 0
    while i < len(args):
        flag = args[i]
        value = [args[i + 1]] if i + 1 < len(args) and not args[i + 1].startswith("--") else []
        if flag.split("=", 1)[0] in known:
            kept += [flag, *value]
        else:
            dropped.append(flag)
        i += 1 + len(value)
    return kept, dropped


def emit(line: str, log: TextIO | None) -> None:
    sys.stdout.write(line)
    sys.stdout.flush()
    if log is not None:
        log.write(line)
        log.flush()


def run_script(name: str, extra: list[str], log: TextIO | None, timeout: float | None = None) -> Result:
    path = HERE / f"{name}.py"
    if not path.exists():
        emit(f"\n=== {name}: skipped, {path.relative_to(ROOT)} not found\n", log)
        return Result(name, None, note="not found")
    args, dropped = filter_args(extra, script_flags(path))
    cmd = [sys.executable, str(path.relative_to(ROOT)), *args]
    emit(f"\n=== {name}: {' '.join([Path(sys.executable).name, *cmd[1:]])}\n", log)
    if dropped:
        emit(f"    (not passed, {name}.py --help does not list them: {' '.join(dropped)})\n", log)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    missed: list[str] = []
    timed_out = threading.Event()
    t0 = time.perf_counter()
    with subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as proc:
        assert proc.stdout is not None

        def expire() -> None:
            # SIGINT first, so the script's cleanup (deleting its keys) runs; SIGKILL if that does not end it.
            timed_out.set()
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=KILL_AFTER)
                except subprocess.TimeoutExpired:
                    proc.kill()

        timer = threading.Timer(timeout, expire) if timeout else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            for line in proc.stdout:
                emit(line, log)
                if "MISSED" in line:
                    missed.append(" ".join(line.split()))
            code = proc.wait()
        except KeyboardInterrupt:  # the child got the SIGINT too (same process group): let it finish
            code = proc.wait()
            raise
        finally:
            if timer is not None:
                timer.cancel()
    seconds = time.perf_counter() - t0
    notes = [f"dropped {' '.join(dropped)}"] if dropped else []
    if timed_out.is_set():
        notes.append(f"stopped after the {timeout:g} s timeout")
    emit(f"=== {name}: exit {code} after {seconds:.1f} s{' (timed out)' if timed_out.is_set() else ''}\n", log)
    return Result(name, code, seconds, missed, note="; ".join(notes))


def summary(results: list[Result], log: TextIO | None) -> None:
    emit("\nsummary:\n", log)
    emit(f"  {'script':<12} {'exit':>5} {'wall':>9}  missed targets\n", log)
    for res in results:
        code = "skip" if res.code is None else str(res.code)
        wall = f"{res.seconds:8.1f}s" if res.code is not None else ""
        first = res.missed[0] if res.missed else ("-" if res.code is not None else "")
        note = f"  [{res.note}]" if res.note else ""
        emit(f"  {res.name:<12} {code:>5} {wall:>9}  {first}{note}\n", log)
        for more in res.missed[1:]:
            emit(f"  {'':<12} {'':>5} {'':>9}  {more}\n", log)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (see QUICK in this file)")
    parser.add_argument("--all", action="store_true", help="also run autoscale.py (about 7 minutes)")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(ORDER + EXTRA)}")
    parser.add_argument("--redis", help="Redis URL passed to every script (default: each script's)")
    parser.add_argument("--log", metavar="FILE", help="also write everything printed to FILE")
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds per script before it is stopped (default 1800; 0: none)"
    )
    args = parser.parse_args()
    names = list(ORDER + EXTRA if args.all else ORDER)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in ORDER + EXTRA]
        if unknown:
            parser.error(f"--only: unknown {', '.join(unknown)} (known: {', '.join(ORDER + EXTRA)})")
        names = [n for n in ORDER + EXTRA if n in wanted]

    results: list[Result] = []
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(open(args.log, "w")) if args.log else None
        try:
            emit(f"run_all: {', '.join(names)}{' (quick)' if args.quick else ''} with {sys.executable}\n", log)
            for name in names:
                extra = list(QUICK.get(name, [])) if args.quick else []
                if args.redis:
                    extra += ["--redis", args.redis]
                results.append(run_script(name, extra, log, args.timeout or None))
        except KeyboardInterrupt:
            emit("\ninterrupted\n", log)
        finally:
            summary(results, log)
            emit(f"  total {time.perf_counter() - started:.1f} s\n", log)
    failed = [r for r in results if r.code not in (0, None)]
    raise SystemExit(1 if failed or len(results) < len(names) else 0)


if __name__ == "__main__":
    main()
