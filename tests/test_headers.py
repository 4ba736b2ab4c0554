"""Job headers: a bounded ``str`` → ``str`` map set by the producer (``@tasks.task(headers=)``,
``with_options(headers=)``, a workflow's, ``@tasks.before_enqueue`` hooks), carried in the job's encoded spec
(through retries and reprocess, workflow steps and chains), and seen by the task (``current_job().headers``), its
middleware, the record, the REST job view and ``aqueue job``. On ``memory://`` and the real Redis."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
import pytest

import aqueue
from aqueue.cli.main import main
from tests.helpers import REDIS_URL, MakeTasks, Serve, StartWorker, finished, json_of

on_redis = pytest.mark.parametrize("backend", [REDIS_URL], ids=["redis"])


async def stored_spec(tasks: aqueue.Tasks, job: aqueue.Job[Any]) -> dict[str, Any]:
    """The job's encoded spec as the record hash holds it."""
    broker = await tasks._broker()
    raw = await broker.redis.hget(tasks._keys.job(job.id), "spec")
    assert raw is not None
    spec: dict[str, Any] = orjson.loads(raw)
    return spec


# -- bounds ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "match"),
    [
        ({"": "v"}, "non-empty str"),
        ({"k" * 129: "v"}, "at most 128"),
        ({1: "v"}, "non-empty str"),
        ({"k": 1}, "must be a str"),
        ({"k": None}, "must be a str"),
        ({f"k{i}": "v" for i in range(33)}, "at most 32 headers"),
        ({"k": "v" * 8200}, "at most 8,192"),
        (["k", "v"], "must be a mapping"),
        ({"k": "\ud800"}, "Unicode"),
    ],
)
def test_headers_out_of_bounds_are_a_configuration_error(headers: Any, match: str) -> None:
    tasks = aqueue.Tasks("hdr-bounds", "memory://hdr-bounds")

    @tasks.task
    async def noop() -> None: ...

    with pytest.raises(aqueue.ConfigurationError, match=match):
        noop.with_options(headers=headers)
    with pytest.raises(aqueue.ConfigurationError, match=match):
        tasks.task(name="other", headers=headers)
    with pytest.raises(aqueue.ConfigurationError, match=match):
        tasks.workflow(headers=headers)


def test_the_bounds_themselves_are_accepted_and_merge_key_by_key() -> None:
    tasks = aqueue.Tasks("hdr-merge", "memory://hdr-merge")

    @tasks.task(headers={"team": "a", "tier": "gold"})
    async def noop() -> None: ...

    full = {f"{i:0128d}": "" for i in range(32)}  # 32 names of 128 characters: within every bound
    assert dict(tasks.task(name="full", headers=full)(noop.fn).spec().headers) == full
    with pytest.raises(aqueue.ConfigurationError, match="at most 32 headers"):
        noop.with_options(headers=dict(list(full.items())[:31]))  # 31 + the task's 2
    spec = noop.with_options(headers={"tier": "silver", "x": "1"}).spec()
    assert dict(spec.headers) == {"team": "a", "tier": "silver", "x": "1"}
    assert dict(noop.spec().headers) == {"team": "a", "tier": "gold"}
    assert noop.with_options(headers={"k": "v" * 8000}).spec().headers["k"] == "v" * 8000
    with pytest.raises(TypeError):
        spec.headers["team"] = "b"  # type: ignore[index]


def test_before_enqueue_must_be_a_plain_function() -> None:
    tasks = aqueue.Tasks("hdr-hook", "memory://hdr-hook")

    async def hook(headers: dict[str, str]) -> None: ...

    with pytest.raises(aqueue.ConfigurationError, match="plain function"):
        tasks.before_enqueue(hook)  # type: ignore[arg-type]
    assert tasks._before_enqueue == ()


# -- round trip --------------------------------------------------------------------------------------------------


