"""One worker over two queues, a partner API capped at 2 calls at once, and tenants served in turns.

    python examples/tenants.py            # memory:// (no Redis needed): about a second

Two registries, two queues: ``orders`` (each order calls a partner API that allows 2 connections) and
``reports`` (each tenant's reports, some tenants with far more than others). One ``Worker`` serves both with one
pool of 20 slots, 3:1 in favour of orders when both have work.

- ``concurrency_limit=2`` holds across every worker of the queue: never more than 2 partner calls at once, and
  the orders waiting for a call hold no slot (the reports use the slots meanwhile).
- ``with_options(group=tenant)`` puts each report in its tenant's group: the groups take turns, so the small
  tenant's 3 reports start among the first few, not after the big tenant's 200.

The same from the command line::

    aqueue worker examples.tenants:orders examples.tenants:reports --concurrency 20 \
        --weights examples-orders=3,examples-reports=1
    aqueue web examples.tenants:orders examples.tenants:reports     # one dashboard over both queues
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aqueue

URL = os.environ.get("AQUEUE_REDIS_URL", "memory://examples-tenants")
orders = aqueue.Tasks("examples-orders", redis_url=URL)
reports = aqueue.Tasks("examples-reports", redis_url=URL)

partner_now = 0  # partner calls in flight (this process runs every worker here)
partner_most = 0
report_starts: list[str] = []


@orders.task(concurrency_limit=2)
async def place_order(order_id: int) -> str:
    """Calls the partner API, which accepts 2 connections at a time."""
    global partner_now, partner_most
    partner_now += 1
    partner_most = max(partner_most, partner_now)
    try:
        await asyncio.sleep(0.02)  # the partner's answer
    finally:
        partner_now -= 1
    return f"order {order_id} placed"


@reports.task
async def render_report(tenant: str, n: int) -> str:
    report_starts.append(tenant)
    await asyncio.sleep(0.002)
    return f"{tenant} report {n}"


async def main(orders_count: int = 20, big_reports: int = 200) -> dict[str, Any]:
    """Enqueue the orders and the reports, serve both queues with one worker, and say how it went."""
    report_starts.clear()
    global partner_most
    partner_most = 0
    big = await reports.enqueue_many(
        [render_report.with_options(group="big-corp").spec("big-corp", i) for i in range(big_reports)]
    )
    small = await reports.enqueue_many(
        [render_report.with_options(group="tiny-shop").spec("tiny-shop", i) for i in range(3)]
    )
    placed = await orders.enqueue_many([place_order.spec(i) for i in range(orders_count)])
    worker = aqueue.Worker([orders, reports], concurrency=20, weights={orders.queue: 3, reports.queue: 1})
    running = asyncio.create_task(worker.run())
    try:
        results = [await job.result(timeout=30) for job in placed]
        for job in small + big:
            await job.result(timeout=30)
    finally:
        await worker.stop()
        await running
    limits = (await orders.info()).limits
    return {
        "orders": results,
        "partner_most": partner_most,
        "small_positions": [i for i, tenant in enumerate(report_starts) if tenant == "tiny-shop"],
        "reports": len(report_starts),
        "limits": [(u.name, u.running, u.limit, u.waiting) for u in limits],
    }


if __name__ == "__main__":
    summary = asyncio.run(main())
    print(f"{len(summary['orders'])} orders placed, at most {summary['partner_most']} partner calls at once")
    print(f"the small tenant's reports started at positions {summary['small_positions']} of {summary['reports']}")
    print("limits now:", summary["limits"])
