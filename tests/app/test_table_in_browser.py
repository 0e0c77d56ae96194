"""The queue table, the task detail and the submit form in headless Chromium, on the app served in
this process with a queue of tasks in every state.

Screenshots at 1280, 1400 and 1920 px go to test-artifacts/ (listed at the end of the run); the
pages are checked in the DOM: every header on one line, the table as wide as its box (no sideways
scroll), status as coloured labels, the error shortened in the table and whole in the detail.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from scheduler.dashboard import TABLE_HEADERS
from scheduler.queue import TaskQueue
from scheduler.tasks import Status, Task, utcnow

from .browser import CHROMIUM, CHROMIUM_ARGS, require_chromium, screenshot

require_chromium()

LONG_ERROR = ("attempt 3: RepositoryNotFoundError: 404 Client Error: dataset stanfordnlp/imbd not found. "
              "Check the dataset id and that the token can read it. " + "Request id: Root=1-6742ab " * 4)


def seeded(tmp_path) -> dict[str, Task]:
    now = utcnow().replace(microsecond=0)
    ago = lambda s: now - timedelta(seconds=s)  # noqa: E731
    base = dict(params={"epochs": 3, "learning_rate": 5e-5}, submitted_by="alice")
    tasks = {
        "failed": Task.new("openai-community/gpt2-medium", "stanfordnlp/imbd", "a10g-largex4", now=ago(900), **base)
        .replace(status=Status.FAILED, attempts=3, started_at=ago(700), finished_at=ago(600), gpu_seconds=100.0,
                 cost_usd=0.1411, worker="demo-space-1", error=LONG_ERROR,
                 log="downloading stanfordnlp/imbd\nRepositoryNotFoundError: 404"),
        "done": Task.new("demo/tiny-bert-sentiment", "demo/tiny-sentiment", "t4-small", now=ago(800), **base)
        .replace(status=Status.DONE, attempts=1, started_at=ago(500), finished_at=ago(308), gpu_seconds=192.0,
                 cost_usd=0.0213, worker="demo-space-1", result={"eval_loss": 0.31, "repo_id": "demo/tiny-ft"},
                 log="epoch 1 loss 0.52\nepoch 2 loss 0.31\npushed to demo/tiny-ft"),
        "running": Task.new("meta-llama/Llama-3.2-1B-Instruct", "HuggingFaceH4/ultrachat_200k", "l40sx1",
                            now=ago(300), **base)
        .replace(status=Status.RUNNING, attempts=2, started_at=ago(90), worker="demo-space-2",
                 lease_until=now + timedelta(minutes=10), error="attempt 1: CUDA out of memory"),
        "pending": Task.new("demo/tiny-gpt2", "demo/tiny-sentiment", "t4-small", now=ago(200), **base),
        "cancelled": Task.new("demo/tiny-gpt2", "demo/reviews-mini", "cpu-upgrade", now=ago(100), **base)
        .replace(status=Status.CANCELLED, finished_at=ago(50), error="wrong dataset"),
    }
    TaskQueue.open(str(tmp_path / "queue")).add_many(tasks.values())
    return tasks


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def open_page(browser, url: str, width: int, tasks: dict[str, Task]):
    page = browser.new_page(viewport={"width": width, "height": 1000})
    page.goto(url)
    for task in tasks.values():
        page.locator("#queue-table [role=row]", has_text=task.id).first.wait_for(timeout=60_000)
    page.wait_for_timeout(300)  # column widths settle after the rows arrive
    return page


HEADER_LAYOUT = """() => {
    const wrap = document.querySelector('#queue-table .table-wrap') || document.querySelector('#queue-table');
    const table = document.querySelector('#queue-table table');
    const headers = [...document.querySelectorAll('#queue-table thead th')].map(th => {
        const range = document.createRange();
        range.selectNodeContents(th.querySelector('.header') || th);
        const tops = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
        return {text: th.innerText.replace('⋮', '').trim(), lines: tops.size};
    });
    const labels = {};
    for (const el of document.querySelectorAll('#queue-table .status-label')) {
        const text = el.innerText.trim();  // empty in the hidden row Gradio measures widths with
        if (text) labels[text] = getComputedStyle(el).backgroundColor;
    }
    return {headers, labels, tableWidth: table.getBoundingClientRect().width,
            boxWidth: wrap.getBoundingClientRect().width, scroll: wrap.scrollWidth - wrap.clientWidth};
}"""


@pytest.mark.parametrize("width", [1280, 1400, 1920])
def test_the_queue_table_fits_with_headers_on_one_line_and_statuses_as_coloured_labels(start_app, tmp_path,
                                                                                      browser, width):
    tasks = seeded(tmp_path)
    running = start_app()
    page = open_page(browser, running.url, width, tasks)
    screenshot(page, f"queue-table-{width}.png")
    layout = page.evaluate(HEADER_LAYOUT)
    assert [h["text"] for h in layout["headers"]] == TABLE_HEADERS
    broken = [h for h in layout["headers"] if h["lines"] != 1]
    assert not broken, f"headers broken over lines at {width}px: {broken}"
    assert layout["scroll"] <= 1 and layout["tableWidth"] <= layout["boxWidth"] + 1, layout
    assert set(layout["labels"]) == {s.value for s in Status}
    assert len(set(layout["labels"].values())) == len(Status), layout["labels"]  # one colour each
    failed_row = page.locator("#queue-table [role=row]", has_text=tasks["failed"].id).first.inner_text()
    assert "RepositoryNotFoundError: 404 Client Error" in failed_row and "attempt 3:" not in failed_row
    assert "Request id" not in failed_row  # shortened: the rest is in the detail
    assert "3/3" in failed_row and "0.1411" in failed_row


def test_selecting_a_task_shows_its_reason_history_cost_and_log(start_app, tmp_path, browser):
    tasks = seeded(tmp_path)
    running = start_app()
    page = open_page(browser, running.url, 1280, tasks)

    def select(task: Task) -> None:
        page.locator("#queue-table [role=row]", has_text=task.id).first.get_by_text(task.model_id).click()
        page.locator(f'#task-detail [data-task="{task.id}"]').wait_for(timeout=30_000)

    select(tasks["failed"])
    detail = page.locator("#task-detail").inner_text()
    assert "Failed on attempt 3 of 3: RepositoryNotFoundError: 404 Client Error: dataset stanfordnlp/imbd" in detail
    assert "Request id: Root=1-6742ab" in detail  # the whole error here
    for text in ("openai-community/gpt2-medium", "a10g-largex4", "by alice", "3 of 3", "demo-space-1",
                 "$0.1411 for 1m40s of a10g-largex4", '"learning_rate": 5e-05'):
        assert text in detail, text
    log = page.locator("#task-log textarea")
    assert "RepositoryNotFoundError: 404" in log.input_value()
    screenshot(page, "task-detail-failed.png")

    select(tasks["done"])
    assert "Done in 3m12s on t4-small." in page.locator("#task-detail").inner_text()
    assert '"repo_id": "demo/tiny-ft"' in page.locator("#task-detail").inner_text()
    page.wait_for_function("() => document.querySelector('#task-log textarea').value.includes('epoch 2 loss 0.31')")
    assert "stored with the outcome" in page.locator("#task-log").inner_text()
    screenshot(page, "task-detail-done.png")

    select(tasks["running"])
    assert "The previous attempt failed: CUDA out of memory." in page.locator("#task-detail").inner_text()


def test_the_form_sent_again_with_its_key_makes_no_second_task(start_app, browser, tmp_path):
    running = start_app()
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(running.url)
    key = page.locator("#submit-key textarea, #submit-key input").first
    page.wait_for_function("() => (document.querySelector('#submit-key textarea, #submit-key input') || {}).value")
    first_key = key.input_value()
    page.locator("#field-model_id textarea, #field-model_id input").first.fill("demo/tiny-classifier")
    page.locator("#field-dataset_id textarea, #field-dataset_id input").first.fill("demo/reviews-mini")
    page.locator("#submit").click()
    page.locator("#submit-result").get_by_text("Submitted task").wait_for(timeout=60_000)
    task_id = re.search(r"Submitted task (\w+)", page.locator("#submit-result").inner_text()).group(1)
    assert task_id == first_key
    page.locator("#queue-table [role=row]", has_text=task_id).get_by_text("PENDING").wait_for(timeout=30_000)
    page.wait_for_function(f"() => document.querySelector('#submit-key textarea, #submit-key input').value "
                           f"!= '{first_key}'")  # a new key for the next form
    # The browser sends the same form again (its answer was lost while the Space restarted).
    key.evaluate("(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }", first_key)
    page.locator("#submit").click()
    page.locator("#submit-result").get_by_text("Already submitted as task").wait_for(timeout=60_000)
    assert [t.id for t in running.app.queue.list()] == [task_id]