async def test_headers_reach_the_task_and_its_middleware(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()
    seen: list[Any] = []

    @tasks.middleware
    async def look(job: aqueue.JobContext) -> AsyncIterator[None]:
        seen.append(("middleware", dict(job.headers)))
        yield

    @tasks.task(name="show")
    async def show() -> dict[str, str]:
        headers = aqueue.current_job().headers
        assert isinstance(headers, Mapping)
        return dict(headers)

    @tasks.task(name="plain")
    def plain() -> dict[str, str]:
        return dict(aqueue.current_job().headers)

    await start_worker(tasks)
    job = await show.with_options(headers={"correlation_id": "c-42"}).enqueue()
    assert await job.result(timeout=10) == {"correlation_id": "c-42"}
    assert seen == [("middleware", {"correlation_id": "c-42"})]
    assert await (await plain.with_options(headers={"a": "b"}).enqueue()).result(timeout=10) == {"a": "b"}
    bare = await show.enqueue()
    assert await bare.result(timeout=10) == {}
    assert "h" not in await stored_spec(tasks, bare)  # the common payload did not grow
    record = await job.record()
    assert record.headers == {"correlation_id": "c-42"}
    assert (await bare.record()).headers == {}


async def test_a_job_without_headers_shares_one_empty_mapping(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()

    @tasks.task(name="ident")
    async def ident() -> int:
        return id(aqueue.current_job().headers)

    await start_worker(tasks)
    first, second = await tasks.enqueue_many([ident.spec(), ident.spec()])
    assert await first.result(timeout=10) == await second.result(timeout=10)


async def test_headers_survive_a_retry_and_a_reprocess(make_tasks: MakeTasks, start_worker: StartWorker) -> None:
    tasks = make_tasks()
    seen: list[tuple[int, dict[str, str]]] = []
    runs = {"left": 2}

    @tasks.task(name="flaky", max_attempts=2, backoff_base=0.01, backoff_max=0.01)
    async def flaky() -> str:
        job = aqueue.current_job()
        seen.append((job.attempt, dict(job.headers)))
        if runs["left"] > 0:
            runs["left"] -= 1
            raise RuntimeError("not yet")
        return "ok"

    await start_worker(tasks)
    job = await flaky.with_options(headers={"trace": "t-1"}).enqueue()
    assert (await finished(job)).status is aqueue.JobStatus.DEAD
    assert seen == [(1, {"trace": "t-1"}), (2, {"trace": "t-1"})]
    await tasks.reprocess([job.id])
    assert await job.result(timeout=10) == "ok"
    assert seen[-1] == (1, {"trace": "t-1"})
    assert (await job.record()).headers == {"trace": "t-1"}


# -- workflows and chains ----------------------------------------------------------------------------------------


async def test_workflow_steps_inherit_its_headers_and_their_own_keys_win(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()

    @tasks.task(name="h")
    async def h(*_: Any) -> dict[str, str]:
        return dict(aqueue.current_job().headers)

    wf = tasks.workflow("wf", headers={"tenant": "acme", "who": "wf"})
    a = wf.step(h.spec())
    b = a.then(h.with_options(headers={"who": "step", "own": "1"}).spec())
    failed = a.on_failure(h.spec())
    await start_worker(tasks)
    handle = await wf.enqueue()
    assert await handle.jobs[a.name].result(timeout=10) == {"tenant": "acme", "who": "wf"}
    assert await handle.jobs[b.name].result(timeout=10) == {"tenant": "acme", "who": "step", "own": "1"}
    assert (await finished(handle.jobs[failed.name])).headers == {"tenant": "acme", "who": "wf"}


async def test_a_chain_gives_every_step_the_first_ones_headers_unless_its_own(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()

    @tasks.task(name="h")
    async def h(prev: Any = None) -> list[Any]:
        return [prev, dict(aqueue.current_job().headers)]

    await start_worker(tasks)
    first = h.with_options(headers={"c": "1"}).spec()
    last = await first.then(h.spec_after()).then(h.with_options(headers={"c": "3", "d": "4"}).spec_after()).enqueue()
    result = await last.result(timeout=10)
    assert result[1] == {"c": "3", "d": "4"}
    assert result[0][1] == {"c": "1"} and result[0][0][1] == {"c": "1"}


# -- the producer hook -------------------------------------------------------------------------------------------

correlation: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation", default=None)


async def test_before_enqueue_adds_a_header_from_the_callers_context(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()
    calls: list[dict[str, str]] = []

    @tasks.before_enqueue
    def add_correlation(headers: dict[str, str]) -> None:
        calls.append(dict(headers))
        if (cid := correlation.get()) is not None:
            headers.setdefault("correlation_id", cid)

    @tasks.task(name="h", headers={"from": "task"})
    async def h(*_: Any) -> dict[str, str]:
        return dict(aqueue.current_job().headers)

    await start_worker(tasks)
    assert await (await h.enqueue()).result(timeout=10) == {"from": "task"}

    async def request() -> list[aqueue.Job[Any]]:
        correlation.set("req-7")
        one = await h.enqueue()
        many = await tasks.enqueue_many([h.with_options(headers={"correlation_id": "mine"}).spec()])
        chain = await h.spec().then(h.spec_after()).enqueue()
        return [one, *many, chain]

    one, mine, chain = await asyncio.create_task(request())
    assert await one.result(timeout=10) == {"from": "task", "correlation_id": "req-7"}
    assert await mine.result(timeout=10) == {"from": "task", "correlation_id": "mine"}
    assert await chain.result(timeout=10) == {"from": "task", "correlation_id": "req-7"}
    assert calls[0] == {"from": "task"} and len(calls) == 5  # every spec made ran it once
    assert correlation.get() is None


async def test_a_hook_that_raises_writes_nothing(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()

    @tasks.task(name="h")
    async def h() -> None: ...

    @tasks.before_enqueue
    def refuse(headers: dict[str, str]) -> None:
        raise PermissionError("no enqueue here")

    with pytest.raises(PermissionError, match="no enqueue here"):
        await h.enqueue()
    with pytest.raises(PermissionError):
        h.spec()
    assert sum((await tasks.info()).queued.values()) == 0


async def test_a_hook_that_breaks_the_bounds_is_a_configuration_error(make_tasks: MakeTasks) -> None:
    tasks = make_tasks()

    @tasks.task(name="h")
    async def h() -> None: ...

    @tasks.before_enqueue
    def bad(headers: dict[str, str]) -> None:
        headers["n"] = 1  # type: ignore[assignment]

    with pytest.raises(aqueue.ConfigurationError, match="before_enqueue"):
        await h.enqueue()


# -- REST and CLI ------------------------------------------------------------------------------------------------


async def test_rest_enqueue_takes_headers_and_the_job_view_shows_them(serve: Serve, make_tasks: MakeTasks) -> None:
    tasks = make_tasks()

    @tasks.task(name="echo")
    async def echo() -> None: ...

    client = await serve(tasks)
    body = {"task": "echo", "headers": {"correlation_id": "<b>c-42</b>"}}
    job_id = (await json_of(await client.post("/jobs", json=body), 201))["id"]
    view = await json_of(await client.get(f"/jobs/{job_id}"), 200)
    assert view["headers"] == {"correlation_id": "<b>c-42</b>"}
    bare = (await json_of(await client.post("/jobs", json={"task": "echo"}), 201))["id"]
    assert (await json_of(await client.get(f"/jobs/{bare}"), 200))["headers"] == {}
    for bad, match in [({"k": 1}, "must be a str"), ({"": "v"}, "non-empty"), ("x", "mapping")]:
        reply = await json_of(await client.post("/jobs", json={"task": "echo", "headers": bad}), 422)
        assert match in str(reply)
    assert sum((await tasks.info()).queued.values()) == 2
    schema = await json_of(await client.get("/openapi.json"), 200)
    assert "headers" in schema["components"]["schemas"]["EnqueueRequest"]["properties"]
    assert "headers" in schema["components"]["schemas"]["Job"]["properties"]


@on_redis
async def test_aqueue_job_prints_the_headers(
    make_tasks: MakeTasks, capsys: pytest.CaptureFixture[str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = make_tasks()

    @tasks.task(name="echo")
    async def echo() -> None: ...

    job = await echo.with_options(headers={"correlation_id": "c-42", "note": "two\nlines"}).enqueue()
    bare = await echo.enqueue()
    (tmp_path / "hdr_cli_app.py").write_text('import aqueue\n\ntasks = aqueue.Tasks("unused")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = ["job", "hdr_cli_app:tasks", "--redis", REDIS_URL, "--queue", tasks.queue]
    capsys.readouterr()
    assert await asyncio.to_thread(main, [*argv, job.id]) == 0
    out = capsys.readouterr().out
    assert "headers    correlation_id=c-42\n" in out
    assert "           note=two lines\n" in out
    assert await asyncio.to_thread(main, [*argv, bare.id]) == 0
    assert "headers" not in capsys.readouterr().out
    assert await asyncio.to_thread(main, [*argv, job.id, "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out)["jobs"][0]["headers"] == {
        "correlation_id": "c-42",
        "note": "two\nlines",
    }
