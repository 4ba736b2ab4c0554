"""An aiohttp web service whose handlers enqueue jobs, with aqueue's web sub-app mounted under ``/queue/``.

    python examples/service.py                 # http://127.0.0.1:8080, memory:// (no Redis needed)
    AQUEUE_REDIS_URL=redis://localhost:6379/0 python examples/service.py

then

    curl -X POST localhost:8080/signup -H 'Content-Type: application/json' -d '{"email": "ada@example.com"}'
    curl localhost:8080/jobs/<job id>           # this service's own view of a job
    curl localhost:8080/queue/status            # the mounted sub-app: status, /health/ready, /metrics, /ws, …
    open http://127.0.0.1:8080/queue/           # the live dashboard

For the demo a worker runs inside the service (started and stopped with the app through ``cleanup_ctx``). In
production, run the web processes with ``create_app(with_worker=False)`` and the workers apart
(``aqueue worker examples.service:tasks``): producers and workers only share Redis.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator

from aiohttp import web

import aqueue
import aqueue.web

tasks = aqueue.Tasks("examples-service", redis_url=os.environ.get("AQUEUE_REDIS_URL", "memory://examples-service"))

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@tasks.task(name="service.send_welcome_email", max_attempts=5, timeout=30.0)
async def send_welcome_email(email: str, name: str = "") -> str:
    await asyncio.sleep(0.02)  # render the template
    await aqueue.progress(50, message="rendered")  # shows live on the dashboard and the WebSocket
    await asyncio.sleep(0.03)  # talk to the mail provider; raising an exception retries the job with backoff
    return f"welcome email sent to {name or email}"


routes = web.RouteTableDef()


@routes.post("/signup")
async def signup(request: web.Request) -> web.Response:
    """Create the account (not shown), then send the welcome email in the background: the request returns at
    once with the job's id instead of waiting for the mail server."""
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="expected a JSON body") from None
    email = body.get("email") if isinstance(body, dict) else None
    if not isinstance(email, str) or not EMAIL.match(email):
        raise web.HTTPUnprocessableEntity(text="expected {'email': 'someone@example.com'}")
    name = body.get("name") or ""
    # dedup_key makes the signup idempotent: a client retrying the request within the hour gets the first
    # job back instead of a second email.
    job = await send_welcome_email.with_options(dedup_key=f"welcome:{email}", dedup_ttl=3600).enqueue(email, str(name))
    return web.json_response({"job": job.id, "status_url": f"/jobs/{job.id}"}, status=202)


@routes.get("/jobs/{id}")
async def job_status(request: web.Request) -> web.Response:
    """What the service tells its own clients about a job (the sub-app's ``/queue/jobs/{id}`` has everything)."""
    try:
        record = await tasks.job(request.match_info["id"]).record()
    except aqueue.UnknownJob:
        raise web.HTTPNotFound(text="no such job") from None
    return web.json_response({"id": record.id, "status": record.status, "result": record.result, "error": record.error})


def create_app(*, with_worker: bool = True) -> web.Application:
    """The service: its own routes, the aqueue sub-app under ``/queue/`` and (for the demo) a worker."""
    app = web.Application()
    app.add_routes(routes)
    worker = aqueue.Worker(tasks, concurrency=20) if with_worker else None

    async def worker_ctx(app: web.Application) -> AsyncIterator[None]:
        assert worker is not None
        # handle_signals=False: Ctrl-C and SIGTERM belong to web.run_app, which then runs this cleanup.
        running = asyncio.create_task(worker.run(handle_signals=False))
        yield
        await worker.stop()  # stop claiming, let running jobs finish (up to shutdown_timeout)
        await running

    if worker is not None:
        app.cleanup_ctx.append(worker_ctx)
    # Passing the worker lets /queue/health/ready report it and /queue/metrics time its jobs. Everything else
    # the sub-app shows comes from Redis, so it also works in a process without a worker.
    app.add_subapp("/queue/", aqueue.web.create_app(tasks, worker))

    async def close_tasks(app: web.Application) -> None:
        await tasks.close()

    app.on_cleanup.append(close_tasks)  # registered after the sub-app, so it runs after the sub-app stopped
    return app


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    web.run_app(create_app(), host="127.0.0.1", port=int(os.environ.get("PORT", "8080")))
