"""A type checker accepts correct enqueue calls and rejects wrong arguments (ParamSpec typing)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

pytestmark = pytest.mark.no_redis  # needs no Redis: runs without one (tests/conftest.py)

SNIPPET = """
import aqueue

tasks = aqueue.Tasks(queue="typing")


@tasks.task
async def add(x: int, y: int) -> int:
    return x + y


@tasks.task(name="emails.send", priority="high")
async def send(to: str) -> None:
    return None


@tasks.task
def sync_len(s: str) -> int:
    return len(s)


@tasks.task
async def mul(total: int, factor: int) -> int:
    return total * factor


async def main() -> None:
    job = await add.enqueue(1, 2)
    total: int = await job.result()
    await send.enqueue("a@example.com")
    await sync_len.with_options(delay=1).enqueue("abc")
    await add.enqueue("one", 2)
    await send.enqueue(to=3)
    await add.enqueue(1)
    wrong: str = await job.result()
    await add.spec(1, 2).then(mul.spec_after(10)).enqueue()
    mul.spec_after("ten")
"""


def test_mypy_rejects_wrong_task_arguments_and_result_types(tmp_path: Path) -> None:
    source = tmp_path / "snippet.py"
    source.write_text(SNIPPET)
    out, _, status = api.run(["--strict", "--no-error-summary", "--cache-dir", str(tmp_path / "cache"), str(source)])
    errors = sorted(line.split(": error: ")[1] for line in out.splitlines() if ": error: " in line)
    assert status == 1
    assert errors == [
        'Argument "to" to "enqueue" of "Task" has incompatible type "int"; expected "str"  [arg-type]',
        'Argument 1 to "enqueue" of "Task" has incompatible type "str"; expected "int"  [arg-type]',
        'Argument 1 to "spec_after" of "Task" has incompatible type "str"; expected "int"  [arg-type]',
        'Incompatible types in assignment (expression has type "int", variable has type "str")  [assignment]',
        'Missing positional argument "y" in call to "enqueue" of "Task"  [call-arg]',
    ]


HOOKS_SNIPPET = """
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aqueue

tasks = aqueue.Tasks(queue="typing-hooks")


@dataclass
class Deps:
    n: int


@tasks.lifespan
async def deps() -> AsyncIterator[Deps]:
    yield Deps(1)


@tasks.middleware
async def timing(job: aqueue.JobContext) -> AsyncIterator[None]:
    yield


@tasks.task
async def use() -> int:
    d = aqueue.resources(Deps)
    wrong: str = aqueue.resources(Deps)
    return d.n


async def not_a_middleware(job: aqueue.JobContext) -> None:
    return None


tasks.middleware(not_a_middleware)
"""


def test_mypy_types_resources_by_the_kind_asked_and_checks_middleware_signatures(tmp_path: Path) -> None:
    source = tmp_path / "hooks.py"
    source.write_text(HOOKS_SNIPPET)
    out, _, status = api.run(["--strict", "--no-error-summary", "--cache-dir", str(tmp_path / "cache"), str(source)])
    errors = sorted(line.split(": error: ")[1] for line in out.splitlines() if ": error: " in line)
    assert status == 1
    assert len(errors) == 2, out
    assert errors[0].startswith('Incompatible types in assignment (expression has type "Deps", variable has type')
    assert errors[1].startswith('Value of type variable "M" of "middleware" of "HooksMixin" cannot be'), out
