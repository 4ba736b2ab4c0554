"""A workflow: one step, fanned out to parallel steps, fanned back in, with a failure branch.

    python examples/workflow.py                # memory:// (no Redis needed): a good run, then a failing one

The DAG (``tasks.workflow()``), enqueued in one script call:

    extract ──┬── transform-0 ──┐
              ├── transform-1 ──┼── load          (fan-out, then fan-in: `load` gets the list of results)
              └── transform-2 ──┘
    alert                                         (on_failure of every step above: runs if one of them
                                                   fails, is skipped when all succeed)

Each step is an ordinary task. A step runs once all its parents succeeded and receives their results
(``pass_results``); when a step ends dead (after its retries), the steps after it are cancelled and the failure
handler runs instead, with ``{"job", "task", "status", "error"}`` of the step that failed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import aqueue

tasks = aqueue.Tasks("examples-workflow", redis_url=os.environ.get("AQUEUE_REDIS_URL", "memory://examples-workflow"))


@tasks.task(name="etl.extract")
async def extract(source: str, parts: int) -> list[list[int]]:
    """Read the source and split it into chunks for the parallel steps."""
    rows = list(range(1, 13))  # read `source` here
    return [rows[i::parts] for i in range(parts)]


# Short retries so the failing demo ends quickly; a real task would keep the defaults (3 attempts, 1 s backoff).
@tasks.task(name="etl.transform", max_attempts=2, backoff_base=0.05)
async def transform(chunks: list[list[int]], index: int, poison: int | None = None) -> int:
    """One chunk (its parent's result comes first, then the step's own arguments)."""
    chunk = chunks[index]
    if poison in chunk:
        raise ValueError(f"row {poison} is malformed")
    return sum(x * x for x in chunk)


@tasks.task(name="etl.load")
async def load(totals: list[int], table: str) -> str:
    """Fan-in: the results of every transform step, in the order the steps were given."""
    return f"{table}: {sum(totals)}"


@tasks.task(name="etl.alert")
async def alert(failure: dict[str, str | None], channel: str) -> str:
    """The failure branch: told which step failed and why."""
    message = f"{failure['task']} {failure['status']}: {failure['error']}"
    print(f"[{channel}] {message}")  # page someone here
    return message


def build(source: str, parts: int = 3, poison: int | None = None) -> aqueue.Workflow:
    """The DAG above; ``poison`` makes the transform step that gets that row fail."""
    wf = tasks.workflow("etl")
    first = wf.step(extract.spec(source, parts), name="extract")
    # With pass_results a step's first argument is its parents' result(s), filled in when it runs, so
    # `spec_after()` takes only the others (and a type checker checks them against the rest of the signature).
    fan_out = [
        first.then(transform.spec_after(i, poison), name=f"transform-{i}", pass_results=True) for i in range(parts)
    ]  # each runs after `first`
    loading = load.spec_after("warehouse.sums")
    last = wf.step(loading, after=fan_out, pass_results=True, name="load")  # after all of them
    alerting = alert.spec_after("#data-alerts")
    wf.step(alerting, on_failure=[first, *fan_out, last], pass_results=True, name="alert")
    return wf


async def run(poison: int | None = None) -> tuple[dict[str, aqueue.JobStatus | None], Any]:
    """Enqueue the workflow, wait for every step, and return the steps' statuses and the outcome (the load's
    result, or the alert's when the branch failed)."""
    handle = await build("s3://bucket/rows.csv", poison=poison).enqueue()
    statuses = await handle.wait(timeout=30)
    ok = statuses["load"] is aqueue.JobStatus.SUCCEEDED
    outcome = await handle.jobs["load" if ok else "alert"].result()
    for step, status in statuses.items():
        print(f"  {step:<12} {status}")
    return statuses, outcome


async def main() -> list[tuple[dict[str, aqueue.JobStatus | None], Any]]:
    async with tasks:
        worker = aqueue.Worker(tasks, concurrency=10)  # usually `aqueue worker examples.workflow:tasks`
        running = asyncio.create_task(worker.run())
        try:
            print("a good run:")
            good = await run()
            print(f"  -> {good[1]}")
            print("a run where row 5 is malformed:")
            bad = await run(poison=5)
            print(f"  -> {bad[1]}")
        finally:
            await worker.stop()
            await running
        return [good, bad]


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(main())
