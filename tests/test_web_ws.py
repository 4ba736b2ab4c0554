"""The live WebSocket ``GET /ws``: snapshot, events in order, resume, filters, slow clients, auth, bad input."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer, get_port_socket
from multidict import MultiDict

import aqueue
from aqueue.web import create_app
from aqueue.web.fanout import EventFilter, Subscription, parse_event_id, previous_event_id
from aqueue.web.ws import CLOSE_BAD_REQUEST, CLOSE_SLOW_CONSUMER, FANOUT, WS_OPTIONS, WsOptions, parse_query
from tests.helpers import MakeTasks, Message, StartWorker, next_of, wait_until

ON_CLUSTER = True


def small_send_buffers(host: str, port: int, family: socket.AddressFamily) -> socket.socket:
    """A listening socket whose connections get a 4 KiB kernel send buffer (accepted sockets inherit it), so a
    client that does not read blocks the server's writes after a few KiB instead of a few MiB."""
    sock = get_port_socket(host, port, family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return sock


@asynccontextmanager
async def serve(
    tasks: aqueue.Tasks, options: WsOptions | None = None, small_buffers: bool = False, **kwargs: Any
) -> AsyncIterator[TestClient]:
    """The web app of ``tasks`` on a test server, with ``/ws`` tuned by ``options``."""
    app = create_app(tasks, **kwargs)
    if options is not None:
        app[WS_OPTIONS] = options
    server = TestServer(app, socket_factory=small_send_buffers if small_buffers else get_port_socket)
    async with TestClient(server) as client:
        yield client


async def events_until(
    ws: aiohttp.ClientWebSocketResponse, done: Callable[[list[Message]], bool], timeout: float = 5.0
) -> list[Message]:
    """Event messages received until ``done(events so far)``."""
    events: list[Message] = []
    async with asyncio.timeout(timeout):
        while not done(events):
            message: Message = await ws.receive_json()
            if message["type"] == "event":
                events.append(message)
    return events


async def add_task(tasks: aqueue.Tasks) -> aqueue.Task[[int, int], int]:
    @tasks.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    return add


# -- the feed ------------------------------------------------------------------------------------------------


async def test_connect_gets_snapshot_then_a_jobs_events_in_order_within_a_second(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()
    add = await add_task(tasks)
    await start_worker(tasks, concurrency=2)
    async with serve(tasks) as client, client.ws_connect("/ws") as ws:
        snapshot: Message = await ws.receive_json()
        assert snapshot["type"] == "snapshot"
        assert snapshot["status"]["queue"] == tasks.queue and "depths" in snapshot["status"]
        assert snapshot["dead_letter"] == [] and snapshot["buffer"] == WsOptions().buffer
        started = time.monotonic()
        job = await add.enqueue(2, 3)
        events = await events_until(ws, lambda ev: any(e["event"]["type"] == "succeeded" for e in ev), timeout=1.0)
        assert time.monotonic() - started < 1.0
    mine = [e for e in events if e["event"].get("job") == job.id]
    assert [e["event"]["type"] for e in mine] == ["enqueued", "started", "succeeded"]
    ids = [parse_event_id(e["id"]) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert ids[0] > parse_event_id(snapshot["last_id"])


async def test_metrics_messages_carry_the_status_figures(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()
    async with serve(tasks, WsOptions(metrics_interval=0.05)) as client, client.ws_connect("/ws") as ws:
        snapshot = await next_of(ws, "snapshot")
        first, second = await next_of(ws, "metrics"), await next_of(ws, "metrics")
        status = await (await client.get("/status")).json()
    assert first["status"].keys() == second["status"].keys() == status.keys() == snapshot["status"].keys()


async def test_one_events_reader_serves_every_client(make_tasks: MakeTasks, monkeypatch: pytest.MonkeyPatch) -> None:
    tasks = make_tasks()
    add = await add_task(tasks)
    broker = await tasks._broker()
    live_reads, most = 0, 0
    read_events = broker.read_events

    async def counting(last_id: str, count: int, timeout: float) -> list[tuple[str, dict[str, str]]]:
        nonlocal live_reads, most
        if timeout == 0:  # a client catching up reads without waiting
            return await read_events(last_id, count, timeout)
        live_reads += 1
        most = max(most, live_reads)
        try:
            return await read_events(last_id, count, timeout)
        finally:
            live_reads -= 1

    monkeypatch.setattr(broker, "read_events", counting)
    async with serve(tasks) as client:
        sockets = [await client.ws_connect("/ws") for _ in range(5)]
        for ws in sockets:
            await next_of(ws, "snapshot")
        job = await add.enqueue(1, 1)
        for ws in sockets:
            [event] = await events_until(ws, lambda ev: len(ev) == 1)
            assert event["event"] == {"type": "enqueued", "job": job.id, "task": "add", "priority": "normal"}
        assert client.app[FANOUT].clients == 5
        for ws in sockets:
            await ws.close()
        await wait_until(lambda: client.app[FANOUT].clients == 0)
    assert most == 1


# -- resume ----------------------------------------------------------------------------------------------------


async def test_since_resumes_with_every_missed_event_exactly_once(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()
    add = await add_task(tasks)
    broker = await tasks._broker()
    async with serve(tasks, WsOptions(history_batch=7)) as client:
        async with client.ws_connect("/ws") as ws:
            await next_of(ws, "snapshot")
            await add.enqueue(0, 0)
            [seen] = await events_until(ws, lambda ev: len(ev) == 1)
        # Missed while disconnected, then more written while the client catches up: no gap, no duplicate.
        await tasks.enqueue_many([add.spec(i, i) for i in range(40)])
        stop = asyncio.Event()

        async def produce() -> None:
            while not stop.is_set():
                await add.enqueue(1, 2)
                await asyncio.sleep(0.001)

        producer = asyncio.create_task(produce())
        try:
            async with client.ws_connect(f"/ws?since={seen['id']}") as ws:
                await next_of(ws, "snapshot")
                events = await events_until(ws, lambda ev: len(ev) >= 60)
                stop.set()
                await producer
                last = await broker.last_event_id()
                if last not in _ids(events):  # events arrive in id order: the newest comes last
                    events += await events_until(ws, lambda ev: bool(ev) and ev[-1]["id"] == last)
        finally:
            stop.set()
            await producer
    written = [eid for eid, _ in await broker.read_events(seen["id"], 10_000, 0.0)]
    assert _ids(events) == written


def _ids(events: list[Message]) -> list[str]:
    return [e["id"] for e in events]


async def test_a_burst_bigger_than_the_buffer_during_catch_up_is_read_from_history(
    make_tasks: MakeTasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = make_tasks()
    add = await add_task(tasks)
    broker = await tasks._broker()
    await add.enqueue(0, 0)
    since = await broker.last_event_id()
    await tasks.enqueue_many([add.spec(i, i) for i in range(20)])
    read_events = broker.read_events
    burst_done = False

    async def burst_while_catching_up(last_id: str, count: int, timeout: float) -> list[tuple[str, dict[str, str]]]:
        nonlocal burst_done
        if timeout == 0 and not burst_done:  # the client's first history read: 30 live events, buffer of 10
            burst_done = True
            await tasks.enqueue_many([add.spec(i, i) for i in range(30)])
            await asyncio.sleep(0.1)  # the events reader dispatches them meanwhile
        return await read_events(last_id, count, timeout)

    monkeypatch.setattr(broker, "read_events", burst_while_catching_up)
    async with (
        serve(tasks, WsOptions(buffer=10, history_batch=4)) as client,
        client.ws_connect(f"/ws?since={since}") as ws,
    ):
        await next_of(ws, "snapshot")
        events = await events_until(ws, lambda ev: len(ev) == 50)
        late = await add.enqueue(1, 1)
        [last] = await events_until(ws, lambda ev: len(ev) == 1)
        assert last["event"]["job"] == late.id and not ws.closed
    assert burst_done
    written = [eid for eid, _ in await read_events(since, 10_000, 0.0)]
    assert [*_ids(events), last["id"]] == written


async def test_since_no_longer_in_the_stream_reports_a_gap(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()
    add = await add_task(tasks)
    await add.enqueue(1, 1)
    first = (await (await tasks._broker()).read_events("0-0", 1, 0.0))[0][0]
    async with serve(tasks) as client, client.ws_connect("/ws?since=5-0") as ws:
        await next_of(ws, "snapshot")
        gap = await ws.receive_json()
        assert gap == {"type": "gap", "since": "5-0", "first": first}
        [event] = await events_until(ws, lambda ev: len(ev) == 1)
        assert event["id"] == first


async def test_recent_starts_with_the_newest_events(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()
    add = await add_task(tasks)
    jobs = await tasks.enqueue_many([add.spec(i, i) for i in range(5)])
    async with serve(tasks) as client, client.ws_connect("/ws?recent=3") as ws:
        await next_of(ws, "snapshot")
        events = await events_until(ws, lambda ev: len(ev) == 3)
        assert [e["event"]["job"] for e in events] == [j.id for j in jobs[2:]]
        late = await add.enqueue(9, 9)
        [event] = await events_until(ws, lambda ev: len(ev) == 1)
        assert event["event"]["job"] == late.id


# -- filters ---------------------------------------------------------------------------------------------------


async def test_filters_by_type_job_and_task(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()
    add = await add_task(tasks)

    @tasks.task(name="mul")
    async def mul(x: int, y: int) -> int:
        return x * y

    mine, other = await add.enqueue(1, 1), await add.enqueue(2, 2)
    async with serve(tasks) as client:
        by_type = await client.ws_connect("/ws?types=succeeded,enqueued")
        by_job = await client.ws_connect(f"/ws?job={mine.id}")
        by_task = await client.ws_connect("/ws?task=mul")
        both = await client.ws_connect(f"/ws?types=succeeded&job={other.id}")
        for ws in (by_type, by_job, by_task, both):
            snapshot = await next_of(ws, "snapshot")
        assert snapshot["filters"] == {"types": ["succeeded"], "job": other.id, "task": None}
        product = await mul.enqueue(3, 3)
        await start_worker(tasks, concurrency=4)
        await asyncio.gather(mine.result(timeout=5), other.result(timeout=5), product.result(timeout=5))

        typed = await events_until(by_type, lambda ev: len(ev) == 4)
        assert sorted(e["event"]["type"] for e in typed) == ["enqueued", "succeeded", "succeeded", "succeeded"]
        assert [e["event"]["type"] for e in await events_until(by_job, lambda ev: len(ev) == 2)] == [
            "started",
            "succeeded",
        ]
        tasked = await events_until(by_task, lambda ev: len(ev) == 3)
        assert {e["event"]["task"] for e in tasked} == {"mul"}
        [done] = await events_until(both, lambda ev: len(ev) == 1)
        assert done["event"]["job"] == other.id
        for ws in (by_type, by_job, by_task, both):
            await ws.close()


def test_event_filter_and_query_parsing() -> None:
    flt = EventFilter(frozenset({"dead"}), task="t")
    assert flt.matches({"type": "dead", "task": "t", "job": "j"})
    assert not flt.matches({"type": "dead", "task": "u"}) and not flt.matches({"type": "started", "task": "t"})
    assert EventFilter().matches({"type": "scaling"})
    query = parse_query(MultiDict([("types", "dead, succeeded"), ("types", "scaling"), ("since", "12-3")]))
    assert query.filter.types == {"dead", "succeeded", "scaling"} and query.since == (12, 3)
    assert previous_event_id((12, 0)) == (11, 2**64 - 1) and previous_event_id((0, 0)) is None


@pytest.mark.parametrize(
    ("query", "complaint"),
    [
        ("since=garbage", "'garbage' is not an event id"),
        ("since=12-x", "not an event id"),
        ("types=bogus", "unknown event type 'bogus'; known types: cancelled, cancelling, cleanup, cron, dead"),
        ("types=,", "types= must name at least one event type"),
        ("job=a&job=b", "job= is given 2 times"),
        ("task=", "task= must be 1 to 512 characters"),
        ("recent=0", "recent= must be a whole number from 1 to 1000"),
        ("recent=5&since=1-0", "not both"),
        ("typo=1", "unknown query parameter 'typo'"),
    ],
)
def test_malformed_queries_are_refused_with_the_reason(query: str, complaint: str) -> None:
    params = MultiDict(pair.split("=", 1) for pair in query.split("&"))
    with pytest.raises(ValueError, match=re.escape(complaint)):
        parse_query(params)


async def test_malformed_query_gets_an_error_then_close_4400(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()
    async with serve(tasks) as client:
        for query in ("since=garbage", "types=started,nonsense"):
            async with client.ws_connect(f"/ws?{query}") as ws:
                error: Message = await ws.receive_json()
                assert error["type"] == "error" and error["error"].startswith("bad query string: ")
                closing = await ws.receive()
                assert closing.type is WSMsgType.CLOSE and closing.data == CLOSE_BAD_REQUEST
        plain = await client.get("/ws")
        assert plain.status == 426 and "WebSocket" in (await plain.json())["error"]


async def test_bad_client_messages_get_errors_and_the_connection_lives_on(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()
    add = await add_task(tasks)
    job = await add.enqueue(4, 5)
    async with serve(tasks) as client, client.ws_connect("/ws") as ws:
        await next_of(ws, "snapshot")
        for bad, complaint in [
            ("not json", "message is not JSON"),
            ("[1, 2]", "must be a JSON object"),
            ('{"op": "explode"}', "unknown op 'explode'"),
            ('{"op": "job"}', '"id" must be a job id'),
        ]:
            await ws.send_str(bad)
            assert complaint in (await next_of(ws, "error"))["error"]
        await ws.send_bytes(b"\x00\x01")
        assert "binary" in (await next_of(ws, "error"))["error"]
        await ws.send_json({"op": "ping"})
        assert await next_of(ws, "pong") == {"type": "pong"}
        await ws.send_json({"op": "job", "id": "nope"})
        assert await next_of(ws, "job") == {"type": "job", "id": "nope", "job": None}
        await ws.send_json({"op": "job", "id": job.id})
        record = (await next_of(ws, "job"))["job"]
        assert record["args"] == [4, 5] and record["status"] == "queued" and record["task"] == "add"
        broker = await tasks._broker()
        await broker.redis.hset(tasks._keys.job("odd"), mapping={"task": "add", "status": "no-such-status"})
        await ws.send_json({"op": "job", "id": "odd"})
        assert "unreadable record" in (await next_of(ws, "error"))["error"]
        await ws.send_str("x" * 20_000)  # over the 16 KiB a request may take
        closing = await ws.receive()
        assert closing.type is WSMsgType.CLOSE and closing.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG


# -- slow clients ------------------------------------------------------------------------------------------------


async def raw_ws(host: str, port: int, path: str) -> socket.socket:
    """A WebSocket handshake on a socket with a tiny receive buffer, which the test then does not read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window stays small
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 1)  # byte by byte: leave the first frame unread
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def close_code(sock: socket.socket) -> int:
    """Read server frames until the close frame; its status code."""
    loop = asyncio.get_running_loop()

    async def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = await loop.sock_recv(sock, n - len(data))
            assert chunk, "connection closed before a close frame"
            data += chunk
        return data

    while True:
        first, second = await exactly(2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(await exactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await exactly(8), "big")
        payload = await exactly(length)
        if first & 0x0F == 0x8:
            return int.from_bytes(payload[:2], "big")


async def test_slow_client_is_dropped_while_a_fast_one_keeps_receiving(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()
    add = await add_task(tasks)
    async with serve(tasks, WsOptions(buffer=20), small_buffers=True) as client:
        fanout = client.app[FANOUT]
        fast = await client.ws_connect("/ws")
        await next_of(fast, "snapshot")
        received: list[Message] = []

        async def read_fast() -> None:
            async for msg in fast:
                message = msg.json()
                if message["type"] == "event":
                    received.append(message)

        reader = asyncio.create_task(read_fast())
        assert client.host is not None and client.port is not None
        slow = await raw_ws(client.host, client.port, "/ws")
        try:
            await wait_until(lambda: fanout.clients == 2)
            sent = 0
            async with asyncio.timeout(20):
                while fanout.clients == 2:  # small batches, so a client that reads never falls 20 behind
                    await tasks.enqueue_many([add.spec(i, i) for i in range(5)])
                    sent += 5
                    await asyncio.sleep(0.002)
            assert await close_code(slow) == CLOSE_SLOW_CONSUMER
            late = await add.enqueue(7, 7)
            await wait_until(lambda: bool(received) and received[-1]["event"]["job"] == late.id)
            assert len(received) == sent + 1 and not fast.closed
        finally:
            slow.close()
            reader.cancel()
            await fast.close()


def test_subscription_overflow_discards_the_backlog_and_signals_once() -> None:
    calls: list[int] = []
    sub = Subscription(EventFilter(), capacity=2)
    sub.on_overflow = lambda: calls.append(len(sub))
    for i in range(5):
        sub.offer((i, 0), f"m{i}")
    assert sub.overflowed and len(sub) == 0 and calls == [0]
    sub.restart()
    sub.offer((9, 0), "m9")
    assert not sub.overflowed and sub.first_event_id() == (9, 0)


# -- auth and lifecycle ------------------------------------------------------------------------------------------


async def test_token_is_required_when_configured(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()
    async with serve(tasks, token="s3cret") as client:
        for path, headers in [("/ws", {}), ("/ws?token=wrong", {}), ("/ws", {"Authorization": "Bearer nope"})]:
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await client.ws_connect(path, headers=headers)
            assert info.value.status == 401
        refused = await client.get("/ws")
        assert refused.status == 401 and "token" in (await refused.json())["error"]
        async with client.ws_connect("/ws", headers={"Authorization": "Bearer s3cret"}) as ws:
            assert (await ws.receive_json())["type"] == "snapshot"
        async with client.ws_connect("/ws?token=s3cret&types=dead") as ws:
            assert (await ws.receive_json())["type"] == "snapshot"


async def test_server_shutdown_closes_clients_with_going_away(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()
    client = TestClient(TestServer(create_app(tasks)))
    await client.start_server()
    try:
        ws = await client.ws_connect("/ws")
        await next_of(ws, "snapshot")
        started = time.monotonic()
        await client.server.close()
        closing = await ws.receive()
        assert closing.type is WSMsgType.CLOSE and closing.data == aiohttp.WSCloseCode.GOING_AWAY
        assert time.monotonic() - started < 2
    finally:
        await client.close()


async def test_dead_letters_are_in_the_snapshot(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks(aqueue.QueueSettings(retry=aqueue.RetryPolicy(max_attempts=1)))

    @tasks.task(name="boom")
    async def boom(text: str) -> None:
        raise ValueError(text)

    await start_worker(tasks)
    job = await boom.enqueue("<script>alert(1)</script>")
    with pytest.raises(aqueue.JobFailed):
        await job.result(timeout=5)
    async with serve(tasks) as client, client.ws_connect("/ws") as ws:
        [entry] = (await next_of(ws, "snapshot"))["dead_letter"]
    assert entry["job"] == job.id and entry["task"] == "boom" and "<script>" in entry["reason"]
