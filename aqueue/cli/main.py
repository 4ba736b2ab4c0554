"""The ``aqueue`` command: ``worker`` (optionally ``--web``), ``web``, ``enqueue``, ``info``, ``demo``, and the
job-control commands of :mod:`aqueue.cli.control` (``job``, ``dead-letter``, ``cancel``, ``pause``, ``resume``,
``cleanup``).

Every user error (bad ``MODULE:ATTR``, bad flag or environment value, unreachable Redis) ends as one line
``aqueue: error: …`` on stderr and exit code 2, never a traceback. Logging is configured here and only here:
the library itself never touches logging configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import logging
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import orjson

from aqueue._core.errors import AqueueError, BrokerUnavailable, JobCancelled, JobFailed, ResultTimeout
from aqueue._core.tasks import Tasks
from aqueue._version import __version__
from aqueue._worker.worker import Worker

if TYPE_CHECKING:
    from aiohttp import web

    from aqueue._core.info import QueueInfo

__all__ = ["CliError", "main"]

log = logging.getLogger("aqueue.cli.main")
T = TypeVar("T")
_LEVELS = ("debug", "info", "warning", "error", "critical")


class CliError(Exception):
    """A user error: reported as one ``aqueue: error: …`` line with exit code 2."""


class _Parser(argparse.ArgumentParser):
    _intermixing = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        # A command's positionals may follow its options (`aqueue cancel app:tasks --queue q ID…`): plain argparse
        # would give a `nargs="*"` positional nothing right after MODULE:ATTR and reject the ids that come later.
        if self._subparsers is not None or self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True  # parse_known_intermixed_args calls back in here
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False

    def error(self, message: str) -> NoReturn:
        # argparse would print the usage block too; the contract is a single line.
        raise CliError(message)


# -- value parsing (shared by flags and their AQUEUE_* environment variables) --------------------------------


def _number(kind: Callable[[str], float], minimum: float, strict: bool) -> Callable[[str], Any]:
    what = f"{'an integer' if kind is int else 'a number'} {'>' if strict else '>='} {minimum:g}"

    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        # NaN and infinity would pass a comparison and then break arithmetic in the worker.
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return convert


_count = _number(int, 1, strict=False)
_positive = _number(float, 0, strict=True)
_non_negative = _number(float, 0, strict=False)


def _choice(*allowed: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text.lower() not in allowed:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(allowed)}, got {text!r}")
        return text.lower()

    return convert


def _bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 as ``[::1]:PORT``) to serve the web app on; port 0 picks a free one."""
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT such as 127.0.0.1:8080, got {text!r}")
    return host, int(port)


def _origins(text: str) -> tuple[str, ...]:
    """Comma-separated origins such as ``https://admin.example.com,http://localhost:3000``."""
    origins = tuple(o.strip().rstrip("/") for o in text.split(",") if o.strip())
    bad = [o for o in origins if not re.fullmatch(r"https?://[^/\s]+", o)]
    if bad:
        raise argparse.ArgumentTypeError(f"expected origins like https://host[:port], got {', '.join(bad)}")
    return origins


