"""Access rules and what the dashboard shows, as plain functions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from scheduler.access import Access, SignIn
from scheduler import billing
from scheduler.dashboard import (TABLE_HEADERS, TABLE_WIDTHS, bill_html, billing_timeline_html, cost_summary,
                                 filter_tasks, gpu_hours_per_day, hardware_choices, new_task, runtime_lines,
                                 runtime_summary, status_sentence, table_rows, task_detail_html, task_log)
from scheduler.errors import UserError, ValidationError
from scheduler.flavors import Catalog, Flavor
from scheduler.tasks import Status, Task

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
# What the Hub gives a Space whose card says `hf_oauth: true`.
SPACE_WITH_OAUTH = {"SYSTEM": "spaces", "SPACE_ID": "alice/scheduler", "OAUTH_CLIENT_ID": "id",
                    "OAUTH_CLIENT_SECRET": "secret", "OAUTH_SCOPES": "openid profile",
                    "OPENID_PROVIDER_URL": "https://huggingface.co"}


def test_on_a_space_with_oauth_only_the_owner_may_submit_by_default_and_anonymous_visitors_are_nobody():
    access = Access.from_env(SPACE_WITH_OAUTH)
    assert access.sign_in is SignIn.SPACE_OAUTH and access.allowed == {"alice"}
    assert access.identify(oauth_username=None, auth_username="alice", client_host="127.0.0.1") is None
    assert access.identify(oauth_username="alice", auth_username=None, client_host="10.0.0.1") == "alice"
    assert access.can_change("alice") and not access.can_change("mallory") and not access.can_change(None)
    assert not access.can_read("mallory") and "sign in with Hugging Face" in access.refusal(None, "submit")


@pytest.mark.parametrize("env", [
    {"SPACE_ID": "alice/scheduler"},  # off a Space: Gradio mocks the login with the token's owner
    {**SPACE_WITH_OAUTH, "OAUTH_CLIENT_SECRET": ""},  # a Space without hf_oauth: no OAuth at all
    {"SYSTEM": "spaces", "SPACE_ID": "alice/scheduler", "SCHEDULER_MOCK_LOGIN": "1"},  # no mock on a Space
])
def test_without_the_spaces_oauth_a_hugging_face_profile_is_never_trusted_and_the_app_is_read_only(env):
    access = Access.from_env(env)
    assert access.sign_in is SignIn.CLOSED and not access.hugging_face_login
    for host in ("127.0.0.1", "10.0.0.1"):
        assert access.identify(oauth_username="alice", auth_username=None, client_host=host) is None
    refusal = access.refusal(None, "submit tasks")
    assert refusal.startswith("You must sign in to submit tasks") and "--auth" in refusal
    access.check_host("0.0.0.0")  # nothing is open to anyone, so any address may serve it
    with_password = Access.from_env(env, auth="ann:pw")
    assert with_password.sign_in is SignIn.PASSWORD and with_password.allowed == {"ann"}


def test_gradios_mocked_login_is_trusted_only_when_asked_for_and_only_on_loopback():
    access = Access.from_env({"SPACE_ID": "demo/scheduler", "SCHEDULER_MOCK_LOGIN": "1"})
    assert access.sign_in is SignIn.MOCK_LOGIN and access.hugging_face_login and access.allowed == {"demo"}
    assert access.identify(oauth_username="demo", auth_username=None, client_host="127.0.0.1") == "demo"
    assert access.identify(oauth_username="demo", auth_username=None, client_host="::1") == "demo"
    assert access.identify(oauth_username="demo", auth_username=None, client_host="192.168.1.7") is None
    access.check_host("127.0.0.1")
    with pytest.raises(UserError, match="refusing to serve Gradio's mocked Hugging Face login on 0.0.0.0"):
        access.check_host("0.0.0.0")


def test_the_allow_list_and_public_queue_come_from_the_environment():
    access = Access.from_env({**SPACE_WITH_OAUTH, "SCHEDULER_ALLOWED_USERS": "bob, carol",
                              "SCHEDULER_PUBLIC_QUEUE": "true"})
    assert access.allowed == {"bob", "carol"} and access.public_queue
    assert access.can_read(None) and not access.can_change(None) and not access.can_change("alice")


def test_locally_without_auth_only_loopback_visitors_are_the_local_user_and_only_on_a_loopback_address():
    access = Access.from_env({})
    assert access.sign_in is SignIn.LOCAL and access.allowed == {access.local_user}
    assert access.identify(oauth_username=None, auth_username=None, client_host="127.0.0.1") == access.local_user
    assert access.identify(oauth_username=None, auth_username=None, client_host="192.168.1.7") is None
    access.check_host(None)  # Gradio's default, 127.0.0.1
    access.check_host("localhost")
    with pytest.raises(UserError, match="refusing to serve an open form on 0.0.0.0.*--auth user:password"):
        access.check_host("0.0.0.0")
    Access.from_env({}, auth="ann:pw").check_host("0.0.0.0")  # behind a password it may


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


def test_the_hardware_dropdown_offers_the_hubs_flavors_cheapest_first_with_prices_never_idle_or_zerogpu():
    offered = Catalog("spaces", {"cpu-basic": Flavor("cpu-basic", 0.0), "t4-small": Flavor("t4-small", 0.4, "T4", 1),
                                 "a10g-small": Flavor("a10g-small", 1.0, "A10G", 1),
                                 "zero-a10g": Flavor("zero-a10g", 0.0, "A10G", 1)}, "hub")
    choices = hardware_choices(offered)
    assert choices == [("t4-small ($0.40/h)", "t4-small"), ("a10g-small ($1.00/h)", "a10g-small")]


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
    rows = [dict(zip(TABLE_HEADERS, row)) for row in table_rows(filter_tasks(tasks, "DONE"), now=T0)]
    assert [r["id"] for r in rows] == ["T3", "T2", "T1"]
    assert (rows[0]["duration"], rows[0]["cost (USD)"], rows[0]["attempts"]) == ("1h00m", "0.4000", "0/3")


def test_the_runtime_summary_counts_time_on_paid_hardware_only():
    status = {"runtime": {"stage": "RUNNING", "hardware": "t4-small", "requested_hardware": "t4-small"},
              "state": "running", "action": "RunTask", "reason": "t4-small is up", "task": None}
    assert runtime_summary(status, started=100.0, now=160.0)["gpu_seconds_so_far"] == 60.0
    status["runtime"]["hardware"] = "cpu-basic"
    assert runtime_summary(status, started=100.0, now=160.0)["gpu_seconds_so_far"] == 0.0
    assert runtime_summary(None, started=0)["worker_state"] == "off"


PRICES = {"cpu-basic": 0.0, "t4-small": 0.4}


def _words(status: dict) -> list[str]:
    return runtime_lines(runtime_summary(status, started=0.0, now=0.0), PRICES)


def _on(hardware: str, requested: str | None = None) -> dict:
    return {"stage": "RUNNING", "hardware": hardware, "requested_hardware": requested or hardware}


def test_the_runtime_panel_says_what_happens_in_plain_words_with_the_cost_so_far():
    assert _words({"state": "serving", "executor": "space", "runtime": _on("cpu-basic")}) == ["Idle on cpu-basic (free)."]
    switching = _words({"state": "switching", "target": "t4-small", "executor": "space", "runtime": _on("cpu-basic")})
    assert switching == ["Switching to t4-small: the Space restarts, usually 1-3 min; this page reconnects by itself."]
    giving_back = _words({"state": "serving", "executor": "space", "runtime": _on("t4-small", "cpu-basic")})
    assert giving_back[0].startswith("Giving back t4-small: switching to cpu-basic (free)")
    training = _words({"state": "running", "executor": "space", "runtime": _on("t4-small"),
                       "runs": [{"task": "T1", "flavor": "t4-small", "seconds": 180.0, "stopping": None}]})
    assert training == ["Training T1 on t4-small: 3m00s, $0.0200 so far."]  # 3 min at $0.40/h
    stopping = _words({"state": "running", "executor": "space", "runtime": _on("t4-small"),
                       "runs": [{"task": "T1", "flavor": "t4-small", "seconds": 9.0, "stopping": "cancelled"}]})
    assert stopping[0].startswith("Stopping T1 on t4-small (cancelled)")
    quota = _words({"state": "serving", "executor": "space", "runtime": _on("cpu-basic"),
                    "waiting": {"what": "the commit quota of hf://datasets/a/q (429)", "until": "2026-11-30T14:05:00Z"}})
    assert quota[0].startswith("Waiting for the commit quota until 14:05 UTC")
    assert _words(None) == ["No worker runs in this app: tasks wait for a worker started elsewhere."]
    local = _words({"state": "running", "executor": "local", "runtime": _on("local"),
                    "runs": [{"task": "T2", "flavor": "local", "seconds": 61.0, "stopping": None}]})
    assert local == ["Training T2 on this machine: 1m01s."]
    every = " ".join(switching + training + quota + giving_back)
    for jargon in ("APP_STARTING", "RUNNING", "RunTask", "Serve", "RequestHardware", "Downgrade"):
        assert jargon not in every


def test_a_cancelled_task_whose_run_has_not_stopped_yet_shows_stopping_then_cancelled():
    running = Task.new("a/b", "c/d", id="C1", now=T0).replace(status=Status.RUNNING, attempts=1, lease_id="L1",
                                                            lease_until=T0 + timedelta(hours=1), started_at=T0)
    stopping = running.replace(status=Status.CANCELLED, finished_at=T0, error="cancelled by alice")
    [row] = [dict(zip(TABLE_HEADERS, r)) for r in table_rows([stopping], now=T0 + timedelta(seconds=5))]
    assert "stopping…" in row["status"]
    assert status_sentence(stopping, now=T0 + timedelta(seconds=5)).startswith("Stopping (cancelled by alice)")
    stopped = stopping.replace(lease_id="", lease_until=None)  # the worker recorded the stop
    [row] = [dict(zip(TABLE_HEADERS, r)) for r in table_rows([stopped], now=T0 + timedelta(seconds=5))]
    assert "CANCELLED" in row["status"] and status_sentence(stopped) == "Cancelled: cancelled by alice"


def test_the_bill_is_the_paid_periods_per_started_minute_split_into_task_shares_and_overhead():
    # A boot, a 3 min task and a wait: 5 min 30 s on t4-small, billed as 6 started minutes.
    period = billing.Period("home#b1", "alice/s", "t4-small", T0, T0 + timedelta(minutes=5, seconds=30), "stop")
    task = _done(1, 0, 180).replace(started_at=T0 + timedelta(minutes=1), finished_at=T0 + timedelta(minutes=4))
    bill = billing.bill([period], [task], PRICES, now=T0 + timedelta(hours=1))
    assert bill.billed_usd == pytest.approx(6 * 0.4 / 60) and bill.tasks_usd == pytest.approx(0.02)
    assert bill.overhead_usd == pytest.approx(0.04 - 0.02)
    html = bill_html(bill, cost_summary([task]))
    assert "$0.0400" in html and "$0.0200 over 1 task(s)" in html and "1 paid period(s)" in html
    timeline = billing_timeline_html([period], [task], PRICES, now=T0 + timedelta(hours=1))
    assert timeline.count('class="period"') == 1 and timeline.count('class="run"') == 1
    assert "t4-small · $0.0400" in timeline
    assert "No paid hardware yet" in billing_timeline_html([], [task], PRICES)
    assert "No paid hardware recorded" in bill_html(billing.bill([], [], PRICES), cost_summary([]))


def test_the_table_shows_status_as_a_label_and_the_error_shortened_without_its_attempt_prefix():
    long_error = "attempt 2: RepositoryNotFoundError: 404 dataset acme/imbd not found " + "x" * 200 + "\nTraceback..."
    failed = Task.new("a/b", "c/d", id="F1", now=T0).replace(status=Status.FAILED, attempts=2, max_attempts=2,
                                                             error=long_error)
    [row] = [dict(zip(TABLE_HEADERS, r)) for r in table_rows([failed], now=T0)]
    assert row["status"] == '<span class="status-label status-failed">FAILED</span>'
    assert row["error"].startswith("RepositoryNotFoundError: 404 dataset acme/imbd not found")
    assert len(row["error"]) == 72 and row["error"].endswith("…") and "Traceback" not in row["error"]
    assert row["attempts"] == "2/2"
    assert len(TABLE_WIDTHS) == len(TABLE_HEADERS) and sum(float(w.rstrip("%")) for w in TABLE_WIDTHS) == 100


def test_each_status_is_told_in_a_sentence_with_the_reason_in_plain_words():
    task = Task.new("a/b", "c/d", "a10g-small", id="S1", now=T0)
    later = T0 + timedelta(minutes=5)
    assert status_sentence(task, T0) == "Waiting for a10g-small: the Space switches to it when this task's turn comes."
    retry = task.replace(attempts=1, error="attempt 1: CUDA out of memory", not_before=later)
    assert status_sentence(retry, T0) == ("Attempt 1 of 3 failed: CUDA out of memory. It runs again after "
                                          "12:05:00 UTC.")
    running = task.replace(status=Status.RUNNING, attempts=2, worker="w1", started_at=T0,
                           error="attempt 1: CUDA out of memory")
    assert status_sentence(running, T0 + timedelta(seconds=75)) == (
        "Running on a10g-small for 1m15s (attempt 2 of 3), worker w1. The previous attempt failed: CUDA out of memory.")
    failed = task.replace(status=Status.FAILED, attempts=3, error="attempt 3: dataset c/d not found")
    assert status_sentence(failed, T0) == "Failed on attempt 3 of 3: dataset c/d not found"
    done = task.replace(status=Status.DONE, started_at=T0, finished_at=T0 + timedelta(seconds=192))
    assert status_sentence(done, T0) == "Done in 3m12s on a10g-small."
    assert status_sentence(task.replace(status=Status.CANCELLED, error="wrong dataset"), T0) == "Cancelled: wrong dataset"


def test_the_detail_shows_fields_params_result_cost_and_the_full_error_escaped_and_redacted():
    token = "hf_" + "A" * 30
    task = Task.new("a/b", "c/d", "t4-small", id="D1", params={"epochs": 3}, submitted_by="alice", now=T0).replace(
        status=Status.FAILED, attempts=1, max_attempts=1, worker="space-1", started_at=T0,
        finished_at=T0 + timedelta(seconds=30), gpu_seconds=30.0, cost_usd=0.005, result={"loss": 0.5},
        error=f"attempt 1: <script>alert(1)</script> denied for {token}")
    html = task_detail_html(task, now=T0)
    assert 'data-task="D1" data-status="FAILED"' in html and "status-failed" in html
    for text in ("a/b", "c/d", "2026-11-27T12:00:00Z by alice", "1 of 1, timeout 1h00m each", "space-1",
                 "$0.0050 for 30s of t4-small", "&quot;epochs&quot;: 3", "&quot;loss&quot;: 0.5",
                 "Failed on attempt 1 of 1: &lt;script&gt;"):
        assert text in html, text
    assert "<script>" not in html and token not in html and "***" in html
    assert "Select a task" in task_detail_html(None)


def test_a_running_tasks_log_is_the_live_tail_and_a_finished_ones_is_the_stored_tail(tmp_path):
    from scheduler.callbacks import TaskFiles

    task = Task.new("a/b", "c/d", id="L1", now=T0)
    live = TaskFiles(tmp_path, "L1").log
    live.parent.mkdir(parents=True)
    live.write_text("".join(f"step {i}\n" for i in range(300)))
    label, text = task_log(task.replace(status=Status.RUNNING), tmp_path)
    assert label == "Log (live, this attempt)" and text.splitlines()[-1] == "step 299" and len(text.splitlines()) == 200
    done = task.replace(status=Status.DONE, log="loading\nepoch 1 loss 0.4\ndone")
    assert task_log(done, tmp_path) == ("Log (stored with the outcome)", "loading\nepoch 1 loss 0.4\ndone")
    assert task_log(task.replace(status=Status.FAILED), tmp_path) == ("Log (none stored for this task)", "")
