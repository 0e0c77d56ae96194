"""The worker loop on this machine (`--hardware local`): runs, failures, timeouts, cancellation, logs."""

from __future__ import annotations

import time
from pathlib import Path

from scheduler.callbacks import read_progress, tail_log
from scheduler.settings import WorkerSettings, build_worker
from scheduler.tasks import Status, Task

CALLBACKS = Path(__file__).with_name("sample_callbacks.py")
FAST = dict(lease_s=3, poll_s=0.2, stop_grace_s=1, retry_delay_s=0, max_gpu_wait_s=5, watch_s=0.5)


def make_worker(tmp_path, kind="by_param", token=None, **overrides):
    settings = WorkerSettings(queue=str(tmp_path / "queue"), callback=f"{CALLBACKS}:{kind}", executor="local",
                              work_dir=str(tmp_path / "work"), token=token, **{**FAST, **overrides})
    worker = build_worker(settings)
    return worker.queue, worker


def add(queue, kind="ok", **fields):
    params = {"kind": kind, **fields.pop("params", {})}
    return queue.add(Task.new("owner/model", "owner/data", "t4-small", params=params, **fields))


def test_a_local_worker_runs_every_task_by_priority_then_age(tmp_path):
    queue, worker = make_worker(tmp_path)
    low = add(queue)
    high = add(queue, priority=5)
    worker.run(until_idle=True)
    done = {t.id: t for t in queue.list()}
    assert {t.status for t in done.values()} == {Status.DONE}
    assert done[high.id].started_at <= done[low.id].started_at
    for task in done.values():
        assert task.result["steps"] == 2 and task.result["attempt"] == 1
        assert task.gpu_seconds > 0 and task.cost_usd == 0
    assert read_progress(low.id, worker.work_dir)["fraction"] == 1.0
    assert any("trained owner/model" in line for line in tail_log(low.id, 20, worker.work_dir))
    assert worker.status()["done"] == 2


def test_a_callback_that_raises_is_retried_then_failed_with_its_message(tmp_path):
    queue, worker = make_worker(tmp_path)
    bad = add(queue, "boom", max_attempts=2)
    good = add(queue)
    worker.run(until_idle=True)
    bad = queue.get(bad.id)
    assert bad.status is Status.FAILED and bad.attempts == 2
    assert "RuntimeError: exploded on purpose (attempt 2)" in bad.error
    assert "sample_callbacks.py" in bad.error and "Traceback" not in bad.error
    assert queue.get(good.id).status is Status.DONE


def test_a_transient_failure_is_retried_until_it_succeeds(tmp_path):
    queue, worker = make_worker(tmp_path)
    task = add(queue, "flaky", max_attempts=3)
    worker.run(until_idle=True)
    task = queue.get(task.id)
    assert task.status is Status.DONE and task.result == {"recovered_on_attempt": 2}


def test_a_callback_past_its_timeout_is_killed_and_failed_without_retry(tmp_path):
    queue, worker = make_worker(tmp_path)
    slow = add(queue, "stubborn", timeout_s=1, max_attempts=3)
    after = add(queue)
    worker.run(until_idle=True)
    slow = queue.get(slow.id)
    assert slow.status is Status.FAILED and slow.attempts == 1
    assert "timed out after 1s" in slow.error
    assert queue.get(after.id).status is Status.DONE


def test_a_cancelled_task_that_ignores_should_stop_is_killed(tmp_path):
    queue, worker = make_worker(tmp_path, lease_s=1.5, stop_grace_s=0.5, retry_delay_s=None)
    stuck = add(queue, "stubborn", timeout_s=600)
    other = add(queue)
    thread = worker.start_thread()
    deadline = time.monotonic() + 30
    while queue.get(stuck.id).status is not Status.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    queue.cancel(stuck.id, "changed my mind")
    while queue.get(other.id).status is not Status.DONE:
        assert time.monotonic() < deadline, worker.status()
        time.sleep(0.1)
    worker.stop(wait_s=20)
    assert not thread.is_alive()
    assert queue.get(stuck.id).status is Status.CANCELLED
    assert any("cancelled" in line for line in tail_log(stuck.id, 20, worker.work_dir))


def test_a_stopped_worker_puts_its_task_back_for_an_immediate_retry(tmp_path):
    queue, worker = make_worker(tmp_path)
    task = add(queue, "stubborn", max_attempts=3)
    thread = worker.start_thread()
    deadline = time.monotonic() + 30
    while queue.get(task.id).status is not Status.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    worker.stop("received SIGTERM", wait_s=20)
    assert not thread.is_alive()
    task = queue.get(task.id)
    assert task.status is Status.PENDING and "interrupted" in task.error and "SIGTERM" in task.error


def test_the_token_never_reaches_logs_progress_or_errors(tmp_path):
    secret = "plain-secret-value-0042"  # not hf_-shaped: redaction must know it, not guess it
    queue, worker = make_worker(tmp_path, token=secret)
    task = add(queue, "leaky", max_attempts=1)
    worker.run(until_idle=True)
    task = queue.get(task.id)
    assert task.status is Status.FAILED and "PermissionError" in task.error
    written = [p.read_text(errors="replace") for p in Path(worker.work_dir).rglob("*") if p.is_file()]
    written.append((tmp_path / "queue" / "tasks.csv").read_text())
    assert any("my token is ***" in text for text in written)
    assert not any(secret in text for text in written)
    assert secret not in str(worker.status())


def test_status_reports_the_last_decision_and_its_reason(tmp_path):
    queue, worker = make_worker(tmp_path)
    worker.run(once=True)
    status = worker.status()
    assert status["action"] == "Serve" and "nothing to run" in status["reason"]
    assert status["worker"] == worker.id