def _flag(text: str) -> bool:
    if text.lower() not in ("", "0", "false", "no", "off", "1", "true", "yes", "on"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return text.lower() in ("1", "true", "yes", "on")


def _option(p: argparse.ArgumentParser, flag: str, env: str, default: Any, help: str, **kw: Any) -> None:
    """Add ``flag``, also read from ``$env`` when the flag is absent (the flag wins)."""
    convert = _flag if kw.get("action") == "store_true" else kw.setdefault("type", str)
    action = p.add_argument(flag, default=None, help=f"{help} [env {env}]", **kw)
    specs: list[tuple[str, str, Callable[[str], Any], Any]] | None = p.get_default("env_specs")
    if specs is None:
        specs = []
        p.set_defaults(env_specs=specs)
    specs.append((action.dest, env, convert, default))


def _apply_env(args: argparse.Namespace) -> None:
    for dest, env, convert, default in getattr(args, "env_specs", None) or ():
        if getattr(args, dest) is not None:
            continue
        value, text = default, os.environ.get(env)
        if text is not None:
            try:
                value = convert(text)
            except (argparse.ArgumentTypeError, ValueError) as exc:
                raise CliError(f"${env}: {exc}") from None
        setattr(args, dest, value)


# -- logging -------------------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message`` (and ``exc`` with a traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a single-line JSON object."""
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        out = {"ts": ts, "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def _setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    text = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    handler.setFormatter(JsonFormatter() if fmt == "json" else text)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


# -- shared steps --------------------------------------------------------------------------------------------


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


def _redact(url: str) -> str:
    password = urlsplit(url).password
    return url if password is None else url.replace(f":{password}@", ":***@", 1)


def _prepare(args: argparse.Namespace, needs_server: str | None) -> Tasks:
    """Load the target, apply ``--redis``/``--queue``; ``needs_server``: why ``memory://`` will not do."""
    tasks = load_tasks(args.target)
    tasks.configure(redis_url=args.redis, queue=args.queue)
    if needs_server and tasks.redis_url.startswith("memory:"):
        raise CliError(f"{tasks.redis_url} lives inside one process; {needs_server}")
    return tasks


def _loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if loop == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        raise CliError("--loop uvloop needs uvloop: pip install 'aqueue[uvloop]'") from None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _session(tasks: Tasks, body: Callable[[], Awaitable[T]] | None = None, loop: str = "asyncio") -> T | None:
    """Connect (one clear error if Redis does not answer), run ``body`` and close, in a fresh event loop
    (``loop`` ``uvloop`` runs it on uvloop)."""

    async def session() -> T | None:
        try:
            try:
                await tasks._broker()
            except BrokerUnavailable as exc:
                raise CliError(f"cannot reach Redis at {_redact(tasks.redis_url)}: {exc}") from None
            return None if body is None else await body()
        finally:
            await tasks.close()

    with asyncio.Runner(loop_factory=_loop_factory(loop)) as runner:
        return runner.run(session())


def _token(args: argparse.Namespace) -> str | None:
    """The web token, read from the environment variable ``--token-env`` names (so it never shows in ``ps``)."""
    if args.token_env is None:
        return None
    value = os.environ.get(args.token_env)
    if not value:
        raise CliError(f"--token-env: environment variable {args.token_env} is not set or is empty")
    return value


async def _start_web(
    app: web.Application, bind: tuple[str, int], debug: bool, token_env: str | None = None
) -> web.AppRunner:
    """Serve ``app`` on ``bind`` in this loop; the caller cleans the runner up. ``token_env`` names the variable
    that holds the token, for the start-up line (the token itself is never logged)."""
    from aiohttp import web

    # Access logs only at debug level: a dashboard's requests would drown the worker's own log lines.
    runner = web.AppRunner(app, access_log=logging.getLogger("aiohttp.access") if debug else None)
    await runner.setup()
    host, port = bind
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise CliError(f"cannot serve the web app on {host}:{port}: {exc.strerror or exc}") from None
    bound = runner.addresses[0] if runner.addresses else bind
    url = f"http://{f'[{bound[0]}]' if ':' in str(bound[0]) else bound[0]}:{bound[1]}/"
    if token_env is None:
        log.info("web app on %s", url)
    else:
        log.info("web app on %s (token required: Authorization: Bearer $%s; for the dashboard, open %s?token=<the "
                 "value of $%s>)", url, token_env, url, token_env)  # fmt: skip
    return runner


# -- commands ------------------------------------------------------------------------------------------------


def cmd_worker(args: argparse.Namespace) -> int:
    """Run a worker in this process, or ``--processes`` worker processes under this one."""
    multi = args.processes > 1
    if args.web is None and (args.token_env is not None or args.protect_reads or args.allow_origin):
        raise CliError("--token-env, --protect-reads and --allow-origin apply to the web app: add --web HOST:PORT")
    if multi and args.web is not None:
        raise CliError("--web serves one worker's process: use --processes 1, or run `aqueue web` beside the workers")
    tasks = _prepare(args, "--processes > 1 needs a Redis server" if multi else None)
    if not multi:
        worker = Worker(
            tasks,
            args.concurrency,
            min_concurrency=args.min_concurrency,
            max_concurrency=args.max_concurrency,
            strategy=args.strategy,
            scale_interval=args.scale_interval,
            cooldown=args.cooldown,
            prefetch=args.prefetch,
            lease=args.lease,
            shutdown_timeout=args.shutdown_timeout,
        )
        if args.web is None:
            _session(tasks, lambda: worker.run(burst=args.burst), args.loop)
            return 0
        token = _token(args)

        async def serve_both() -> None:
            from aqueue.web import create_app

            app = create_app(tasks, worker, token, protect_reads=args.protect_reads, allowed_origins=args.allow_origin)
            runner = await _start_web(app, args.web, args.log_level == "debug", args.token_env)
            try:
                await worker.run(burst=args.burst)  # it handles SIGINT/SIGTERM; the web app stops after it
            finally:
                await runner.cleanup()

        _session(tasks, serve_both, args.loop)
        return 0
    _session(tasks)  # one clear error here rather than one per child
    return _supervise(args, tasks)


def _supervise(args: argparse.Namespace, tasks: Tasks) -> int:
    cmd = [sys.executable, "-m", "aqueue", "worker", args.target, "--processes", "1", "--queue", tasks.queue,
           "--shutdown-timeout", str(args.shutdown_timeout), "--strategy", args.strategy,
           "--scale-interval", str(args.scale_interval), "--cooldown", str(args.cooldown),
           "--prefetch", str(args.prefetch), "--log-level", args.log_level, "--loop", args.loop,
           "--log-format", args.log_format]  # fmt: skip
    for flag, value in (
        ("--lease", args.lease),
        ("--concurrency", args.concurrency),
        ("--min-concurrency", args.min_concurrency),
        ("--max-concurrency", args.max_concurrency),
    ):
        cmd += [flag, str(value)] if value is not None else []  # fmt: skip
    cmd += ["--burst"] if args.burst else []
    # The URL goes through the environment so a password in it does not show in `ps`.
    env = {**os.environ, "AQUEUE_REDIS_URL": tasks.redis_url}
    children: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    # Installed before the first child starts, so no signal can arrive between start and forwarding.
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        children.extend(subprocess.Popen(cmd, env=env) for _ in range(args.processes))
        log.info("started %d worker processes: %s", len(children), " ".join(str(c.pid) for c in children))
        stopping = False
        while None in (codes := [child.poll() for child in children]):  # a list: every child gets polled
            # Fail fast: a child that dies with an error stops the rest, so the failure is not hidden behind a
            # supervisor that keeps running with fewer workers.
            if not stopping and any(codes):
                log.error("a worker process failed; stopping the others")
                forward(signal.SIGTERM, None)
                stopping = True
            time.sleep(0.1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    failed = [f"pid {c.pid} exited {c.returncode}" for c in children if c.returncode != 0]
    if failed:
        print(f"aqueue: error: {len(failed)} of {len(children)} worker processes failed: {', '.join(failed)}",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    """Serve the web app alone (no worker) until SIGINT/SIGTERM: everything it shows comes from Redis."""
    tasks = _prepare(args, "serve it beside a worker with `aqueue worker --web`")
    token = _token(args)

    async def serve() -> None:
        from aqueue.web import create_app

        runner = await _start_web(
            create_app(tasks, None, token, protect_reads=args.protect_reads, allowed_origins=args.allow_origin),
            args.bind,
            args.log_level == "debug",
            args.token_env,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await runner.cleanup()

    _session(tasks, serve)
    return 0


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
    tasks = _prepare(args, "enqueue from the process that runs the worker")
    task = tasks.get(args.task)
    if task is None:
        known = ", ".join(sorted(tasks.names)) or "none"
        raise CliError(f"no task {args.task!r} in {args.target} (registered: {known})")
    positional = _json_value(args.args, list, "--args", "a JSON array")
    keywords = _json_value(args.kwargs, dict, "--kwargs", "a JSON object")
    configured = task.with_options(priority=args.priority, delay=args.delay)

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

    code = _session(tasks, run)
    assert code is not None
    return code


def cmd_info(args: argparse.Namespace) -> int:
    """Print a queue's depths, counters and live workers, as a table or as JSON."""
    tasks = _prepare(args, "ask the process that runs the worker")

    async def read() -> tuple[QueueInfo, dict[str, Any] | None]:
        return await tasks.info(), await tasks.paused()

    got = _session(tasks, read)
    assert got is not None
    info, paused = got
    now = time.time()
    data: dict[str, Any] = {"queue": tasks.queue, "redis_url": _redact(tasks.redis_url), **dataclasses.asdict(info)}
    data["paused"] = paused
    for w in data["workers"]:
        w["heartbeat_age"] = round(now - float(w.get("heartbeat_at", now)), 3)
    if args.json:
        print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"queue      {data['queue']} on {data['redis_url']}")
    if paused is not None:
        from aqueue.cli.control import describe_pause

        print(f"paused     {describe_pause(paused)}")
    print("queued     " + "  ".join(f"{name} {n}" for name, n in data["queued"].items()))
    for key in ("active", "scheduled", "dead"):
        print(f"{key:<10} {data[key]}")
    order = ["enqueued", "succeeded", "retried", "failed", "dead"]
    stats = {k: data["stats"].get(k, 0) for k in order} | data["stats"]
    print("counters   " + "  ".join(f"{k} {v}" for k, v in stats.items()))
    print(f"workers    {len(data['workers'])}" + (" (busy, processed and failed as of each one's last heartbeat)"
                                                    if data["workers"] else ""))  # fmt: skip
    if data["workers"]:
        columns = ("id", "concurrency", "strategy", "busy", "processed", "failed")
        rows = [(*(c.upper() for c in columns), "HEARTBEAT")]
        rows += [(*(str(w.get(c, "")) for c in columns), f"{w['heartbeat_age']:.1f}s ago") for w in data["workers"]]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the self-contained ``memory://`` demo."""
    from aqueue.cli.demo import run_demo  # only the demo needs it

    return asyncio.run(
        run_demo(jobs=args.jobs, concurrency=args.concurrency, seconds=args.seconds, web=args.web, rate=args.rate)
    )


# -- parser and entry point ----------------------------------------------------------------------------------


def _web_options(p: argparse.ArgumentParser, flag: str, env: str, default: Any, help: str) -> None:
    _option(p, flag, env, default, help, type=_bind, metavar="HOST:PORT")
    p.add_argument("--token-env", metavar="VAR", help="require the token held in environment variable VAR "
                   "(Authorization: Bearer) on mutating endpoints and the WebSocket")  # fmt: skip
    _option(p, "--protect-reads", "AQUEUE_PROTECT_READS", False, "require the token on read endpoints too",
            action="store_true")  # fmt: skip
    _option(p, "--allow-origin", "AQUEUE_ALLOW_ORIGINS", (), "comma-separated origins (https://host[:port]) whose "
            "pages may call mutating endpoints and open the WebSocket; by default only the app's own",
            type=_origins, metavar="ORIGINS")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The ``aqueue`` argument parser."""
    parser = _Parser(prog="aqueue", description="asyncio job queue on Redis Streams", allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"aqueue {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, handler: Callable[[argparse.Namespace], int], help: str, log_level: str, within: Any = sub
    ) -> Any:
        p = within.add_parser(name, help=help, description=help, allow_abbrev=False)
        p.set_defaults(handler=handler)
        if name != "demo":
            p.add_argument("target", metavar="MODULE:ATTR", help="the aqueue.Tasks, e.g. myapp.jobs:tasks")
            _option(p, "--redis", "AQUEUE_REDIS_URL", None, "Redis URL (default: the Tasks')", metavar="URL")
            _option(p, "--queue", "AQUEUE_QUEUE", None, "queue name (default: the Tasks')", metavar="NAME")
        levels = "|".join(_LEVELS)
        _option(p, "--log-level", "AQUEUE_LOG_LEVEL", log_level, f"{levels} (default {log_level})",
                type=_choice(*_LEVELS), metavar="LEVEL")  # fmt: skip
        _option(p, "--log-format", "AQUEUE_LOG_FORMAT", "text", "text|json (default text)",
                type=_choice("text", "json"), metavar="FORMAT")  # fmt: skip
        return p

    w = command("worker", cmd_worker, "run the jobs of a queue", "info")
    _option(w, "--concurrency", "AQUEUE_CONCURRENCY", None, "jobs run at once per process (default 100; with "
            "min/max: the starting point)", type=_count, metavar="N")  # fmt: skip
    _option(w, "--min-concurrency", "AQUEUE_MIN_CONCURRENCY", None, "autoscale: lowest concurrency (default 1)",
            type=_count, metavar="N")  # fmt: skip
    _option(w, "--max-concurrency", "AQUEUE_MAX_CONCURRENCY", None, "autoscale: highest concurrency",
            type=_count, metavar="N")  # fmt: skip
    _option(w, "--strategy", "AQUEUE_STRATEGY", "default", "autoscale strategy: default|aggressive|conservative|"
            "predictive", type=_choice("default", "aggressive", "conservative", "predictive"),
            metavar="NAME")  # fmt: skip
    _option(w, "--scale-interval", "AQUEUE_SCALE_INTERVAL", 0.5, "seconds between scaling decisions (default 0.5)",
            type=_positive, metavar="S")  # fmt: skip
    _option(w, "--cooldown", "AQUEUE_COOLDOWN", 5.0, "seconds between direction changes (default 5)",
            type=_non_negative, metavar="S")  # fmt: skip
    _option(w, "--prefetch", "AQUEUE_PREFETCH", 0, "jobs claimed beyond free slots (default 0)",
            type=_number(int, 0, strict=False), metavar="N")  # fmt: skip
    _option(w, "--burst", "AQUEUE_BURST", False, "exit once nothing is queued, due or running",
            action="store_true")  # fmt: skip
    _option(w, "--processes", "AQUEUE_PROCESSES", 1, "worker processes (default 1)", type=_count, metavar="N")
    _option(w, "--loop", "AQUEUE_LOOP", "asyncio", "event loop: asyncio or uvloop (pip install 'aqueue[uvloop]')",
            type=_choice("asyncio", "uvloop"))  # fmt: skip
    _option(w, "--lease", "AQUEUE_LEASE", None, "seconds before a silent worker's jobs are taken back (default: "
            "the queue's lease, 30 unless its QueueSettings say otherwise)",
            type=_positive, metavar="S")  # fmt: skip
    _option(w, "--shutdown-timeout", "AQUEUE_SHUTDOWN_TIMEOUT", 10.0, "seconds running jobs get to finish "
            "on stop (default 10)", type=_non_negative, metavar="S")  # fmt: skip

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
    e.add_argument("--delay", type=_non_negative, metavar="S", help="seconds until the job is due")
    e.add_argument("--wait", nargs="?", type=_positive, const=30.0, metavar="S",
                   help="then wait up to S seconds (default 30) for the job to finish and print its result as JSON; "
                   "exit 1 if it failed, was cancelled or is still unfinished")  # fmt: skip

    i = command("info", cmd_info, "show a queue's depths, counters and workers", "warning")
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")

    from aqueue.cli.control import add_commands  # it imports this module

    add_commands(command, sub)

    d = command("demo", cmd_demo, "run a self-contained demo on in-process memory://", "error")
    d.add_argument("--jobs", type=_count, default=2000, metavar="N", help="jobs to enqueue (default 2000)")
    d.add_argument("--concurrency", type=_count, default=50, metavar="N", help="worker concurrency (default 50)")
    d.add_argument("--seconds", type=_positive, default=60.0, metavar="S", help="time limit (default 60)")
    d.add_argument("--web", nargs="?", type=_bind, const=("127.0.0.1", 8080), metavar="HOST:PORT",
                   help="also serve the dashboard and web app (default 127.0.0.1:8080) and, after the batch, keep "
                   "--rate jobs/s running until Ctrl-C")  # fmt: skip
    d.add_argument("--rate", type=_positive, default=100.0, metavar="N",
                   help="with --web: jobs/s of the steady load after the batch (default 100)")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``aqueue`` command line; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
        _apply_env(args)
        _setup_logging(args.log_level, args.log_format)
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
