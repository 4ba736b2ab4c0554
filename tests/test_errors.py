"""The error tree as docs/tasks.md draws it, and what it means for a task's own ``except`` clauses."""

from __future__ import annotations

import pytest

import aqueue
from aqueue._core import errors
from tests.helpers import MakeTasks, StartWorker


@pytest.mark.no_redis
def test_every_error_aqueue_raises_is_an_aqueue_error_and_the_tree_is_drawn_whole() -> None:
    raised = [
        aqueue.ConfigurationError, aqueue.SerializationError, aqueue.InvalidArguments, aqueue.BrokerUnavailable,
        aqueue.PartialEnqueue, aqueue.PermissionDenied, aqueue.UnknownJob, aqueue.ResultTimeout, aqueue.NoResult,
        aqueue.JobFailed, aqueue.JobCancelled,
    ]  # fmt: skip
    for error in raised:
        assert issubclass(error, aqueue.AqueueError), error
        assert error.__name__ in (errors.__doc__ or ""), f"{error.__name__} is missing from the tree in errors.py"
    assert issubclass(aqueue.PartialEnqueue, aqueue.BrokerUnavailable)
    assert issubclass(aqueue.JobFailed, aqueue.NoResult) and issubclass(aqueue.JobCancelled, aqueue.NoResult)


@pytest.mark.no_redis
def test_the_signals_a_task_raises_are_not_aqueue_errors() -> None:
    for signal in (aqueue.Retry, aqueue.Reject):
        assert issubclass(signal, aqueue.TaskSignal)
        assert not issubclass(signal, aqueue.AqueueError)
        assert signal.__name__ in (errors.__doc__ or "")


async def test_a_task_catching_aqueue_errors_does_not_swallow_its_own_retry(
    make_tasks: MakeTasks, start_worker: StartWorker
) -> None:
    tasks = make_tasks()
    attempts: list[int] = []

    @tasks.task(max_attempts=3)
    async def flaky() -> str:
        attempts.append(aqueue.current_job().attempt)
        try:
            if len(attempts) < 2:
                raise aqueue.Retry("not yet", after=0)
        except aqueue.AqueueError:  # what a task guarding its own aqueue calls writes; must not catch the Retry
            return "swallowed"
        return "done"

    @tasks.task
    async def refuses() -> None:
        try:
            raise aqueue.Reject("bad input")
        except aqueue.AqueueError:
            pass

    await start_worker(tasks, concurrency=2)
    assert await (await flaky.enqueue()).result(timeout=10) == "done"
    assert attempts == [1, 2]
    with pytest.raises(aqueue.NoResult) as caught:
        await (await refuses.enqueue()).result(timeout=10)
    assert isinstance(caught.value, aqueue.JobFailed) and caught.value.error == "Reject: bad input"
