"""Access rules and what the dashboard shows, as plain functions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from scheduler.access import Access
from scheduler.dashboard import (cost_summary, filter_tasks, gpu_hours_per_day, hardware_choices, new_task,
                                 runtime_summary, table_rows)
from scheduler.errors import UserError, ValidationError
from scheduler.tasks import Status, Task

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def test_on_a_space_only_the_owner_may_submit_by_default_and_anonymous_visitors_are_nobody():
    access = Access.from_env({"SPACE_ID": "alice/scheduler"})
    assert access.allowed == {"alice"}
    assert access.identify(oauth_username=None, auth_username="alice", client_host="127.0.0.1") is None
    assert access.identify(oauth_username="alice", auth_username=None, client_host="10.0.0.1") == "alice"
    assert access.can_change("alice") and not access.can_change("mallory") and not access.can_change(None)
    assert not access.can_read("mallory") and "sign in with Hugging Face" in access.refusal(None, "submit")


def test_the_allow_list_and_public_queue_come_from_the_environment():
    access = Access.from_env({"SPACE_ID": "alice/s", "SCHEDULER_ALLOWED_USERS": "bob, carol",
                              "SCHEDULER_PUBLIC_QUEUE": "true"})
    assert access.allowed == {"bob", "carol"} and access.public_queue
    assert access.can_read(None) and not access.can_change(None) and not access.can_change("alice")


def test_locally_without_auth_only_loopback_visitors_are_the_local_user():
    access = Access.from_env({})
    assert access.open_locally
    assert access.identify(oauth_username=None, auth_username=None, client_host="127.0.0.1") == access.local_user
    assert access.identify(oauth_username=None, auth_username=None, client_host="192.168.1.7") is None


def test_auth_pairs_are_parsed_and_their_passwords_never_shown():
    access = Access.from_env({}, auth="ann:p:w,ben:x")
    assert access.auth == (("ann", "p:w"), ("ben", "x")) and access.allowed == {"ann", "ben"}
    assert "p:w" not in repr(access)
    with pytest.raises(UserError):
        Access.from_env({}, auth="nopassword")


def test_a_submission_is_validated_field_by_field_and_submitted_by_is_the_login():
    task = new_task(model_id="a/b", dataset_id="c/d", hardware="a10g-small", params='{"epochs": 2}',
                    priority=3.0, max_attempts=2.0, timeout_s=60.0, submitted_by="alice")
    assert (task.hardware, task.params, task.priority, task.submitted_by) == ("a10g-small", {"epochs": 2}, 3, "alice")
    with pytest.raises(ValidationError) as bad:
        new_task(model_id="a/b", dataset_id="c/d", hardware="t4-small", params="{}", priority=None,
                 max_attempts=3, timeout_s=60, submitted_by="alice")
    assert bad.value.field == "priority"


def test_the_hardware_dropdown_shows_hourly_prices_and_omits_the_idle_flavor():
    choices = dict((value, label) for label, value in hardware_choices({"t4-small": 0.4, "a10g-small": 1.0}))
    assert choices["t4-small"] == "t4-small ($0.40/h)" and "cpu-basic" not in choices


def _done(i: int, day: int, seconds: float, hardware="t4-small") -> Task:
    task = Task.new("a/b", "c/d", hardware, id=f"T{i}", now=T0 + timedelta(days=day))
    return task.replace(status=Status.DONE, started_at=T0 + timedelta(days=day),
                        finished_at=T0 + timedelta(days=day, seconds=seconds), gpu_seconds=seconds,
                        cost_usd=seconds / 3600 * 0.4)


def test_costs_total_per_task_and_gpu_hours_are_grouped_by_day():
    tasks = [_done(1, 0, 1800), _done(2, 0, 1800), _done(3, 1, 3600), Task.new("a/b", "c/d", id="T4", now=T0)]
    costs = cost_summary(tasks)
    assert costs["gpu_seconds"] == 7200 and costs["cost_usd"] == pytest.approx(0.8) and len(costs["tasks"]) == 3
    frame = gpu_hours_per_day(tasks)
    assert frame.to_dict("records") == [{"day": "2026-11-27", "hardware": "t4-small", "gpu_hours": 1.0},
                                        {"day": "2026-11-28", "hardware": "t4-small", "gpu_hours": 1.0}]
    rows = table_rows(filter_tasks(tasks, "DONE"), now=T0)
    assert [r[0] for r in rows] == ["T3", "T2", "T1"] and rows[0][8] == "1h00m"


def test_the_runtime_summary_counts_time_on_paid_hardware_only():
    status = {"runtime": {"stage": "RUNNING", "hardware": "t4-small", "requested_hardware": "t4-small"},
              "state": "running", "action": "RunTask", "reason": "t4-small is up", "task": None}
    assert runtime_summary(status, started=100.0, now=160.0)["gpu_seconds_so_far"] == 60.0
    status["runtime"]["hardware"] = "cpu-basic"
    assert runtime_summary(status, started=100.0, now=160.0)["gpu_seconds_so_far"] == 0.0
    assert runtime_summary(None, started=0)["worker_state"] == "off"
