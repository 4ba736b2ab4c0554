"""The ``aqueue`` command: ``worker`` (optionally ``--web``), ``web``, ``enqueue``, ``info``, ``demo``, and the
job-control commands of :mod:`aqueue.cli.control` (``job``, ``dead-letter``, ``cancel``, ``pause``, ``resume``,
``cleanup``).

Every user error (bad ``MODULE:ATTR``, bad flag or environment value, unreachable Redis) ends as one line
``aqueue: error: …`` on stderr and exit code 2, never a traceback. This module builds the parser and runs a command;
the package's other modules each do one job: :mod:`~aqueue.cli.options` (flags and their ``AQUEUE_*`` variables),
:mod:`~aqueue.cli.logs` (logging, configured here and only here: the library never touches it),
:mod:`~aqueue.cli.session` (loading the ``Tasks`` and running a command's work against Redis),
:mod:`~aqueue.cli.serve` (``worker`` and ``web``), :mod:`~aqueue.cli.processes` (``worker --processes N``),
:mod:`~aqueue.cli.commands` (``enqueue``, ``info``, ``demo``), :mod:`~aqueue.cli.control` (job control) and
:mod:`~aqueue.cli.text` (how they print).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from aqueue._core.errors import AqueueError
from aqueue._version import __version__
from aqueue.cli import control
from aqueue.cli.commands import cmd_demo, cmd_enqueue, cmd_info
from aqueue.cli.logs import setup_logging
from aqueue.cli.options import (
    LEVELS,
    CliError,
    Parser,
    apply_env,
    aware_time,
    bind,
    choice,
    count,
    cpu_count,
    meta_list,
    meta_pair,
    non_negative,
    number,
    option,
    origins,
    positive,
)
from aqueue.cli.serve import cmd_web, cmd_worker

__all__ = ["CliError", "build_parser", "main"]


# -- parser and entry point ----------------------------------------------------------------------------------


def _weights(text: str) -> dict[str, int]:
    """``--weights orders=3,emails=1``: each queue's share of a worker of several queues (integers >= 1)."""
    weights: dict[str, int] = {}
    for item in text.split(","):
        queue, sep, value = item.strip().partition("=")
        try:
            weight = int(value) if sep and queue.strip() else 0
        except ValueError:
            weight = 0
        if weight < 1:
            raise argparse.ArgumentTypeError(f"expected QUEUE=N[,QUEUE=N...] with integers N >= 1, got {text!r}")
        if queue.strip() in weights:
            raise argparse.ArgumentTypeError(f"queue {queue.strip()!r} given twice in {text!r}")
        weights[queue.strip()] = weight
    return weights


