"""The deployed Space itself: started by the emulator's supervisor from the files deploy uploaded."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from tests.support import free_port, wait_for

from scheduler.cli import main
from scheduler.queue import TaskQueue
from scheduler.tasks import Status, Task

from ..conftest import TEST_TOKEN

SPACE = "demo/scheduler"
QUEUE = "demo/queue"
APP_DIR = Path(__file__).resolve().parents[2] / "space_app"

QUICK_CALLBACK = '''
import os


def train(task, ctx):
    ctx.log(f"quick training of {task.model_id} on {os.environ.get('SPACE_HARDWARE')}")
    return {"hardware": os.environ.get("SPACE_HARDWARE")}
'''


@pytest.mark.skipif(not (APP_DIR / "app.py").exists(), reason="the Space app is not in this checkout")
def test_a_deployed_space_started_by_the_supervisor_runs_a_submitted_task_to_done(emulator, hf_api, tmp_path,
                                                                               monkeypatch):
    app_dir = tmp_path / "space_app"
    shutil.copytree(APP_DIR, app_dir, ignore=shutil.ignore_patterns("__pycache__"))
    (app_dir / "quick.py").write_text(QUICK_CALLBACK)
    monkeypatch.setenv("HF_TOKEN", TEST_TOKEN)
    assert main(["deploy", SPACE, "--queue", QUEUE, "--endpoint", emulator.url, "--app-dir", str(app_dir),
                 "--callback", "quick.py:train"]) == 0
    # Production polls every 15 s; a test waits for nothing longer than it must.
    hf_api.add_space_variable(SPACE, "SCHEDULER_WORKER_ARGS", "--poll 0.5 --lease 30")
    port = free_port()
    # No cwd: the emulator checks out the Space's files and runs its app_file, as the Hub does.
    httpx.post(f"{emulator.url}/_emulator/spaces/{SPACE}/supervise",
               json={"port": port, "env": {"SYSTEM": "emulator"}}, timeout=30).raise_for_status()
    try:
        wait_for(lambda: hf_api.get_space_runtime(SPACE).stage == "RUNNING", 60, "the Space to run")
        queue = TaskQueue.open(f"hf://datasets/{QUEUE}", token=TEST_TOKEN, endpoint=emulator.url, space=SPACE)
        task = queue.add(Task.new("demo/model", "demo/data", "t4-small"))
        assert queue.last_wake.requested  # the submit itself asked for the GPU

        def finished():
            current = queue.get(task.id)
            return current if current.is_terminal else None

        done = wait_for(finished, 120, "the task to finish")
        log = emulator.hub.spaces.log_path(SPACE)
        assert done.status is Status.DONE, (done.error, log.read_text(errors="replace")[-3000:])
        assert done.result == {"hardware": "t4-small"}
        wait_for(lambda: (rt := hf_api.get_space_runtime(SPACE)).hardware == "cpu-basic"
                 and rt.requested_hardware == "cpu-basic", 60, "the Space back on cpu-basic")
        assert TEST_TOKEN not in log.read_text(errors="replace")
    finally:
        emulator.hub.spaces.supervisor.stop(SPACE, 5.0)


@pytest.mark.skipif(not (APP_DIR / "app.py").exists(), reason="the Space app is not in this checkout")
def test_a_submission_from_a_client_that_does_not_know_the_space_wakes_it_through_the_webhook(
        emulator, hf_api, tmp_path, monkeypatch):
    app_dir = tmp_path / "space_app"
    shutil.copytree(APP_DIR, app_dir, ignore=shutil.ignore_patterns("__pycache__"))
    (app_dir / "quick.py").write_text(QUICK_CALLBACK)
    monkeypatch.setenv("HF_TOKEN", TEST_TOKEN)
    port = free_port()
    assert main(["deploy", SPACE, "--queue", QUEUE, "--endpoint", emulator.url, "--app-dir", str(app_dir),
                 "--callback", "quick.py:train", "--webhook-url", f"http://127.0.0.1:{port}/webhooks/queue"]) == 0
    # A poll of 10 minutes: within this test's deadlines only the webhook can make the Space look.
    hf_api.add_space_variable(SPACE, "SCHEDULER_WORKER_ARGS", "--poll 600 --lease 30")
    httpx.post(f"{emulator.url}/_emulator/spaces/{SPACE}/supervise",
               json={"port": port, "env": {"SYSTEM": "emulator"}}, timeout=30).raise_for_status()
    try:
        wait_for(lambda: hf_api.get_space_runtime(SPACE).stage == "RUNNING", 60, "the Space to run")
        wait_for(lambda: _answers(port), 60, "the app to answer")
        queue = TaskQueue.open(f"hf://datasets/{QUEUE}", token=TEST_TOKEN, endpoint=emulator.url)  # no space=
        task = queue.add(Task.new("demo/model", "demo/data", "t4-small"))
        assert queue.last_wake is None

        wait_for(lambda: hf_api.get_space_runtime(SPACE).requested_hardware == "t4-small", 60,
                 "the webhook to wake the worker into requesting the GPU")
        deliveries = httpx.get(f"{emulator.url}/_emulator/webhooks/deliveries").json()
        assert any(d["repo"] == QUEUE and d.get("status") == 200 for d in deliveries), deliveries

        def finished():
            current = queue.get(task.id)
            return current if current.is_terminal else None

        done = wait_for(finished, 120, "the task to finish")
        log = emulator.hub.spaces.log_path(SPACE)
        assert done.status is Status.DONE, (done.error, log.read_text(errors="replace")[-3000:])
        secret = hf_api.list_webhooks()[0].secret
        assert secret not in log.read_text(errors="replace") and TEST_TOKEN not in log.read_text(errors="replace")
    finally:
        emulator.hub.spaces.supervisor.stop(SPACE, 5.0)


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
