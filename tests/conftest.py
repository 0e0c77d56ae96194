"""Shared test setup: an offline Hub for every test.

Fixtures:
- `emulator`: a fresh Hub emulator (`scheduler.emulator.EmulatorHandle`) on a free loopback port,
  serving a temporary data dir, with a 0.2 s Space boot delay and every rule of the real Hub on
  (commit and request quotas, plan gates, sleep, restarts, replica overlap, per-minute billing).
  `.url`, `.hub` (state), `.set_faults(...)`, `.set_rules(...)`, `.advance_clock(s)`,
  `.set_user(name, ...)`, `.billing(space_id)`, `.stats`, `.stop()`. Function-scoped: it starts in
  ~0.1 s. A test that needs a rule off says so with a one-line reason:
  `emulator.set_rules(commit_quota=False)  # 400 commits: the quota is tested in tests/emulator`.
- `hf_api`: a real `huggingface_hub.HfApi` pointed at `emulator.url` with a test token (user `demo`:
  PRO, a payment method, Jobs credits).
- `free_api`: the same for `hobbyist`, a free account with no payment method and no credits.

The environment is set at import time, before anything imports huggingface_hub, so no test
talks to the internet, sends telemetry or takes the Xet path, and the cache lives in a temp dir.
"""

from __future__ import annotations

import os
import tempfile

os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="hf-home-")
os.environ.pop("HF_HUB_OFFLINE", None)
os.environ.pop("HF_TOKEN", None)

import pytest  # noqa: E402

TEST_TOKEN = "hf_testtoken0123456789"
TEST_BOOT_DELAY = 0.2


@pytest.fixture
def emulator(tmp_path):
    from scheduler.emulator import start_emulator

    handle = start_emulator(tmp_path / "hub", boot_delay=TEST_BOOT_DELAY, stop_grace=2.0, fsync=False)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def hf_api(emulator):
    from huggingface_hub import HfApi

    return HfApi(endpoint=emulator.url, token=TEST_TOKEN)


@pytest.fixture
def free_api(emulator):
    from huggingface_hub import HfApi

    from scheduler.emulator.accounts import FREE_TOKEN

    return HfApi(endpoint=emulator.url, token=FREE_TOKEN)
