"""Every named endpoint of the Space app, through gradio_client over HTTP."""

from __future__ import annotations

import httpx
import pytest
from gradio_client.exceptions import AppError

from .conftest import wait_for

ALICE = ("alice", "alice-pw")
BOB = ("bob", "bob-pw")
TWO_USERS = {"SCHEDULER_AUTH": "alice:alice-pw,bob:bob-pw", "SCHEDULER_ALLOWED_USERS": "alice"}


def submit(client, model="demo/tiny", dataset="demo/reviews", **fields):
    """/submit with the form's defaults; `task_id=` sends the client's key too."""
    values = {"hardware": "t4-small", "params": '{"epochs": 2}', "priority": 0, "max_attempts": 3,
              "timeout_s": 600, **fields}
    key = [values["task_id"]] if "task_id" in values else []
    return client.predict(model, dataset, values["hardware"], values["params"], values["priority"],
                          values["max_attempts"], values["timeout_s"], *key, api_name="/submit")


def test_the_app_names_exactly_the_five_endpoints_clients_use(start_app):
    client = start_app().client()
    named = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert named == {"/submit", "/tasks", "/cancel", "/requeue", "/status"}


def test_an_allowed_user_submits_lists_cancels_and_requeues_a_task(start_app):
    client = start_app(TWO_USERS).client(auth=ALICE)
    task_id = submit(client, params='{"epochs": 4}', priority=5)["task_id"]
    [task] = client.predict("PENDING", api_name="/tasks")
    assert task["id"] == task_id and task["submitted_by"] == "alice"
    assert task["params"] == {"epochs": 4} and task["priority"] == 5 and task["hardware"] == "t4-small"

    cancelled = client.predict(task_id, "wrong dataset", api_name="/cancel")
    assert cancelled["status"] == "CANCELLED" and cancelled["error"] == "wrong dataset"
    assert client.predict("PENDING", api_name="/tasks") == []
    assert client.predict("CANCELLED", api_name="/tasks")[0]["id"] == task_id

    requeued = client.predict(task_id, api_name="/requeue")
    assert requeued["status"] == "PENDING" and requeued["attempts"] == 0
    assert [t["id"] for t in client.predict("ALL", api_name="/tasks")] == [task_id]


@pytest.mark.parametrize("field, fields, expected", [
    ("model_id", {"model": "no-slash"}, "model_id: 'no-slash' must be OWNER/NAME"),
    ("dataset_id", {"dataset": ""}, "dataset_id: is required"),
    ("hardware", {"hardware": "gpu-9000"}, "hardware: 'gpu-9000' is not a Space hardware flavor"),
    ("params", {"params": "{epochs: 3}"}, "params: is not valid JSON"),
    ("params", {"params": "[1, 2]"}, "params: must be a JSON object"),
    ("priority", {"priority": 5000}, "priority: must be between -1000 and 1000"),
    ("max_attempts", {"max_attempts": 0}, "max_attempts: must be between 1 and 20"),
    ("timeout_s", {"timeout_s": -1}, "timeout_s: must be between"),
])
def test_invalid_input_is_refused_with_a_message_naming_the_field(start_app, field, fields, expected):
    client = start_app().client()  # open on localhost: the local user may submit
    with pytest.raises(AppError) as refused:
        submit(client, **fields)
    assert expected in str(refused.value)
    assert client.predict("ALL", api_name="/tasks") == []


def test_a_user_off_the_allow_list_can_neither_submit_nor_cancel_nor_requeue_nor_read(start_app):
    running = start_app(TWO_USERS)
    task_id = submit(running.client(auth=ALICE))["task_id"]
    bob = running.client(auth=BOB)
    with pytest.raises(AppError, match="bob is not allowed to submit tasks"):
        submit(bob)
    with pytest.raises(AppError, match="bob is not allowed to cancel tasks"):
        bob.predict(task_id, "", api_name="/cancel")
    with pytest.raises(AppError, match="bob is not allowed to requeue tasks"):
        bob.predict(task_id, api_name="/requeue")
    with pytest.raises(AppError, match="bob is not allowed to see the queue"):
        bob.predict("ALL", api_name="/tasks")
    [task] = running.client(auth=ALICE).predict("ALL", api_name="/tasks")
    assert task["status"] == "PENDING" and task["submitted_by"] == "alice"


def test_with_a_public_queue_a_user_off_the_list_reads_it_but_still_cannot_submit(start_app):
    running = start_app({**TWO_USERS, "SCHEDULER_PUBLIC_QUEUE": "1"})
    task_id = submit(running.client(auth=ALICE))["task_id"]
    bob = running.client(auth=BOB)
    assert [t["id"] for t in bob.predict("ALL", api_name="/tasks")] == [task_id]
    assert bob.predict(api_name="/status")["worker_state"] == "off"
    with pytest.raises(AppError, match="not allowed to submit"):
        submit(bob)
    with pytest.raises(AppError, match="not allowed to cancel"):
        bob.predict(task_id, "", api_name="/cancel")


def test_an_unauthenticated_client_is_refused_when_auth_is_set(start_app):
    running = start_app(TWO_USERS)
    with pytest.raises(Exception):
        running.client()  # the app's config itself needs a login
    call = httpx.post(f"{running.url}gradio_api/call/submit",
                      json={"data": ["demo/a", "demo/b", "t4-small", "{}", 0, 3, 60]})
    assert call.status_code == 401
    assert running.client(auth=ALICE).predict("ALL", api_name="/tasks") == []
    with pytest.raises(Exception):
        running.client(auth=("alice", "wrong"))


def test_cancel_and_requeue_explain_what_cannot_be_done(start_app):
    client = start_app().client()
    with pytest.raises(AppError, match="no task with id 'NOPE'"):
        client.predict("NOPE", "", api_name="/cancel")
    task_id = submit(client)["task_id"]
    with pytest.raises(AppError, match="Select a task"):
        client.predict("", api_name="/requeue")
    assert client.predict(task_id, api_name="/requeue")["status"] == "PENDING"  # already pending: unchanged


def test_the_worker_thread_runs_a_submitted_task_and_status_shows_its_decisions(start_app):
    client = start_app(worker=True).client()
    task_id = submit(client, params='{"steps": 3, "sleep": 0.05}')["task_id"]

    def done():
        [task] = client.predict("ALL", api_name="/tasks")
        return task if task["status"] == "DONE" else None

    task = wait_for(done, 30, "the task to be DONE", every=0.2)
    assert task["id"] == task_id and task["result"]["steps"] == 3 and task["gpu_seconds"] > 0
    status = client.predict(api_name="/status")
    assert status["hardware"] == "local" and status["done"] == 1
    assert status["action"] in ("Serve", "RunTask") and status["reason"]
