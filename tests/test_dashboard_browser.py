"""The dashboard in real headless Chromium (selenium), served on a real port beside a worker on the real Redis.

Needs Debian's ``chromium`` and ``chromium-driver`` (installed by the test itself when missing and it runs as root
with apt-get; otherwise it fails naming them: it is never skipped) and selenium from PyPI (the ``dev`` extra).

Set ``AQUEUE_DASHBOARD_SCREENSHOT=docs/dashboard.png`` to refresh the README's screenshot.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

import aqueue
from aqueue.web import create_app
from tests.helpers import REDIS_URL, RunningWorker, delete_queue, system_binary, wait_until

try:
    from selenium import webdriver
    from selenium.common.exceptions import (
        NoAlertPresentException,
        NoSuchElementException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement
except ImportError:  # reported by the fixture as a failure, not a collection error that hides the other tests
    webdriver = None

T = TypeVar("T")

TOKEN = "dashboard-test-token"
XSS = "<script>alert(1)</script>"
XSS_ERROR = "<img src=x onerror=alert(2)>"
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1440,1800",
)


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[WebDriver]:
    """Headless Chromium with a fresh profile, its console log kept."""
    if webdriver is None:
        pytest.fail("selenium is not installed: pip install selenium (it is in the dev extra)")
    chromium = system_binary(("chromium", "chromium-browser"), ("chromium", "chromium-driver"))
    chromedriver = system_binary(("chromedriver",), ("chromium", "chromium-driver"))
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=chromedriver))
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
async def tasks() -> AsyncIterator[aqueue.Tasks]:
    registry = aqueue.Tasks(
        queue=f"dash-{uuid.uuid4().hex[:8]}",
        redis_url=REDIS_URL,
        settings=aqueue.QueueSettings(retry=aqueue.RetryPolicy(max_attempts=1)),
    )
    yield registry
    await registry.close()
    await delete_queue(REDIS_URL, registry.queue)


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    """``app`` mounted at ``/aqueue/`` on a free port of 127.0.0.1; the runner and the page's URL."""
    root = web.Application()
    root.add_subapp("/aqueue/", app)
    runner = web.AppRunner(root, shutdown_timeout=2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}/aqueue/?token={TOKEN}"


async def run(fn: Callable[..., T], *args: Any) -> T:
    """Call a (blocking) selenium function in a thread, so this loop keeps serving the browser meanwhile."""
    return await asyncio.to_thread(fn, *args)


async def element(driver: WebDriver, css: str, timeout: float = 5.0) -> WebElement:
    found: list[WebElement] = []

    async def present() -> bool:
        found[:] = await run(driver.find_elements, By.CSS_SELECTOR, css)
        return bool(found)

    await wait_until(present, timeout, step=0.05)
    return found[0]


async def click(driver: WebDriver, css: str) -> None:
    """Click the element ``css`` once it is enabled (found again if the page re-rendered it in between): a click on
    a button the page has not enabled yet (Resume, just after Pause answered) does nothing."""

    def find_and_click() -> bool:
        try:
            element = driver.find_element(By.CSS_SELECTOR, css)
            if not element.is_enabled():
                return False
            element.click()
        except (StaleElementReferenceException, NoSuchElementException):
            return False
        return True

    await wait_until(lambda: run(find_and_click), 5, step=0.05)


async def text_of(driver: WebDriver, css: str) -> str:
    """The text of the element ``css`` ("" while there is none)."""

    def read() -> str | None:
        try:
            return str(driver.find_element(By.CSS_SELECTOR, css).text)
        except NoSuchElementException:
            return ""
        except StaleElementReferenceException:  # re-rendered between finding and reading: look again
            return None

    text: str | None = None
    while text is None:
        text = await run(read)
    return text


async def shows(driver: WebDriver, css: str, part: str) -> bool:
    return part in await text_of(driver, css)


async def answered(driver: WebDriver, action: str) -> bool:
    """The header notice shows the outcome of a control button: success, or the status code and message."""
    notice = await text_of(driver, "#notice")
    return notice.startswith(f"{action}: 5") or notice == f"Queue {action}d"


