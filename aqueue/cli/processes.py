"""``aqueue worker --processes N``: N worker processes (``python -m aqueue worker … --processes 1``) under this one,
which forwards SIGINT/SIGTERM to them and stops them all as soon as one fails. With several ``MODULE:ATTR``, each
process runs all their queues."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from aqueue._core.tasks import Tasks
from aqueue.cli.logs import log

__all__ = ["supervise"]


def _child_command(args: argparse.Namespace, registries: Sequence[Tasks]) -> list[str]:
    """The command line of one worker process: this one's options, with ``--processes 1``; one target's queue as
    resolved here (``--queue``), several targets each with its own."""
    targets: list[str] = args.target
    queue = ["--queue", registries[0].queue] if len(targets) == 1 else []
    cmd = [sys.executable, "-m", "aqueue", "worker", *targets, "--processes", "1", *queue,
           "--shutdown-timeout", str(args.shutdown_timeout), "--strategy", args.strategy,
           "--scale-interval", str(args.scale_interval), "--cooldown", str(args.cooldown),
           "--prefetch", str(args.prefetch), "--log-level", args.log_level, "--loop", args.loop,
           "--log-format", args.log_format]  # fmt: skip
    for flag, value in (
        ("--lease", args.lease),
        ("--concurrency", args.concurrency),
        ("--min-concurrency", args.min_concurrency),
        ("--max-concurrency", args.max_concurrency),
        ("--cpu-workers", args.cpu_workers),
    ):
        cmd += [flag, str(value)] if value is not None else []  # fmt: skip
    cmd += ["--burst"] if args.burst else []
    cmd += ["--max-jobs", str(args.max_jobs)] if args.max_jobs is not None else []
    for key, value in args.meta:
        cmd += ["--meta", f"{key}={value}"]
    if args.weights is not None:
        cmd += ["--weights", ",".join(f"{q}={w}" for q, w in args.weights.items())]
    return cmd


def supervise(args: argparse.Namespace, registries: Sequence[Tasks]) -> int:
    """Run ``args.processes`` worker processes of ``registries`` until they all exit; 1 if any of them failed."""
    cmd = _child_command(args, registries)
    # The URL goes through the environment so a password in it does not show in `ps`. Several targets keep each
    # their own URL unless --redis (or $AQUEUE_REDIS_URL) gave one for all.
    url = registries[0].redis_url if len(registries) == 1 else args.redis
    env = {**os.environ, **({"AQUEUE_REDIS_URL": url} if url is not None else {})}
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
