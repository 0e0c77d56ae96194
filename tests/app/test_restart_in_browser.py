"""A restart of the Space (every hardware switch is one) seen from an open page, in headless Chromium.

The app is served in this process; stopping it and serving it again on the same port is what the
page sees when the Space restarts. Gradio's page then reloads itself; the page must say what is
happening in plain words (no red "Connection Lost" error) and come back where it was.
"""

from __future__ import annotations

import time

from scheduler.tasks import Task

from .browser import CHROMIUM, CHROMIUM_ARGS, require_chromium, screenshot, visible_toasts

require_chromium()


def _state(page) -> dict:
    from playwright.sync_api import Error as PlaywrightError

    try:
        state = page.evaluate("""() => ({
            note: (document.getElementById('restart-note') || {}).innerText || '',
            selected: (document.querySelector('#selected-task textarea, #selected-task input') || {}).value || '',
            detail: (document.querySelector('#task-detail') || {}).innerText || ''})""")
    except PlaywrightError:  # the page is being replaced by its own reload
        state = {"note": "", "selected": "", "detail": ""}
    return {**state, "toasts": visible_toasts(page)}


def test_a_restart_shows_a_plain_note_instead_of_an_error_and_the_page_comes_back_where_it_was(start_app, tmp_path):
    from playwright.sync_api import sync_playwright

    first = start_app()
    port = int(first.url.rstrip("/").rsplit(":", 1)[1])
    task = first.app.queue.add(Task.new("demo/model", "demo/data", "t4-small"))
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1100})
        try:
            page = context.new_page()
            loads: list[float] = []
            page.on("load", lambda _: loads.append(time.monotonic()))
            page.goto(first.url)
            page.wait_for_selector("#queue-table", timeout=60_000)
            page.locator("#selected-task textarea, #selected-task input").first.fill(task.id)
            page.locator("#task-detail").get_by_text(task.id).wait_for(timeout=30_000)
            page.wait_for_timeout(1500)  # the selection reaches the browser's storage
            loaded = len(loads)

            first.close()  # the Space goes down for its switch
            seen: list[dict] = []
            deadline = time.monotonic() + 30
            while not (state := _state(page))["note"]:
                seen.append(state)
                assert time.monotonic() < deadline, f"no restart note within 30 s: {seen[-3:]}"
                page.wait_for_timeout(200)
            assert "restarting" in state["note"] and "reconnects by itself" in state["note"]
            assert not any("Connection" in t for s in seen + [state] for t in s["toasts"]), seen
            screenshot(page, "app-restarting.png")

            start_app(port=port)  # the new replica answers on the same address
            deadline = time.monotonic() + 60
            while len(loads) == loaded or task.id not in (state := _state(page))["detail"]:
                assert not any("Connection" in t for t in _state(page)["toasts"])
                assert time.monotonic() < deadline, f"the page did not come back by itself: {_state(page)}"
                page.wait_for_timeout(200)
            assert state["selected"] == task.id and not state["note"], state
            screenshot(page, "app-restarted.png")
        finally:
            context.close()