def _web_options(p: argparse.ArgumentParser, flag: str, env: str, default: Any, help: str) -> None:
    option(p, flag, env, default, help, type=bind, metavar="HOST:PORT")
    p.add_argument("--token-env", metavar="VAR", help="require the token held in environment variable VAR "
                   "(Authorization: Bearer) on mutating endpoints and the WebSocket")  # fmt: skip
    option(p, "--protect-reads", "AQUEUE_PROTECT_READS", False, "require the token on read endpoints too",
           action="store_true")  # fmt: skip
    option(p, "--allow-origin", "AQUEUE_ALLOW_ORIGINS", (), "comma-separated origins (https://host[:port]) whose "
           "pages may call mutating endpoints and open the WebSocket; by default only the app's own",
           type=origins, metavar="ORIGINS")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The ``aqueue`` argument parser."""
    parser = Parser(prog="aqueue", description="asyncio job queue on Redis Streams", allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"aqueue {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, handler: Callable[[argparse.Namespace], int], help: str, log_level: str, within: Any = sub
    ) -> Any:
        p = within.add_parser(name, help=help, description=help, allow_abbrev=False)
        p.set_defaults(handler=handler)
        if name in ("worker", "web"):  # one process may serve several queues
            p.add_argument("target", metavar="MODULE:ATTR", nargs="+", help="the aqueue.Tasks, e.g. "
                           "myapp.jobs:tasks; several (myapp.jobs:orders myapp.jobs:emails) for their queues "
                           "in one process")  # fmt: skip
        elif name != "demo":
            p.add_argument("target", metavar="MODULE:ATTR", help="the aqueue.Tasks, e.g. myapp.jobs:tasks")
        if name != "demo":
            option(p, "--redis", "AQUEUE_REDIS_URL", None, "Redis URL (default: the Tasks')", metavar="URL")
            option(p, "--queue", "AQUEUE_QUEUE", None, "queue name (default: the Tasks'; one MODULE:ATTR only)",
                   metavar="NAME")  # fmt: skip
        levels = "|".join(LEVELS)
        option(p, "--log-level", "AQUEUE_LOG_LEVEL", log_level, f"{levels} (default {log_level})",
               type=choice(*LEVELS), metavar="LEVEL")  # fmt: skip
        option(p, "--log-format", "AQUEUE_LOG_FORMAT", "text", "text|json (default text)",
               type=choice("text", "json"), metavar="FORMAT")  # fmt: skip
        return p

    w = command("worker", cmd_worker, "run the jobs of a queue, or of several queues sharing one pool of slots",
                "info")  # fmt: skip
    option(w, "--concurrency", "AQUEUE_CONCURRENCY", None, "jobs run at once per process (default 100; with "
           "min/max: the starting point; several queues share them)", type=count, metavar="N")  # fmt: skip
    option(w, "--weights", "AQUEUE_WEIGHTS", None, "with several MODULE:ATTR: each queue's weight in the sharing "
           "of the slots, e.g. orders=3,emails=1 (default 1 each)", type=_weights, metavar="Q=N,...")  # fmt: skip
    option(w, "--min-concurrency", "AQUEUE_MIN_CONCURRENCY", None, "autoscale: lowest concurrency (default 1)",
           type=count, metavar="N")  # fmt: skip
    option(w, "--max-concurrency", "AQUEUE_MAX_CONCURRENCY", None, "autoscale: highest concurrency",
           type=count, metavar="N")  # fmt: skip
    option(w, "--strategy", "AQUEUE_STRATEGY", "default", "autoscale strategy: default|aggressive|conservative|"
           "predictive", type=choice("default", "aggressive", "conservative", "predictive"),
           metavar="NAME")  # fmt: skip
    option(w, "--scale-interval", "AQUEUE_SCALE_INTERVAL", 0.5, "seconds between scaling decisions (default 0.5)",
           type=positive, metavar="S")  # fmt: skip
    option(w, "--cooldown", "AQUEUE_COOLDOWN", 5.0, "seconds between direction changes (default 5)",
           type=non_negative, metavar="S")  # fmt: skip
    option(w, "--prefetch", "AQUEUE_PREFETCH", 0, "jobs claimed beyond free slots (default 0)",
           type=number(int, 0, strict=False), metavar="N")  # fmt: skip
    option(w, "--burst", "AQUEUE_BURST", False, "exit once nothing is queued, due or running",
           action="store_true")  # fmt: skip
    option(w, "--max-jobs", "AQUEUE_MAX_JOBS", None, "with --burst: exit once each process has started N jobs "
           "(it claims no more than N; one MODULE:ATTR only)", type=count, metavar="N")  # fmt: skip
    option(w, "--meta", "AQUEUE_META", [], "metadata KEY=VALUE shown with the worker in info, /status and the "
           "dashboard; repeatable (env: comma-separated)", env_type=meta_list, type=meta_pair, action="append",
           metavar="KEY=VALUE")  # fmt: skip
    option(w, "--processes", "AQUEUE_PROCESSES", 1, "worker processes (default 1)", type=count, metavar="N")
    option(w, "--cpu-workers", "AQUEUE_CPU_WORKERS", None, "size of each worker's pool of child processes for "
           "executor='process' tasks (default: the CPU count; started only when the app has such a task)",
           type=cpu_count, metavar="N")  # fmt: skip
    option(w, "--loop", "AQUEUE_LOOP", "asyncio", "event loop: asyncio or uvloop (pip install 'aqueue[uvloop]')",
           type=choice("asyncio", "uvloop"))  # fmt: skip
    option(w, "--lease", "AQUEUE_LEASE", None, "seconds before a silent worker's jobs are taken back (default: "
           "the queue's lease, 30 unless its QueueSettings say otherwise)",
           type=positive, metavar="S")  # fmt: skip
    option(w, "--shutdown-timeout", "AQUEUE_SHUTDOWN_TIMEOUT", 10.0, "seconds running jobs get to finish "
           "on stop (default 10)", type=non_negative, metavar="S")  # fmt: skip

    _web_options(w, "--web", "AQUEUE_WEB", None, "also serve the web app (status, metrics, REST, dashboard) on "
                 "HOST:PORT")  # fmt: skip

    web_cmd = command("web", cmd_web, "serve the web app alone (status, metrics, REST API, dashboard)", "info")
    _web_options(web_cmd, "--bind", "AQUEUE_WEB", ("127.0.0.1", 8080), "HOST:PORT to serve on (default "
                 "127.0.0.1:8080)")  # fmt: skip

    e = command("enqueue", cmd_enqueue, "enqueue one job and print its id", "warning")
    e.add_argument("task", metavar="TASK", help="registered task name")
    e.add_argument("--args", metavar="JSON", help="positional arguments, a JSON array")
    e.add_argument("--kwargs", metavar="JSON", help="keyword arguments, a JSON object")
    e.add_argument("--priority", metavar="P", help="priority level (default: the task's)")
    e.add_argument("--group", metavar="G", help="the job's group (groups take turns; see docs/queues.md)")
    e.add_argument("--delay", type=non_negative, metavar="S", help="seconds until the job is due")
    e.add_argument("--at", type=aware_time, metavar="TIME",
                   help="when the job is due instead: ISO 8601 with its offset, e.g. 2026-12-24T09:00:00Z")  # fmt: skip
    e.add_argument("--wait", nargs="?", type=positive, const=30.0, metavar="S",
                   help="then wait up to S seconds (default 30) for the job to finish and print its result as JSON; "
                   "exit 1 if it failed, was cancelled or is still unfinished")  # fmt: skip

    i = command("info", cmd_info, "show a queue's depths, counters and workers", "warning")
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")

    control.add_commands(command, sub)

    d = command("demo", cmd_demo, "run a self-contained demo on in-process memory://", "error")
    d.add_argument("--jobs", type=count, default=2000, metavar="N", help="jobs to enqueue (default 2000)")
    d.add_argument("--concurrency", type=count, default=50, metavar="N", help="worker concurrency (default 50)")
    d.add_argument("--seconds", type=positive, default=60.0, metavar="S", help="time limit (default 60)")
    d.add_argument("--web", nargs="?", type=bind, const=("127.0.0.1", 8080), metavar="HOST:PORT",
                   help="also serve the dashboard and web app (default 127.0.0.1:8080) and, after the batch, keep "
                   "--rate jobs/s running until Ctrl-C")  # fmt: skip
    d.add_argument("--rate", type=positive, default=100.0, metavar="N",
                   help="with --web: jobs/s of the steady load after the batch (default 100)")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``aqueue`` command line; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
        apply_env(args)
        setup_logging(args.log_level, args.log_format)
        code: int = args.handler(args)
        return code
    except (CliError, AqueueError) as exc:
        print("aqueue: error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``aqueue dead-letter list | head``): not an error of ours. Point stdout at
        # /dev/null so the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a process killed by the signal would report
