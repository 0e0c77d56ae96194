"""Finished tasks open a discussion on the model they produced, or on the Space."""

from __future__ import annotations

from pathlib import Path

from scheduler.hardware import SpaceController
from scheduler.notify import DiscussionNotifier, from_env
from scheduler.queue import TaskQueue
from scheduler.settings import WorkerSettings, build_worker
from scheduler.tasks import Status, Task

from ..conftest import TEST_TOKEN

ROOT = Path(__file__).resolve().parents[2]
CALLBACKS = Path(__file__).with_name("job_callbacks.py")
SPACE = "demo/scheduler"


def open_queue(emulator) -> TaskQueue:
    queue = TaskQueue.open("hf://datasets/demo/queue", token=TEST_TOKEN, endpoint=emulator.url)
    queue.init()
    return queue


def worker(emulator, queue, callback, notifier, tmp_path, executor="jobs"):
    from huggingface_hub import HfApi

    settings = WorkerSettings(queue="-", callback=f"{CALLBACKS}:{callback}", executor=executor, space=SPACE,
                              token=TEST_TOKEN, endpoint=emulator.url, work_dir=str(tmp_path / "work"),
                              poll_s=0.2, jobs_poll_s=0.2, retry_delay_s=0.0)
    controller = SpaceController(SPACE, api=HfApi(endpoint=emulator.url, token=TEST_TOKEN))
    return build_worker(settings, queue=queue, controller=None if executor == "local" else controller,
                        on_finish=notifier)


def test_a_done_task_opens_a_discussion_on_its_output_model_and_a_failed_one_on_the_space(emulator, hf_api,
                                                                                         tmp_path):
    hf_api.create_repo(SPACE, repo_type="space", space_sdk="gradio")
    hf_api.create_repo("demo/finetuned")
    queue = open_queue(emulator)
    done = queue.add(Task.new("demo/model", "demo/data", "t4-small", params={"repo_id": "demo/finetuned"}))
    notifier = DiscussionNotifier(hf_api, space_id=SPACE)
    worker(emulator, queue, "publishes", notifier, tmp_path).run(until_idle=True)
    failed = queue.add(Task.new("demo/model", "demo/data", "t4-small", max_attempts=1))
    worker(emulator, queue, "boom", notifier, tmp_path).run(until_idle=True)

    on_model = hf_api.get_discussion_details("demo/finetuned", 1)
    assert on_model.title == f"Task {done.id} DONE: demo/model on demo/data"
    assert '"accuracy": 0.9' in on_model.events[0].content and "t4-small" in on_model.events[0].content
    on_space = hf_api.get_discussion_details(SPACE, 1, repo_type="space")
    assert on_space.title.startswith(f"Task {failed.id} FAILED")
    assert "exploded inside the Job" in on_space.events[0].content
    assert queue.get(failed.id).status is Status.FAILED


def test_a_notification_that_cannot_be_delivered_leaves_the_task_done(emulator, hf_api, tmp_path):
    queue = open_queue(emulator)
    task = queue.add(Task.new("demo/model", "demo/data", "t4-small", params={"repo_id": "demo/never-created"}))
    local = worker(emulator, queue, "publishes", DiscussionNotifier(hf_api, space_id=SPACE), tmp_path,
                   executor="local")
    local.run(until_idle=True)
    assert queue.get(task.id).status is Status.DONE
    assert "on_finish" in local.status()["last_error"]


def test_notifications_are_off_unless_scheduler_notify_names_a_target(hf_api, monkeypatch):
    monkeypatch.delenv("SCHEDULER_NOTIFY", raising=False)
    assert from_env(hf_api, SPACE) is None
    monkeypatch.setenv("SCHEDULER_NOTIFY", "space")
    assert from_env(hf_api, SPACE).target == "space"
