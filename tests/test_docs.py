"""Every Python snippet of every page under docs/ runs, in order, as a reader would run them: a page is one
namespace, top-level ``await`` is allowed (as in ``python -m asyncio``), and ``asyncio.run(main())`` becomes
``await main()``. Each ``Tasks`` a snippet creates gets a worker in the background (the pages say "with a worker
running"). ``Tasks`` without a URL run on a ``memory://`` server of their own (``AQUEUE_REDIS_URL``)."""

from __future__ import annotations

import ast
import asyncio
import functools
import inspect
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

import aqueue
from tests.helpers import wait_until

pytestmark = pytest.mark.no_redis  # needs no Redis: runs without one (tests/conftest.py)

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(p for p in DOCS.glob("*.md") if "```python" in p.read_text())


def snippets(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def test_the_pages_with_snippets_are_found() -> None:
    names = {p.name for p in PAGES}
    assert {"tasks.md", "retries.md", "scheduling.md", "workflows.md", "ratelimits-dedup.md", "web.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
async def test_every_snippet_of_the_page_runs(page: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AQUEUE_REDIS_URL", f"memory://docs-{uuid.uuid4().hex[:8]}")
    namespace: dict[str, Any] = {"__name__": f"docs.{page.stem}"}
    workers: dict[int, tuple[aqueue.Worker, asyncio.Task[None]]] = {}
    seen: list[Any] = []  # every Worker and Task a snippet made, even if a later one rebinds its name
    try:
        for n, source in enumerate(snippets(page)):
            source = re.sub(r"^asyncio\.run\((.*)\)$", r"await \1", source, flags=re.M)
            code = compile(source, f"{page.name}, snippet {n + 1}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            result = eval(code, namespace)  # our own docs: the point is to run them
            if inspect.iscoroutine(result):
                await asyncio.wait_for(result, 30)
            seen += [v for v in namespace.values() if isinstance(v, aqueue.Worker | asyncio.Task) and v not in seen]
            for value in list(namespace.values()):
                if isinstance(value, aqueue.Tasks) and id(value) not in workers:
                    worker = aqueue.Worker(value, concurrency=20)
                    workers[id(value)] = (worker, asyncio.create_task(worker.run(handle_signals=False)))
                    await wait_until(functools.partial(_registered, value, worker), 10)
    finally:
        for worker, running in workers.values():
            await worker.stop()
            await running
        for made in seen:  # what the snippets started themselves: workers first, then the tasks running them
            if isinstance(made, aqueue.Worker):
                await made.stop()
        for made in seen:
            if isinstance(made, asyncio.Task):
                await made
        for value in namespace.values():
            if isinstance(value, aqueue.Tasks):
                await value.close()


async def _registered(tasks: aqueue.Tasks, worker: aqueue.Worker) -> bool:
    return any(w["id"] == worker.id for w in (await tasks.info()).workers)
