"""One emulator per module, seeded once with the tiny demo repos (seeding costs seconds; the
recipes' own repos are named after their task ids, so tests sharing it do not collide)."""

from __future__ import annotations

import pytest

from tests.conftest import TEST_TOKEN


@pytest.fixture(scope="module")
def seeded_hub(tmp_path_factory):
    from huggingface_hub import HfApi

    from scheduler.emulator import start_emulator
    from scheduler.recipes.tiny import seed_demo_repos

    handle = start_emulator(tmp_path_factory.mktemp("hub"), fsync=False)
    try:
        api = HfApi(endpoint=handle.url, token=TEST_TOKEN)
        repos = seed_demo_repos(api, api.whoami()["name"])
        yield handle, api, repos
    finally:
        handle.stop()


@pytest.fixture(autouse=True)
def one_torch_thread(monkeypatch):
    # CI has 2 cores shared with other test processes: torch's thread pool spinning on contended
    # cores made each step of these tiny models ~50x slower than one thread.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