def errors_in(log: list[dict[str, Any]]) -> list[str]:
    return [str(entry["message"]) for entry in log if entry["level"] == "SEVERE"]


async def test_dashboard_shows_the_queue_live_escapes_job_data_and_reprocesses_dead_letters(
    driver: WebDriver, tasks: aqueue.Tasks, tmp_path: Path
) -> None:
    @tasks.task(name="reports.build")
    async def build(n: int) -> int:
        await asyncio.sleep(0.05 + (n % 7) / 40)
        return n

    @tasks.task(name="echo")
    async def echo(text: str) -> str:
        return text

    fixed: set[str] = set()  # cards that work now: their reprocessed jobs succeed

    @tasks.task(name="payments.charge")
    async def charge(text: str) -> None:
        if text not in fixed:
            raise ValueError(text)

    worker = RunningWorker(aqueue.Worker(tasks, min_concurrency=2, max_concurrency=16, scale_interval=0.3))
    runner, url = await serve(create_app(tasks, worker.worker, token=TOKEN))
    stop = asyncio.Event()

    async def produce() -> None:  # a steady, mixed load so the charts and tables have something to show
        n = 0
        while not stop.is_set():
            n += 1
            priority = ("high", "normal", "normal", "low")[n % 4]
            await build.with_options(priority=priority).enqueue(n)
            if n % 25 == 0:
                await charge.enqueue(f"card declined #{n}")
            await asyncio.sleep(0.015)

    producer = asyncio.create_task(produce())
    try:
        await run(driver.get, url)
        await wait_until(lambda: shows(driver, "#conn", "live"), 10, step=0.05)
        assert "queue " + tasks.queue == await text_of(driver, "#queue-name")
        assert errors_in(await run(driver.get_log, "browser")) == []

        # A job enqueued now shows up, live, with its status.
        job = await echo.enqueue(XSS)
        await job.result(timeout=5)
        row = f'#jobs tr[data-job="{job.id}"]'
        await element(driver, row)
        await wait_until(lambda: shows(driver, row, "succeeded"), 5)

        # Its argument is data: shown as text in the details, never run.
        await click(driver, row)
        await wait_until(lambda: shows(driver, "#details-fields", XSS), 5)
        assert await run(driver.find_elements, By.CSS_SELECTOR, "main script, main img") == []

        # A dead-lettered job (its error carries markup too) goes back to its queue with the Reprocess button.
        dead = await charge.enqueue(XSS_ERROR)
        with pytest.raises(aqueue.JobFailed):
            await dead.result(timeout=5)
        await element(driver, f'#dead tr[data-job="{dead.id}"] button.reprocess')
        assert XSS_ERROR in await text_of(driver, f'#dead tr[data-job="{dead.id}"]')
        fixed.add(XSS_ERROR)  # else the reprocessed job fails again and its row comes straight back
        await click(driver, f'#dead tr[data-job="{dead.id}"] button.reprocess')
        await wait_until(lambda: left_dead(dead), 5)
        assert await dead.result(timeout=5) is None
        await wait_until(lambda: gone(driver, f'#dead tr[data-job="{dead.id}"]'), 5)
        assert "sent back" in await text_of(driver, "#notice")

        with pytest.raises(NoAlertPresentException):
            await run(lambda: driver.switch_to.alert.text)
        assert errors_in(await run(driver.get_log, "browser")) == []

        # Pause and Resume answer, and the page shows it; the queue is running again for the screenshot.
        await click(driver, "#pause")
        await wait_until(lambda: answered(driver, "pause"), 5)
        assert await tasks.paused() is not None
        await click(driver, "#resume")
        await wait_until(lambda: answered(driver, "resume"), 5)
        assert await tasks.paused() is None
        assert errors_in(await run(driver.get_log, "browser")) == []

        shot = os.environ.get("AQUEUE_DASHBOARD_SCREENSHOT")
        await asyncio.sleep(50 if shot else 2)  # metrics ticks, so the charts have lines (long ones for the README)
        await run(driver.execute_script, "for (const e of document.querySelectorAll('.scroll')) e.scrollTop = 0")
        path = Path(shot) if shot else tmp_path / "dashboard.png"
        assert await run(driver.save_screenshot, str(path))
    finally:
        stop.set()
        await producer
        await runner.cleanup()
        await worker.stop()


