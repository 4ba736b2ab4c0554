"""The long-running commands: ``aqueue worker`` (one process, optionally serving the web app beside the worker, or
several under :func:`aqueue.cli.processes.supervise`) and ``aqueue web`` (the web app alone). Both take one or
more ``MODULE:ATTR``: one worker runs the queues of all of them, sharing its slots by ``--weights``.

The web package (aiohttp) is imported only by the commands that serve it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from typing import TYPE_CHECKING

from aqueue._worker.lanes import check_weights
from aqueue._worker.metadata import check_metadata
from aqueue._worker.worker import Worker
from aqueue.cli.logs import log
from aqueue.cli.options import CliError
from aqueue.cli.processes import supervise
from aqueue.cli.session import prepare_all, session

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["cmd_web", "cmd_worker"]


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


def _metadata(args: argparse.Namespace) -> dict[str, str]:
    """``--meta`` (or ``$AQUEUE_META``) as the worker's metadata, checked here so that ``--processes`` children
    never start with a bad one; with ``--max-jobs``, checks that ``--burst`` is there."""
    if args.max_jobs is not None and not args.burst:
        raise CliError("--max-jobs applies to a burst run: add --burst")
    metadata: dict[str, str] = {}
    for key, value in args.meta:
        if key in metadata:
            raise CliError(f"--meta {key}: given twice")
        metadata[key] = value
    check_metadata(metadata)  # ConfigurationError: one line, exit 2
    return metadata


def cmd_worker(args: argparse.Namespace) -> int:
    """Run a worker in this process, or ``--processes`` worker processes under this one."""
    multi = args.processes > 1
    if args.web is None and (args.token_env is not None or args.protect_reads or args.allow_origin):
        raise CliError("--token-env, --protect-reads and --allow-origin apply to the web app: add --web HOST:PORT")
    if multi and args.web is not None:
        raise CliError("--web serves one worker's process: use --processes 1, or run `aqueue web` beside the workers")
    metadata = _metadata(args)
    registries = prepare_all(args, "--processes > 1 needs a Redis server" if multi else None)
    if len(registries) > 1 and args.max_jobs is not None:
        raise CliError("--max-jobs applies to a worker of one queue: run one `aqueue worker` per queue for it")
    check_weights(registries, args.weights)  # ConfigurationError: one line, exit 2 (before any child starts)
    if multi:
        session(registries)  # one clear error here rather than one per child
        return supervise(args, registries)
    tasks = registries[0]
    worker = Worker(
        registries,
        args.concurrency,
        weights=args.weights,
        min_concurrency=args.min_concurrency,
        max_concurrency=args.max_concurrency,
        strategy=args.strategy,
        scale_interval=args.scale_interval,
        cooldown=args.cooldown,
        prefetch=args.prefetch,
        cpu_workers=args.cpu_workers,
        lease=args.lease,
        shutdown_timeout=args.shutdown_timeout,
        metadata=metadata,
    )
    if args.web is None:
        session(registries, lambda: worker.run(burst=args.burst, max_jobs=args.max_jobs), args.loop)
        return 0
    token = _token(args)

    async def serve_both() -> None:
        from aqueue.web import create_app

        app = create_app(registries if len(registries) > 1 else tasks, worker, token,
                         protect_reads=args.protect_reads, allowed_origins=args.allow_origin)  # fmt: skip
        runner = await _start_web(app, args.web, args.log_level == "debug", args.token_env)
        try:
            # The worker handles SIGINT/SIGTERM; the web app stops after it.
            await worker.run(burst=args.burst, max_jobs=args.max_jobs)
        finally:
            await runner.cleanup()

    session(registries, serve_both, args.loop)
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    """Serve the web app alone (no worker) until SIGINT/SIGTERM: everything it shows comes from Redis."""
    registries = prepare_all(args, "serve it beside a worker with `aqueue worker --web`")
    token = _token(args)

    async def serve() -> None:
        from aqueue.web import create_app

        served = registries if len(registries) > 1 else registries[0]
        runner = await _start_web(
            create_app(served, None, token, protect_reads=args.protect_reads, allowed_origins=args.allow_origin),
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

    session(registries, serve)
    return 0
