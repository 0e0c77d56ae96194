"""Waking the Space on submit: directly from `TaskQueue.add`, and through a Hub webhook."""

from __future__ import annotations

import json

import pytest

from scheduler.errors import UserError
from scheduler import open_queue as open_waking_queue
from scheduler.queue import TaskQueue
from scheduler.tasks import Task
from scheduler.wake import WebhookHandler, mount_webhook

from ..conftest import TEST_TOKEN

SPACE = "demo/scheduler"
QUEUE = "hf://datasets/demo/queue"


@pytest.fixture
def space(hf_api, emulator):
    hf_api.create_repo(SPACE, repo_type="space", space_sdk="gradio")
    return SPACE


def open_queue(emulator, **kw) -> TaskQueue:
    queue = open_waking_queue(QUEUE, token=TEST_TOKEN, endpoint=emulator.url, **kw)
    queue.init()
    return queue


def task(hardware: str = "t4-small", **kw) -> Task:
    return Task.new("demo/model", "demo/data", hardware, **kw)


def requests_made(emulator) -> int:
    return emulator.billing(SPACE)["hardware_requests"]


def test_adding_a_task_to_a_queue_that_knows_its_space_requests_the_tasks_flavor_once(emulator, hf_api, space):
    queue = open_queue(emulator, space=space)
    queue.add(task(timeout_s=7200))
    runtime = hf_api.get_space_runtime(space)
    assert runtime.requested_hardware == "t4-small"
    assert runtime.sleep_time == 7200 + 600  # the safety net outlasts the task's own timeout
    queue.add(task())
    queue.add_many([task(), task()])
    assert requests_made(emulator) == 1
    assert "already current or requested" in queue.last_wake.reason


def test_the_space_comes_from_scheduler_space_and_wake_false_adds_without_waking(emulator, hf_api, space, monkeypatch):
    monkeypatch.setenv("SCHEDULER_SPACE", space)
    queue = open_queue(emulator)
    queue.add(task(), wake=False)
    assert requests_made(emulator) == 0
    queue.add(task("a10g-small"))
    assert hf_api.get_space_runtime(space).requested_hardware == "a10g-small"


def test_a_space_busy_on_another_gpu_is_not_restarted_by_a_wake(emulator, hf_api, space):
    hf_api.request_space_hardware(space, "a10g-small", sleep_time=600)
    queue = open_queue(emulator, space=space)
    queue.add(task("t4-small"))
    assert hf_api.get_space_runtime(space).requested_hardware == "a10g-small"
    assert requests_made(emulator) == 1
    assert "busy" in queue.last_wake.reason


def test_cpu_tasks_and_tasks_not_due_yet_wake_nothing(emulator, space):
    from datetime import timedelta

    from scheduler.tasks import utcnow

    queue = open_queue(emulator, space=space)
    queue.add(task("cpu-basic"))
    queue.add(task(not_before=utcnow() + timedelta(hours=1)))
    assert requests_made(emulator) == 0


def test_wake_true_without_a_known_space_is_refused_before_anything_is_added(emulator, monkeypatch):
    monkeypatch.delenv("SCHEDULER_SPACE", raising=False)
    queue = open_queue(emulator)
    with pytest.raises(UserError, match="SCHEDULER_SPACE"):
        queue.add(task(), wake=True)
    assert queue.list() == []


def test_a_wake_that_fails_does_not_fail_the_add(emulator):
    queue = open_queue(emulator, space="demo/no-such-space")
    added = queue.add(task())
    assert queue.get(added.id).id == added.id
    assert isinstance(queue.last_wake, Exception)


def payload(sha: str = "a" * 40, repo: str = "demo/queue", scope: str = "repo.content") -> dict:
    return {"event": {"action": "update", "scope": scope},
            "repo": {"type": "dataset", "name": repo, "id": "x", "private": True, "headSha": sha},
            "updatedRefs": [{"ref": "refs/heads/main", "oldSha": "b" * 40, "newSha": sha}],
            "webhook": {"id": "w", "version": 3}}


def test_a_webhook_without_the_secret_is_refused_and_with_it_wakes_once_per_commit():
    seen: list[str] = []
    handler = WebhookHandler(seen.append, secret="s3cret", queue_repo="demo/queue")
    assert handler({}, json.dumps(payload())).status == 401
    assert handler({"X-Webhook-Secret": "wrong"}, json.dumps(payload())).status == 403
    good = {"X-Webhook-Secret": "s3cret"}
    assert handler(good, json.dumps(payload("c" * 40))).body == {"woken": "c" * 40}
    assert handler(good, json.dumps(payload("c" * 40))).status == 200  # the Hub's retry of the same delivery
    assert handler(good, json.dumps(payload("d" * 40, repo="demo/other"))).body["ignored"]
    assert handler(good, json.dumps(payload("e" * 40, scope="discussion"))).body["ignored"]
    assert handler(good, b"not json").status == 400
    assert seen == ["c" * 40]


def test_a_webhook_mounted_on_an_app_answers_over_http():
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()
    seen: list[str] = []
    mount_webhook(app, seen.append, secret="s3cret")
    client = TestClient(app)
    assert client.post("/webhooks/queue", json=payload()).status_code == 401
    answer = client.post("/webhooks/queue", json=payload("f" * 40), headers={"x-webhook-secret": "s3cret"})
    assert answer.status_code == 200 and seen == ["f" * 40]


def test_an_add_that_cannot_reach_its_space_says_so_and_still_stores_the_task(emulator, hf_api, space, capsys,
                                                                             monkeypatch):
    """A paused Space stays paused until its owner restarts it: the task would wait silently."""
    from scheduler.cli import main

    open_queue(emulator)
    hf_api.pause_space(SPACE)
    monkeypatch.setenv("HF_TOKEN", TEST_TOKEN)
    monkeypatch.setenv("SCHEDULER_SPACE", SPACE)
    code = main(["add", "--queue", QUEUE, "--endpoint", emulator.url,
                 "demo/model", "demo/data", "--hardware", "t4-small"])
    out, err = capsys.readouterr()
    assert code == 0 and "PENDING" in out
    assert f"warning: {SPACE} is PAUSED; this task will wait until its owner restarts it" in err
    assert hf_api.get_space_runtime(SPACE).stage == "PAUSED"
    assert requests_made(emulator) == 0