async def left_dead(job: aqueue.Job[Any]) -> bool:
    return await job.status() is not aqueue.JobStatus.DEAD


async def gone(driver: WebDriver, css: str) -> bool:
    return not await run(driver.find_elements, By.CSS_SELECTOR, css)


@pytest.fixture
async def emails() -> AsyncIterator[aqueue.Tasks]:
    """A second queue beside ``tasks``, for the app serving several."""
    registry = aqueue.Tasks(queue=f"dash-mail-{uuid.uuid4().hex[:8]}", redis_url=REDIS_URL)
    yield registry
    await registry.close()
    await delete_queue(REDIS_URL, registry.queue)


async def test_dashboard_of_several_queues_has_an_overview_and_a_queue_selector(
    driver: WebDriver, tasks: aqueue.Tasks, emails: aqueue.Tasks
) -> None:
    from selenium.webdriver.support.select import Select

    @tasks.task(name="orders.place", concurrency_limit=3)
    async def place(n: int) -> int:
        return n

    @emails.task(name="emails.send")
    async def send(to: str) -> str:
        return to

    worker = RunningWorker(aqueue.Worker(emails, concurrency=2))
    runner, url = await serve(create_app([tasks, emails], worker.worker, token=TOKEN))
    try:
        await run(driver.get, url)
        await wait_until(lambda: shows(driver, "#conn", "live"), 10, step=0.05)
        # The overview: every queue in the Queues table, the events of all of them in Recent jobs.
        await wait_until(lambda: shows(driver, "#queue-name", "all queues"), 5)
        await element(driver, f'#queues tr[data-queue="{tasks.queue}"]')
        await element(driver, f'#queues tr[data-queue="{emails.queue}"]')
        mail = await send.enqueue(XSS)
        await mail.result(timeout=5)
        order = await place.enqueue(1)
        await element(driver, f'#jobs tr[data-job="{mail.id}"]')
        await element(driver, f'#jobs tr[data-job="{order.id}"]')
        # The first queue's task limit, named with its queue.
        await wait_until(lambda: shows(driver, "#limits", f"{tasks.queue}: orders.place"), 5)
        assert await run(lambda: driver.find_element(By.ID, "workers").is_displayed()) is False

        # One queue: its own figures, workers and jobs; the URL keeps the choice.
        await run(lambda: Select(driver.find_element(By.ID, "queue-select")).select_by_value(emails.queue))
        await wait_until(lambda: shows(driver, "#queue-name", "queue " + emails.queue), 5)
        await wait_until(lambda: shows(driver, "#workers", worker.worker.id), 5)
        assert await run(lambda: driver.find_element(By.ID, "queues-panel").is_displayed()) is False
        assert await run(lambda: driver.find_element(By.ID, "limits-panel").is_displayed()) is False  # none here
        assert f"queue={emails.queue}" in await run(lambda: driver.current_url)
        again = await send.enqueue("b@example.com")
        await again.result(timeout=5)
        await element(driver, f'#jobs tr[data-job="{again.id}"]')
        await place.enqueue(2)  # another queue's job: not in this view
        assert await run(driver.find_elements, By.CSS_SELECTOR, f'#jobs tr[data-job="{order.id}"]') == []

        # Pause acts on the queue shown, and only on it.
        await click(driver, "#pause")
        await wait_until(lambda: answered(driver, "pause"), 5)
        assert await emails.paused() is not None and await tasks.paused() is None
        await click(driver, "#resume")
        await wait_until(lambda: answered(driver, "resume"), 5)
        assert await emails.paused() is None

        # Back to the overview from the selector.
        await run(lambda: Select(driver.find_element(By.ID, "queue-select")).select_by_value(""))
        await wait_until(lambda: shows(driver, "#queue-name", "all queues"), 5)
        await element(driver, f'#queues tr[data-queue="{tasks.queue}"]')
        assert errors_in(await run(driver.get_log, "browser")) == []
    finally:
        await runner.cleanup()
        await worker.stop()
