"""A worker whose jobs share one ``aiohttp.ClientSession``, opened by the worker's lifespan and closed when it stops.

Run a worker for it (from the repository root, with Redis on localhost):

    aqueue worker examples.lifespan_worker:tasks              # SIGTERM / Ctrl-C closes the session cleanly

and enqueue fetches of any URL:

    aqueue enqueue examples.lifespan_worker:tasks lifespan.fetch --args '["https://example.org/"]'

``python examples/lifespan_worker.py`` runs the whole thing in one process on ``memory://``: a local HTTP server to
fetch from, a producer and a worker. Either way there is no "Unclosed client session" at shutdown: the session is
the lifespan's, not a module global that nobody closes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

import aqueue

tasks = aqueue.Tasks("examples-lifespan")


@dataclass(frozen=True)
class Deps:
    """What every job of this worker shares: created once per worker process, closed when it stops."""

    http: aiohttp.ClientSession


@tasks.lifespan
async def deps() -> AsyncIterator[Deps]:
    """Entered once per worker run before its first job; exited after its last job settled (also on SIGTERM)."""
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": "aqueue-example"}) as http:
        yield Deps(http=http)


@tasks.task(name="lifespan.fetch", max_attempts=3)
async def fetch(url: str) -> dict[str, Any]:
    """Fetch ``url`` with the worker's shared session: its status and body length."""
    http = aqueue.resources(Deps).http  # typed: a Deps, checked at run time too
    async with http.get(url) as resp:
        body = await resp.read()
        if resp.status >= 500:
            raise aqueue.Retry(f"{url}: HTTP {resp.status}", after=1)
        return {"url": url, "status": resp.status, "bytes": len(body)}


async def serve_pages() -> tuple[web.AppRunner, str]:
    """A local HTTP server to fetch from (the demo needs no network): its runner and base URL."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="x" * int(request.match_info["size"]))

    app = web.Application()
    app.router.add_get("/bytes/{size:\\d+}", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def main(sizes: tuple[int, ...] = (10, 200, 3000)) -> list[dict[str, Any]]:
    """Serve pages locally, enqueue a fetch of each, drain the queue with a worker, print and return the results."""
    if "AQUEUE_REDIS_URL" not in os.environ:
        tasks.configure(redis_url="memory://examples-lifespan")  # no Redis needed for the demo
    runner, base = await serve_pages()
    try:
        async with tasks:
            jobs = [await fetch.enqueue(f"{base}/bytes/{size}") for size in sizes]
            await aqueue.Worker(tasks, concurrency=10).run(burst=True)  # enters and exits the lifespan
            results = [await job.result(timeout=10) for job in jobs]
    finally:
        await runner.cleanup()
    for result in results:
        print(f"{result['url']}: HTTP {result['status']}, {result['bytes']} bytes")
    return results


if __name__ == "__main__":
    asyncio.run(main())
