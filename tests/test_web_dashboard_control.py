"""The dashboard's job-control side in real headless Chromium: the pause banner, progress of a running job, Cancel.

Uses the browser fixtures of ``test_dashboard_browser`` (same requirements: chromium, chromium-driver, selenium).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aqueue
from aqueue.web import create_app
from tests import test_dashboard_browser as browser
from tests.helpers import RunningWorker, wait_until
from tests.test_dashboard_browser import TOKEN, click, element, errors_in, gone, run, serve, shows, text_of

driver = browser.driver  # the browser fixtures, shared
tasks = browser.tasks


async def test_dashboard_shows_the_pause_progress_and_cancels_a_running_job(driver: Any, tasks: aqueue.Tasks) -> None:
    release = asyncio.Event()

    @tasks.task(name="reports.slow")
    async def slow(label: str) -> str:
        await aqueue.progress(60, f"<b>{label}</b> rendering")
        await release.wait()
        return label

    worker = RunningWorker(aqueue.Worker(tasks, concurrency=2))
    runner, url = await serve(create_app(tasks, worker.worker, token=TOKEN))
    try:
        await run(driver.get, url)
        await wait_until(lambda: shows(driver, "#conn", "live"), 10, step=0.05)
        assert await run(lambda: driver.find_element("css selector", "#paused-banner").is_displayed()) is False

        # A pause from elsewhere (here: the API of the registry) shows as a banner, and Resume lifts it.
        assert await tasks.pause(by="<i>ops</i>")
        await wait_until(lambda: shows(driver, "#paused-banner", "Queue paused by <i>ops</i>"), 5)
        await click(driver, "#resume")
        await wait_until(lambda: shows(driver, "#notice", "Queue resumed"), 5)
        await wait_until(lambda: run(lambda: not driver.find_element("css selector", "#paused-banner").is_displayed()))
        assert await tasks.paused() is None

        # A running job's progress is drawn; its message is text; Cancel in its details stops it.
        job = await slow.enqueue("q3")
        row = f'#jobs tr[data-job="{job.id}"]'
        bar = await element(driver, f'{row} .progress[title="60%: <b>q3</b> rendering"]')
        assert bar is not None
        await click(driver, row)
        await wait_until(lambda: shows(driver, "#details-fields", "60% \u2013 <b>q3</b> rendering"), 5)
        await click(driver, "#details-fields button.cancel")
        await wait_until(lambda: shows(driver, row, "cancelled"), 5)
        assert await job.status() is aqueue.JobStatus.CANCELLED
        assert "being cancelled" in await text_of(driver, "#notice")
        await wait_until(lambda: gone(driver, "#details-fields button.cancel"), 5)
        assert await run(driver.find_elements, "css selector", "main b, main i, #paused-banner i") == []
        assert errors_in(await run(driver.get_log, "browser")) == []
    finally:
        release.set()
        await runner.cleanup()
        await worker.stop()
