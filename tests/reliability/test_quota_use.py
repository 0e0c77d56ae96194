"""The Hub's request quotas (hub-facts §11: a free account has 1,000 API requests per 5-minute window):
an idle worker, polling with its default settings, leaves nearly all of them to its owner."""

from __future__ import annotations

import time

from huggingface_hub import HfApi

from scheduler.emulator import start_emulator
from scheduler.emulator.rules import REQUEST_QUOTAS
from scheduler.settings import WorkerSettings, build_worker

from ..conftest import TEST_TOKEN

MEASURE_S = 20.0  # more than one default poll (15 s); scaled to the Hub's 5-minute window below


def _api_used(hub) -> int:
    return hub.hub.quotas.usage()["accounts"].get("demo", {}).get("buckets", {}).get("api", {}).get("used", 0)


def test_an_idle_worker_uses_under_a_tenth_of_a_free_accounts_api_quota_per_five_minutes(tmp_path):
    # One long window, so the measure never straddles a reset.
    with start_emulator(tmp_path / "hub", boot_delay=0.2, fsync=False, rules="request_window_s=3600") as hub:
        api = HfApi(endpoint=hub.url, token=TEST_TOKEN)
        api.create_repo("demo/idle", repo_type="space", space_sdk="gradio")
        worker = build_worker(WorkerSettings(queue="hf://datasets/demo/idle-queue", callback="x.py:f", space="demo/idle",
                                             token=TEST_TOKEN, endpoint=hub.url, work_dir=str(tmp_path / "work")))
        worker.queue.init()
        worker.start_thread()
        try:
            time.sleep(5.0)  # past the start (price list, hardware list, first reads)
            before = _api_used(hub)
            time.sleep(MEASURE_S)
            used = _api_used(hub) - before
        finally:
            worker.stop("test over", wait_s=30)
    per_window = used * 300 / MEASURE_S
    free = REQUEST_QUOTAS["free"]["api"]
    print(f"\nRELIABILITY idle worker: {used} API requests in {MEASURE_S:.0f}s = {per_window:.0f} per 5 min "
          f"({per_window / free:.1%} of a free account's {free})")
    assert per_window <= 0.10 * free
