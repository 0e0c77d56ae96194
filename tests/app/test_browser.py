"""The demo's page in headless Chromium: sign in, a refused and an accepted submit, and the task
going PENDING -> RUNNING (with progress) -> DONE in the table while the Space switches hardware.

Debian's `chromium` (/usr/bin/chromium) driven by Python playwright; screenshots of each state go
to test-artifacts/ (gitignored).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from .browser import CHROMIUM, CHROMIUM_ARGS, DEMO_TOKEN, require_chromium, screenshot, visible_toasts
from .conftest import ROOT, sigint_restored

require_chromium()


class Demo(str):
    """The app's URL, with the address of the emulator's bill for the demo's Space."""

    billing: str


@pytest.fixture
def demo(tmp_path):
    """`space-scheduler demo` in the background; yields the app's URL (a Demo); Ctrl-C at the end."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "scheduler", "demo", "--data", str(tmp_path / "hub"),
                             "--boot-delay", "1", "--recipe", "numpy"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=sigint_restored)
    lines: list[str] = []
    url = billing = None
    deadline = time.monotonic() + 240
    while url is None:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the demo did not print its URL:\n" + "".join(lines))
        lines.append(line)
        found = re.search(r"billing at (http://\S+)", line)
        billing = found.group(1) if found else billing
        found = re.search(r"Space is up: (http://\S+)", line)
        url = Demo(found.group(1)) if found else None
    url.billing = billing
    # Keep reading: a full pipe would block the demo's status line, and with it the demo.
    rest: list[str] = []
    reader = threading.Thread(target=lambda: rest.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
            reader.join(10)
            out = "".join(rest)
        except subprocess.TimeoutExpired:
            proc.kill()
            out = "".join(rest)
        assert proc.returncode == 0, "".join(lines) + out


@pytest.fixture
def page(tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1300})
        try:
            yield context.new_page()
        finally:
            context.close()


def server_up(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


ROW_TEXT = """([id, statuses]) => {
    // Gradio also keeps a hidden row to measure column widths: only a row showing a status counts.
    for (const row of document.querySelectorAll('#queue-table [role=row]')) {
        const text = row.innerText;
        if (text.includes(id) && statuses.some(s => text.includes(s))) return text;
    }
    return '';
}"""


def row_of(page, task_id: str) -> str:
    from playwright.sync_api import Error as PlaywrightError

    try:
        return page.evaluate(ROW_TEXT, [task_id, ["PENDING", "RUNNING", "DONE", "FAILED", "CANCELLED", "stopping"]])
    except PlaywrightError:  # the page is being replaced by a reload
        return ""


def wait_for_row(page, task_id: str, status: str, timeout: float, shot: str | None = None) -> None:
    """Wait for the task's row to show `status`; the page refreshes itself, but while the Space restarts
    onto other hardware its server is gone for seconds, so a page left without news is reloaded."""
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    last, was_down = None, False
    from playwright.sync_api import Error as PlaywrightError

    while status not in (text := row_of(page, task_id)):
        # The Space restarts onto its GPU and back: a plain note at most, never Gradio's red error.
        assert not any("Connection" in toast for toast in visible_toasts(page)), visible_toasts(page)
        if text != last:
            last, quiet_since = text, time.monotonic()
        elif time.monotonic() - quiet_since > 1:
            up = server_up(page.url)
            was_down = was_down or not up
            # Back after a restart (the old page's events went to a server that is gone), or silent too long.
            if up and (was_down or time.monotonic() - quiet_since > 4):
                try:
                    page.goto(page.url)
                    page.wait_for_selector("#queue-table", timeout=60_000)
                    was_down = False
                except PlaywrightError:  # the server went away again mid-load (the next restart)
                    was_down = True
                quiet_since = time.monotonic()
        if time.monotonic() > deadline:
            screenshot(page, "app-failed.png")
            pytest.fail(f"{task_id} never showed {status}; last row: {text!r}")
        page.wait_for_timeout(200)
    if shot:
        screenshot(page, shot)


def test_a_task_submitted_in_the_browser_goes_pending_running_done_with_progress(demo, page):
    page.goto(demo)
    page.wait_for_selector("#whoami", timeout=60_000)
    page.get_by_text("Not signed in").wait_for(timeout=60_000)
    page.get_by_role("button", name=re.compile("Sign in with Hugging Face")).click()
    page.get_by_text("Signed in as").wait_for(timeout=60_000)
    assert "demo" in page.locator("#whoami").inner_text()

    page.locator("#field-model_id textarea, #field-model_id input").first.fill("not a repo")
    page.locator("#field-dataset_id textarea, #field-dataset_id input").first.fill("demo/reviews-mini")
    page.locator("#submit").click()
    error = page.locator("#err-model_id")
    error.get_by_text("Model id").wait_for(timeout=60_000)
    assert "must be OWNER/NAME" in error.inner_text()
    assert "Not submitted" in page.locator("#submit-result").inner_text()
    screenshot(page, "app-invalid-input.png")

    page.locator("#field-model_id textarea, #field-model_id input").first.fill("demo/tiny-classifier")
    # batch_size 1 makes the example callback take a few seconds, long enough to watch it run.
    page.locator("#field-params textarea").first.fill('{"epochs": 2000, "batch_size": 1}')
    page.locator("#submit").click()
    page.locator("#submit-result").get_by_text("Submitted task").wait_for(timeout=60_000)
    task_id = re.search(r"Submitted task (\w+)", page.locator("#submit-result").inner_text()).group(1)
    assert not page.locator("#err-model_id").is_visible()

    wait_for_row(page, task_id, "PENDING", 60, "app-1-pending.png")
    wait_for_row(page, task_id, "RUNNING", 180)
    # The progress bar and the log follow the running task.
    deadline = time.monotonic() + 60
    while True:
        label = page.locator("#progress").inner_text()
        percent = int(page.locator("#progress .sched-progress").get_attribute("data-progress") or 0)
        if task_id in label and percent > 0:
            break
        if "DONE" in row_of(page, task_id) or time.monotonic() > deadline:
            pytest.fail(f"no progress shown while {task_id} ran; progress: {label!r}")
        page.wait_for_timeout(200)
    assert "epoch" in page.locator("#log textarea").input_value()
    screenshot(page, "app-2-running.png")
    wait_for_row(page, task_id, "DONE", 180, "app-3-done.png")
    assert "t4-small" in row_of(page, task_id) and "demo" in row_of(page, task_id)
    assert DEMO_TOKEN not in page.content()

    # A task that cannot run fails at once; a long one runs, is cancelled, shows stopping, then stops.
    failing = submit(page, "demo/tiny-classifier", "demo/no-such-dataset", '{"epochs": 1}')
    long = submit(page, "demo/tiny-classifier", "demo/reviews-mini", '{"epochs": 200000, "batch_size": 1}')
    wait_for_row(page, long, "RUNNING", 180)
    deadline = time.monotonic() + 60
    while not re.search(rf"Training {long} on t4-small: \S+, \$[0-9.]+ so far", runtime := runtime_text(page)):
        assert time.monotonic() < deadline, f"the runtime panel never said {long} was training: {runtime!r}"
        page.wait_for_timeout(200)
    screenshot(page, "app-4-training.png")
    page.locator("#selected-task textarea, #selected-task input").first.fill(long)
    clicked = time.monotonic()
    page.locator("#cancel").click()
    page.locator("#action-result").get_by_text("is stopping").wait_for(timeout=10_000)
    wait_for_row(page, long, "CANCELLED", 30, "app-5-cancelled.png")
    assert time.monotonic() - clicked <= 10.0, "a cancel from the page took more than 10 s to stop the run"

    assert "FAILED" in row_of(page, failing)
    page.locator("#selected-task textarea, #selected-task input").first.fill(failing)
    detail = page.locator("#task-detail")
    detail.get_by_text("Failed on attempt 1 of 3").wait_for(timeout=30_000)
    assert "no-such-dataset" in detail.inner_text()
    log = page.locator("#task-log")
    assert "stored with the outcome" in log.inner_text() and log.locator("textarea").input_value().strip()
    screenshot(page, "app-6-failed-detail.png")

    # The page's bill is the emulator's, once the Space is back on free CPU and its periods are closed.
    deadline = time.monotonic() + 120
    while True:
        billed = httpx.get(demo.billing, timeout=10).json()["totals"]["usd"]
        shown = page.locator("#billed-usd").all_inner_texts()
        shown_usd = float(shown[0].lstrip("$").replace(",", "")) if shown else 0.0
        if "Idle on cpu-basic (free)" in runtime_text(page) and billed > 0 and abs(shown_usd - billed) <= 0.01 * billed:
            break
        assert time.monotonic() < deadline, f"the page shows {shown_usd}, the emulator billed {billed}"
        page.wait_for_timeout(1000)
    assert page.locator("#billing-timeline svg rect.period").count() >= 2
    screenshot(page, "app-7-cost.png")


ROWS_WITH = """(text) => [...document.querySelectorAll('#queue-table [role=row]')]
    .map(row => row.innerText).filter(t => t.includes(text)).map(t => t.split(/\\s/)[0])"""


def submit(page, model_id: str, dataset_id: str, params: str) -> str:
    """Submit the form; the new task's id. The Space restarts onto a task's GPU soon after a submit,
    and the page then reloads itself: a form filled or sent in that moment is gone with the old page
    (the task stored or not). Then the table says whether the task was stored, else it is sent again."""
    from playwright.sync_api import Error as PlaywrightError

    def said_id() -> str | None:
        # The box may show a progress overlay over the previous answer meanwhile: only a new id counts.
        found = re.search(r"Submitted task (\w+)", page.locator("#submit-result").inner_text())
        return found.group(1) if found else None

    known = set(page.evaluate(ROWS_WITH, dataset_id))
    for _ in range(3):
        try:
            page.wait_for_selector("#field-model_id", timeout=60_000)
            page.locator("#field-model_id textarea, #field-model_id input").first.fill(model_id)
            page.locator("#field-dataset_id textarea, #field-dataset_id input").first.fill(dataset_id)
            page.locator("#field-params textarea").first.fill(params)
            before = said_id()
            page.locator("#submit").click()
            deadline = time.monotonic() + 20
            while (task_id := said_id()) in (None, before) and time.monotonic() < deadline:
                page.wait_for_timeout(100)
            if task_id not in (None, before):
                return task_id
        except PlaywrightError:  # the page was replaced under the test
            pass
        page.wait_for_timeout(3000)  # the reloaded page reads the queue
        stored = set(page.evaluate(ROWS_WITH, dataset_id)) - known
        if stored:
            return stored.pop()
    pytest.fail(f"the form never answered a submit of {model_id} on {dataset_id}")


def runtime_text(page) -> str:
    from playwright.sync_api import Error as PlaywrightError

    try:
        return page.locator("#runtime").inner_text()
    except PlaywrightError:  # the page is being replaced by a reload
        return ""
