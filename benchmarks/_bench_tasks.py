"""Tasks imported by the worker processes of ``benchmarks/processes.py``: one no-op task.

``processes.py`` starts ``python -m aqueue worker _bench_tasks:tasks --queue Q --redis URL ...`` with this
directory on ``PYTHONPATH``; the CLI's ``--queue`` and ``--redis`` point this registry at the benchmark's queue.
``processes.py`` imports it too (a sibling module), so producer and workers use the same task name.
"""

from __future__ import annotations

import aqueue

NOOP = "bench.noop"  #: the task's registered name: producers register theirs under the same name

tasks = aqueue.Tasks("bench-proc")


async def noop_fn() -> None:
    """Does nothing, so the drain measures aqueue and Redis alone."""


noop = tasks.task(name=NOOP)(noop_fn)
