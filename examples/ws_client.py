"""Follow a queue's live events over the web sub-app's WebSocket (``GET /ws``, protocol in docs/web.md).

    python examples/ws_client.py ws://127.0.0.1:8080/queue/ws                  # e.g. examples/service.py
    python examples/ws_client.py ws://127.0.0.1:8080/queue/ws --types dead,failed --limit 10
    AQUEUE_TOKEN=secret python examples/ws_client.py ws://host:8080/aqueue/ws  # an app created with token=

Without a URL it runs a self-contained demo: a web sub-app, a worker and a producer on ``memory://`` (no Redis
needed) in this process, followed until 25 events were printed.

The client reconnects by itself (with a growing pause) and resumes with ``since=<last event id>``, so it misses
no event while it was away, and neither sees one twice.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp

import aqueue
import aqueue.web

Message = dict[str, Any]


def describe(event_id: str, event: dict[str, str]) -> str:
    """One line for an event: its id, type, task, job and what else it carries (every value is a string)."""
    kind = event.get("type", "?")
    who = " ".join(filter(None, [event.get("task"), event.get("job", "")[:8]]))
    details = {k: v for k, v in event.items() if k not in ("type", "task", "job") and v != ""}
    return f"{event_id}  {kind:<10} {who}  {' '.join(f'{k}={v}' for k, v in details.items())}".rstrip()


async def main(
    url: str,
    *,
    types: Sequence[str] = (),
    job: str | None = None,
    task: str | None = None,
    since: str | None = None,
    limit: int | None = None,
    token: str | None = None,
    out: Callable[[str], None] = print,
) -> list[Message]:
    """Print the queue's events as they happen; return the event messages once ``limit`` were seen.

    ``url`` is the sub-app's ``/ws`` (``ws://`` or ``http://``). ``types``/``job``/``task`` filter the events on
    the server; ``since`` starts after that event id (the ``id`` of the last event seen) instead of now.
    Without ``limit`` it runs until cancelled. Each message is ``{"type": "event", "id": …, "event": {…}}``.
    """
    params: dict[str, str] = {}
    if types:
        params["types"] = ",".join(types)
    if job is not None:
        params["job"] = job
    if task is not None:
        params["task"] = task
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    events: list[Message] = []
    last_id = since  # where to resume after a disconnection
    pause = 0.5
    async with aiohttp.ClientSession(headers=headers) as http:
        while True:
            try:
                query = params | ({"since": last_id} if last_id else {})
                async with http.ws_connect(url, params=query) as ws:
                    async for msg in ws:  # ends when the connection closes; aiohttp answers the server's pings
                        if msg.type is not aiohttp.WSMsgType.TEXT:
                            continue
                        message: Message = msg.json()
                        kind = message["type"]
                        if kind == "snapshot":
                            # The state when we connected; events after `last_id` follow. A client that has seen
                            # no event yet resumes from there.
                            last_id = last_id or message["last_id"]
                            status = message["status"]
                            out(f"connected to queue {status['queue']!r}: {status['queued']} queued, "
                                f"{status['active']} active, {status['dead_letter']} dead letters")  # fmt: skip
                            pause = 0.5
                        elif kind == "event":
                            last_id = message["id"]
                            events.append(message)
                            out(describe(message["id"], message["event"]))
                            if limit is not None and len(events) >= limit:
                                return events
                        elif kind == "gap":  # `since` is older than the stream keeps: the snapshot is the truth
                            out(f"events between {message['since']} and {message['first']} may have been lost")
                        elif kind == "error":
                            out(f"server: {message['error']}")
                        # "metrics" (the /status figures every second) is not used here.
                code = ws.close_code
                if code == 4400:  # a bad filter or since: reconnecting would not help
                    raise ValueError(f"the server refused the subscription {query}")
                out(f"disconnected (close code {code}); resuming after {last_id}")
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status in (401, 403, 404):
                    raise  # a wrong token or URL: reconnecting would not help
                out(f"cannot connect: {exc.status} {exc.message}")
            except (aiohttp.ClientError, OSError) as exc:
                out(f"cannot connect: {exc}")
            out(f"reconnecting in {pause:g} s")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 10.0)


async def demo(limit: int = 25) -> list[Message]:
    """Serve a queue's web sub-app here, run a worker and a producer, and follow the events."""
    from aiohttp import web

    tasks = aqueue.Tasks("examples-ws", "memory://examples-ws")

    @tasks.task(name="demo.square", max_attempts=2, backoff_base=0.05)
    async def square(n: int) -> int:
        await aqueue.progress(50, message="half way")
        await asyncio.sleep(0.05)
        if n % 5 == 1:
            raise ValueError(f"{n} is unlucky")  # fails, is retried once, then dead-lettered
        return n * n

    async def produce() -> None:
        for n in range(1_000):
            await square.enqueue(n)
            await asyncio.sleep(0.05)

    worker = aqueue.Worker(tasks, concurrency=5)
    runner = web.AppRunner(aqueue.web.create_app(tasks, worker))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)  # any free port
    await site.start()
    host, port = runner.addresses[0][:2]
    running = [asyncio.create_task(worker.run()), asyncio.create_task(produce())]
    try:
        return await main(f"ws://{host}:{port}/ws", limit=limit)
    finally:
        running[1].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running[1]
        await worker.stop()
        await running[0]
        await runner.cleanup()
        await tasks.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", nargs="?", help="the sub-app's /ws URL (default: run the demo)")
    parser.add_argument("--types", default="", help="comma-separated event types, e.g. succeeded,dead")
    parser.add_argument("--job", help="only this job's events")
    parser.add_argument("--task", help="only this task's events")
    parser.add_argument("--since", help="start after this event id")
    parser.add_argument("--limit", type=int, help="stop after this many events")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.url is None:
            asyncio.run(demo())
        else:
            types = [t for t in args.types.split(",") if t]
            token = os.environ.get("AQUEUE_TOKEN")
            coro = main(args.url, types=types, job=args.job, task=args.task, since=args.since, limit=args.limit,
                        token=token)  # fmt: skip
            asyncio.run(coro)
    except KeyboardInterrupt:
        pass
    except (ValueError, aiohttp.WSServerHandshakeError) as exc:
        sys.exit(f"ws_client: {exc}")
