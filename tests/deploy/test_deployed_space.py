"""The deployed Space itself: started by the emulator's supervisor from the files deploy uploaded."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from scheduler.cli import main
from scheduler import open_queue
from scheduler.queue import TaskQueue
from scheduler.tasks import Status, Task
from tests.support import free_port, wait_for

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


needs_app = pytest.mark.skipif(not (APP_DIR / "app.py").exists(), reason="the Space app is not in this checkout")


@contextmanager
def deployed_space(emulator, hf_api, tmp_path, monkeypatch, worker_variables: dict[str, str], *deploy_args: str,
                   port: int | None = None):
    """Deploy the real app (plus a quick callback), have the emulator's supervisor start it as the
    Hub would, yield once the Space runs, and stop the app on the way out."""
    app_dir = tmp_path / "space_app"
    shutil.copytree(APP_DIR, app_dir, ignore=shutil.ignore_patterns("__pycache__"))
    (app_dir / "quick.py").write_text(QUICK_CALLBACK)
    monkeypatch.setenv("HF_TOKEN", TEST_TOKEN)
    port = port or free_port()
    assert main(["deploy", SPACE, "--queue", QUEUE, "--endpoint", emulator.url, "--app-dir", str(app_dir),
                 "--callback", "quick.py:train", *deploy_args]) == 0
    for key, value in worker_variables.items():
        hf_api.add_space_variable(SPACE, key, value)
    # No cwd: the emulator checks out the Space's files and runs its app_file, as the Hub does.
    httpx.post(f"{emulator.url}/_emulator/spaces/{SPACE}/supervise",
               json={"port": port, "env": {"SYSTEM": "emulator"}}, timeout=30).raise_for_status()
    try:
        wait_for(lambda: hf_api.get_space_runtime(SPACE).stage == "RUNNING", 60, "the Space to run")
        yield
    finally:
        emulator.hub.spaces.supervisor.stop(SPACE, 5.0)


def wait_done(emulator, queue: TaskQueue, task: Task) -> tuple[Task, str]:
    """The finished task (asserted DONE) and the Space's log."""
    done = wait_for(lambda: (current := queue.get(task.id)).is_terminal and current, 120, "the task to finish")
    log = emulator.hub.spaces.log_path(SPACE).read_text(errors="replace")
    assert done.status is Status.DONE, (done.error, log[-3000:])
    return done, log


@needs_app
def test_a_deployed_space_started_by_the_supervisor_runs_a_submitted_task_to_done(emulator, hf_api, tmp_path,
                                                                               monkeypatch):
    # Production polls every 15 s; a test waits for nothing longer than it must.
    with deployed_space(emulator, hf_api, tmp_path, monkeypatch, {"SCHEDULER_POLL_S": "0.5"}):
        queue = open_queue(f"hf://datasets/{QUEUE}", token=TEST_TOKEN, endpoint=emulator.url, space=SPACE)
        task = queue.add(Task.new("demo/model", "demo/data", "t4-small"))
        assert queue.last_wake.requested  # the submit itself asked for the GPU

        done, _ = wait_done(emulator, queue, task)
        assert done.result == {"hardware": "t4-small"}
        wait_for(lambda: (rt := hf_api.get_space_runtime(SPACE)).hardware == "cpu-basic"
                 and rt.requested_hardware == "cpu-basic", 60, "the Space back on cpu-basic")
        assert TEST_TOKEN not in emulator.hub.spaces.log_path(SPACE).read_text(errors="replace")


@needs_app
def test_a_submission_from_a_client_that_does_not_know_the_space_wakes_it_through_the_webhook(
        emulator, hf_api, tmp_path, monkeypatch):
    port = free_port()
    # A poll of 10 minutes: within this test's deadlines only the webhook can make the Space look.
    with deployed_space(emulator, hf_api, tmp_path, monkeypatch, {"SCHEDULER_POLL_S": "600"},
                        "--webhook-url", f"http://127.0.0.1:{port}/webhooks/queue", port=port):
        wait_for(lambda: _answers(port), 60, "the app to answer")
        # The route is mounted just after the page answers: until then a delivery finds nothing
        # (the app looks at the queue once it is there, but this test is about the webhook).
        wait_for(lambda: _webhook_mounted(port), 60, "the webhook route")
        queue = TaskQueue.open(f"hf://datasets/{QUEUE}", token=TEST_TOKEN, endpoint=emulator.url)  # no space=
        task = queue.add(Task.new("demo/model", "demo/data", "t4-small"))
        assert queue.last_wake is None

        wait_for(lambda: hf_api.get_space_runtime(SPACE).requested_hardware == "t4-small", 60,
                 "the webhook to wake the worker into requesting the GPU")
        deliveries = httpx.get(f"{emulator.url}/_emulator/webhooks/deliveries").json()
        assert any(d["repo"] == QUEUE and d.get("status") == 200 for d in deliveries), deliveries

        _, log = wait_done(emulator, queue, task)
        secret = hf_api.list_webhooks()[0].secret
        assert secret not in log and TEST_TOKEN not in log


def _webhook_mounted(port: int) -> bool:
    try:  # unsigned: refused, but by the route rather than "not found"
        return httpx.post(f"http://127.0.0.1:{port}/webhooks/queue", content=b"{}", timeout=2).status_code != 404
    except httpx.HTTPError:
        return False


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
