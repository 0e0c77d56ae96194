"""What the headless-Chromium tests share: Debian's chromium driven by Python playwright, and the
folder their screenshots go to (test-artifacts/, ignored by git)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import ROOT

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DEMO_TOKEN = "hf_demo_local_emulator_token"
SAVED: list[Path] = []  # screenshots taken in this session, listed at its end (conftest.py)


def screenshot(page, name: str) -> Path:
    """A full-page screenshot saved as test-artifacts/NAME."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    SAVED.append(path)
    return path


def require_chromium() -> None:
    """Skip the calling module without Chromium, except in CI, which installs it and must fail."""
    if not Path(CHROMIUM).exists() and not os.environ.get("CI"):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); CI installs it and fails without it",
                    allow_module_level=True)


def visible_toasts(page) -> list[str]:
    """The texts of Gradio's toasts (info, warning, error) shown on the page now."""
    from playwright.sync_api import Error as PlaywrightError

    try:
        return page.evaluate("""() => [...document.querySelectorAll("[data-testid='toast-body'], .toast-body")]
            .filter(e => e.offsetParent !== null && getComputedStyle(e).display !== 'none').map(e => e.innerText)""")
    except PlaywrightError:  # the page is being replaced by its own reload
        return []

