"""Schemathesis fuzzes the live web app from its own ``/openapi.json``: no generated request may get a 5xx.

The app (``create_app(tasks, worker, token=None)`` with an autoscaling worker attached) runs on a real port, on
the real Redis, in a background thread with its own event loop; schemathesis sends every request with
``requests`` from the test's thread. Written against schemathesis 4 (``schemathesis.openapi.from_url``,
``APIOperation.as_strategy``, the ``st run`` command line); its pytest plugin (``from_fixture``/``parametrize``)
is not used: under pytest 9.2 it fails with "'Function' object has no attribute '_nodeid'".

Four fuzzing runs, each bounded (about 25 s in all on a 2-core box), and one explicit check:

- valid requests (``GenerationMode.POSITIVE``), 15 per operation;
- invalid requests (``GenerationMode.NEGATIVE``): wrong types, out-of-range numbers, unknown fields, missing
  required ones, 15 per operation that has anything to get wrong;
- the coverage phase of ``st run``: every boundary and every documented-invalid value of every parameter, once;
- valid requests again, their responses checked against the documented status codes, content types and schemas
  (the document claims to be usable as is by a client generator);
- ``POST /jobs`` with keyword arguments named like the producer API's own parameters (``self``…).
"""

from __future__ import annotations

import asyncio
import pathlib
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import aqueue
from aqueue.web import create_app
from tests.helpers import REDIS_URL, LoopThread, delete_queue

EXAMPLES = 15  # generated requests per operation and mode: 18 operations x 15 ~ 3 s against the real Redis


class LiveApp(LoopThread):
    """``create_app(tasks, worker)`` served on 127.0.0.1:<free port> from a thread running its own event loop."""

    def __init__(self) -> None:
        self.queue = f"fuzz-{uuid.uuid4().hex[:10]}"
        super().__init__("aqueue-fuzzed-app")
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._tasks: aqueue.Tasks | None = None
        self._worker: aqueue.Worker | None = None
        self._worker_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        tasks = self._tasks = aqueue.Tasks(queue=self.queue, redis_url=REDIS_URL)

        @tasks.task(name="add")
        async def add(x: int, y: int) -> int:
            return x + y

        @tasks.task(name="echo")  # takes anything: fuzzed arguments become jobs that run
        async def echo(*args: Any, **kwargs: Any) -> list[Any]:
            return [list(args), kwargs]

        @tasks.task(name="boom", max_attempts=1)  # fills the dead letters that retry and reprocess work on
        async def boom() -> None:
            raise RuntimeError("boom")

        worker = self._worker = aqueue.Worker(tasks, min_concurrency=1, max_concurrency=8)  # so /scale can apply
        self._worker_task = asyncio.create_task(worker.run())
        self._runner = web.AppRunner(create_app(tasks, worker, token=None))
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"

    async def stop(self) -> None:
        try:
            if self._runner is not None:
                await self._runner.cleanup()
            if self._worker is not None and self._worker_task is not None:
                await self._worker.stop()
                await self._worker_task
        finally:
            if self._tasks is not None:
                await self._tasks.close()
            await delete_queue(REDIS_URL, self.queue)


@pytest.fixture(scope="module")
def live_app(real_redis: str) -> Iterator[LiveApp]:
    app = LiveApp()
    try:
        app.run(app.start())
        yield app
    finally:
        app.close()


@pytest.fixture(scope="module")
def api_schema(live_app: LiveApp) -> Any:
    """The schema as the live app serves it (its task names and worker bounds are in it)."""
    return schemathesis.openapi.from_url(f"{live_app.base_url}/openapi.json", timeout=10)


def fuzz(operation: Any, mode: GenerationMode, base_url: str, checks: list[Any]) -> int:
    """Send up to ``EXAMPLES`` generated requests of ``operation``, running ``checks`` on each response (the first
    failure raises, shrunk to a minimal request). Returns how many were sent; 0 if ``mode`` can make none."""
    sent = 0

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        nonlocal sent
        sent += 1
        response = case.call(base_url=base_url, timeout=10)
        case.validate_response(response, checks=checks)

    try:
        run()
    except Unsatisfiable:
        return 0  # nothing in this operation can be made invalid (a GET without parameters, say)
    return sent


def fuzz_all(schema: Any, mode: GenerationMode, base_url: str, checks: list[Any]) -> dict[str, int]:
    """Fuzz every operation of ``schema``; fail with every operation's first failure, or return requests sent."""
    failures: list[str] = []
    sent: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()  # raises if the document has an operation schemathesis cannot read
        try:
            sent[operation.label] = fuzz(operation, mode, base_url, checks)
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup is a BaseExceptionGroup
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    return sent


def test_valid_requests_never_get_a_server_error(live_app: LiveApp, api_schema: Any) -> None:
    sent = fuzz_all(api_schema, GenerationMode.POSITIVE, live_app.base_url, [not_a_server_error])
    assert len(sent) >= 18 and all(sent.values()), sent  # every documented operation was exercised
    assert {"POST /jobs", "DELETE /jobs/{id}", "POST /scale", "POST /dead-letter/reprocess"} <= set(sent)


def test_invalid_requests_never_get_a_server_error(live_app: LiveApp, api_schema: Any) -> None:
    sent = fuzz_all(api_schema, GenerationMode.NEGATIVE, live_app.base_url, [not_a_server_error])
    bodies = [label for label in sent if label.startswith(("POST", "DELETE"))]
    assert bodies and all(sent[label] for label in bodies), sent  # every body was sent wrong in some way


def test_boundary_values_never_get_a_server_error(live_app: LiveApp, tmp_path: pathlib.Path) -> None:
    """The coverage phase of ``st run``: each parameter's limits, just past them, wrong types, missing ones."""
    command = [sys.executable, "-m", "schemathesis.cli", "run", f"{live_app.base_url}/openapi.json"]
    command += ["--phases", "coverage", "--checks", "not_a_server_error", "--max-time", "40"]
    command += ["--request-timeout", "10", "--generation-database", "none", "--no-color"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=90, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    tested = re.search(r"Tested: (\d+)", output)
    assert tested and int(tested.group(1)) >= 18, output


def test_keyword_arguments_of_any_name_never_get_a_server_error(live_app: LiveApp) -> None:
    """Names the fuzzer is unlikely to draw: ``self`` is the one the producer API itself has (``Task.spec``)."""
    for name in ("self", "args", "kwargs", "task", "options", "priority", "cls"):
        body = {"task": "echo", "kwargs": {name: [name]}}
        response = requests.post(f"{live_app.base_url}/jobs", json=body, timeout=10)
        assert response.status_code == 201, (name, response.status_code, response.text)


def test_responses_match_the_documented_statuses_types_and_schemas(live_app: LiveApp, api_schema: Any) -> None:
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    fuzz_all(api_schema, GenerationMode.POSITIVE, live_app.base_url, checks)
