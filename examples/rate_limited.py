"""Calling a rate-limited partner API: a global ``rate_limit`` on the task, and retries with backoff on 429s.

    python examples/rate_limited.py            # memory:// (no Redis needed): 30 calls at 20/s, about 2 s

``rate_limit="20/s"`` holds across every worker and process of the queue (the limit's state is in Redis and
the claim script applies it). A job over the limit does not sit in a worker slot: it is given the next free
start time and waits in the scheduled set, so the calls go out evenly, 50 ms apart, whatever the concurrency.

The partner still answers 429 Too Many Requests now and then (it counts other clients too): the task raises, and
aqueue retries the job after an exponential backoff with jitter, up to ``max_attempts``. An error that retrying
cannot fix (a 4xx other than 429) is returned as the job's result rather than raised, so it is not retried.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import aqueue

tasks = aqueue.Tasks(
    "examples-rate-limited", redis_url=os.environ.get("AQUEUE_REDIS_URL", "memory://examples-rate-limited")
)

LIMIT_PER_SECOND = 20


class TransientError(Exception):
    """A failure worth retrying: 429, 5xx, a timeout."""


@dataclass
class PartnerAPI:
    """A stand-in for the partner's HTTP API, in this process: answers 429 to every ``busy_every``-th request.

    It records when each request arrived, so the demo (and its test) can check the rate we sent at.
    """

    busy_every: int = 7
    calls: list[float] = field(default_factory=list)  #: time.monotonic() of each request
    rejected: int = 0  #: requests answered 429

    async def post(self, path: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.calls.append(time.monotonic())
        nth = len(self.calls)  # this request's place in arrival order (another may arrive during the sleep)
        await asyncio.sleep(0.005)  # the network
        if nth % self.busy_every == 0:
            self.rejected += 1
            return 429, {"error": "too many requests"}
        if payload.get("email", "").endswith(".invalid"):
            return 400, {"error": "invalid email"}
        return 201, {"id": f"cus_{payload['customer']}"}


api = PartnerAPI()


@tasks.task(
    name="partner.sync_customer",
    rate_limit=f"{LIMIT_PER_SECOND}/s",  # or "1200/m", or aqueue.RateLimit(20, 1.0, burst=5) to allow bursts
    max_attempts=5,  # the first attempt and up to 4 retries
    backoff_base=0.1,  # retry after 0.1 s, 0.2 s, 0.4 s, … (each scaled by a random 0.5-1.0), at most backoff_max
    backoff_max=5.0,
    timeout=10.0,
)
async def sync_customer(customer: int, email: str) -> dict[str, Any]:
    status, body = await api.post("/v1/customers", {"customer": customer, "email": email})
    if status == 429 or status >= 500:
        raise TransientError(f"partner answered {status}")  # retried with backoff
    if status >= 400:
        return {"customer": customer, "error": body["error"]}  # permanent: record it, do not retry
    return {"customer": customer, "partner_id": body["id"]}


def peak(calls: list[float], window: float = 1.0) -> int:
    """The most calls made in any half-open ``window`` seconds, [t, t + window)."""
    calls = sorted(calls)
    return max((bisect.bisect_left(calls, t + window) - i for i, t in enumerate(calls)), default=0)


async def main(customers: int = 30) -> dict[str, Any]:
    """Sync ``customers`` customers through a worker; print and return what the partner saw."""
    async with tasks:
        worker = aqueue.Worker(tasks, concurrency=50)  # far more slots than the limit needs: it still holds
        running = asyncio.create_task(worker.run())
        try:
            emails = [f"user{i}@example.{'invalid' if i == 13 else 'com'}" for i in range(customers)]
            jobs = await tasks.enqueue_many(sync_customer.spec(i, email) for i, email in enumerate(emails))
            results = [await job.result(timeout=30) for job in jobs]
            attempts = [(await job.record()).attempts for job in jobs]
        finally:
            await worker.stop()
            await running
    span = api.calls[-1] - api.calls[0]
    summary = {
        "results": results,
        "attempts": attempts,
        "calls": len(api.calls),
        "rejected": api.rejected,
        "rate": (len(api.calls) - 1) / span if span > 0 else float("inf"),
        "peak": peak(api.calls),
    }
    print(f"{customers} customers synced in {span:.2f} s: {summary['calls']} calls, {api.rejected} answered 429 "
          f"and retried, {summary['rate']:.1f} calls/s on average, at most {summary['peak']} in any second "
          f"(limit {LIMIT_PER_SECOND}/s: one start every {1000 // LIMIT_PER_SECOND} ms, so a window of exactly 1 s "
          f"can catch {LIMIT_PER_SECOND + 1} when the calls' own timing jitters by a millisecond)")  # fmt: skip
    print("not retried:", [r for r in results if "error" in r])
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(main())
