"""Running a recipe the way the worker does: in a `CallbackProcess`, with the Hub endpoint and
token in its environment (transformers and datasets read HF_ENDPOINT at import, so they cannot be
pointed at a per-test emulator from inside the test process)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from scheduler.callbacks import CallbackProcess
from scheduler.tasks import Task
from tests.conftest import TEST_TOKEN
from tests.support import wait_for

RECIPE = "scheduler.recipes.finetune:train"
# Generous: each run imports torch in a fresh process, which a loaded 2-core machine can make slow.
TIMEOUT = 300.0


def _training_stack_missing() -> str | None:
    try:
        import datasets  # noqa: F401
        import peft  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return None


_MISSING = _training_stack_missing()
# In CI the training extra is installed, so a missing import there must fail, not skip.
needs_training = pytest.mark.skipif(
    bool(_MISSING) and not os.environ.get("CI"),
    reason=f"needs the training extra (pip install torch==2.13.0 && pip install -e '.[train]'): {_MISSING}")


def make_task(model_id: str, dataset_id: str, attempts: int = 1, **params) -> Task:
    return Task.new(model_id, dataset_id, "cpu-basic", params=params).replace(attempts=attempts)


def start(hub_url: str, work_dir: Path, task: Task, callback: str = RECIPE) -> CallbackProcess:
    return CallbackProcess(callback, task, work_dir, token=TEST_TOKEN, endpoint=hub_url)


def finish(process: CallbackProcess, timeout: float = TIMEOUT) -> dict:
    if not process.wait(timeout):
        process.kill()
        raise AssertionError(f"the recipe did not finish in {timeout} s; log:\n{log_text(process)}")
    outcome = dataclasses.asdict(process.finish())
    outcome["log"] = log_text(process)
    return outcome


def run(hub_url: str, work_dir: Path, task: Task, callback: str = RECIPE, timeout: float = TIMEOUT) -> dict:
    return finish(start(hub_url, work_dir, task, callback), timeout)


def log_text(process: CallbackProcess) -> str:
    try:
        return process.files.log.read_text(encoding="utf-8")
    except OSError:
        return ""


def stop_once_training(process: CallbackProcess, seen: int = 0) -> dict:
    """Ask the run to stop once its log (past the first `seen` characters) shows progress; its outcome."""
    try:
        wait_for(lambda: "progress" in log_text(process)[seen:] or not process.running(), TIMEOUT, "training to start")
        process.request_stop()
        return finish(process, TIMEOUT)
    finally:
        process.kill()
