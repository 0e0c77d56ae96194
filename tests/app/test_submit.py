"""/submit through gradio_client: idempotent with the client's task id, and never queued behind
readers of a slow queue."""

from __future__ import annotations

import threading

import pytest
from gradio_client.exceptions import AppError

from .test_cached_queue import GatedReads
from .test_endpoints import ALICE, BOB, TWO_USERS, submit


def test_a_retried_submit_with_the_same_task_id_makes_one_task(start_app):
    client = start_app().client()
    first = submit(client, task_id="client-key-1")
    again = submit(client, task_id="client-key-1", params='{"epochs": 9}')  # a retry never changes the task
    assert first == {"task_id": "client-key-1", "created": True}
    assert again == {"task_id": "client-key-1", "created": False}
    [task] = client.predict("ALL", api_name="/tasks")
    assert task["id"] == "client-key-1" and task["params"] == {"epochs": 2}
    assert submit(client)["created"] and len(client.predict("ALL", api_name="/tasks")) == 2  # no key: a new task


def test_submits_racing_with_one_task_id_make_one_task(start_app):
    running = start_app()
    answers: list = []

    def send():
        answers.append(submit(running.client(), task_id="raced"))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(a["created"] for a in answers) == [False, False, False, True]
    assert [t["id"] for t in running.client().predict("ALL", api_name="/tasks")] == ["raced"]


def test_a_task_id_is_checked_and_one_taken_by_someone_else_is_refused(start_app):
    running = start_app(TWO_USERS | {"SCHEDULER_ALLOWED_USERS": "alice,bob"})
    alice, bob = running.client(auth=ALICE), running.client(auth=BOB)
    assert submit(alice, task_id="shared-name")["created"]
    with pytest.raises(AppError, match="task id shared-name is already taken"):
        submit(bob, task_id="shared-name")
    with pytest.raises(AppError, match="id: 'no spaces!' must be 1-64 letters"):
        submit(bob, task_id="no spaces!")
    [task] = alice.predict("ALL", api_name="/tasks")
    assert task["submitted_by"] == "alice"


def test_a_submit_is_answered_while_readers_are_stuck_on_a_slow_queue(start_app):
    """The kind of fault of a submit that committed in 2 s and answered after 12 s: its cache
    invalidation waited for every reader of a slow Hub."""
    running = start_app()
    client = running.client()
    gated = GatedReads(running.app.queue)
    running.app.cached.queue = gated
    reads = [client.submit("ALL", api_name="/tasks") for _ in range(6)]
    try:
        assert gated.inside.acquire(timeout=30)  # a read is under way and will not end by itself
        answer = submit(client, task_id="while-reading")
        assert answer["created"] and not any(read.done() for read in reads)
        assert running.app.queue.get("while-reading").submitted_by == running.app.access.local_user
    finally:
        gated.gate.set()
    results = [read.result(timeout=60) for read in reads]
    assert any(r and r[0]["id"] == "while-reading" for r in results)
