"""Every worker setting holds for the Jobs executor as for the others: lease renewals, the idle poll,
the retry delay, the cap on timeouts and the grace a cancelled callback gets."""

from __future__ import annotations

import time

import pytest

from scheduler.tasks import Status, Task
from tests.support import wait_for

from .test_jobs_executor import SPACE, emulated_jobs, jobs_worker, open_queue


@pytest.fixture
def space(hf_api):
    hf_api.create_repo(SPACE, repo_type="space", space_sdk="gradio")
    return SPACE


def _running_job(emulator) -> dict:
    return wait_for(lambda: next((j for j in emulated_jobs(emulator) if j["status"]["stage"] == "RUNNING"), None),
                    60, "a Job to run")


def test_the_lease_is_renewed_every_third_of_lease(emulator, space, tmp_path):
    queue = open_queue(emulator)
    task = queue.add(Task.new("demo/m", "demo/d", "t4-small", params={"sleep": 30}))
    worker = jobs_worker(emulator, queue, "sleepy", tmp_path / "work", lease_s=6)
    worker.start_thread()
    try:
        _running_job(emulator)
        first = queue.get(task.id).lease_until
        wait_for(lambda: queue.get(task.id).lease_until > first, 20, "a renewal")
        assert (queue.get(task.id).lease_until - first).total_seconds() <= 6
    finally:
        worker.stop("test over", wait_s=30)


@pytest.mark.parametrize("poll_s", [0.3, 3.0])
def test_an_idle_worker_reads_the_queue_every_poll(emulator, space, tmp_path, poll_s):
    queue = open_queue(emulator)
    worker = jobs_worker(emulator, queue, "sleepy", tmp_path / "work", poll_s=poll_s)
    worker.start_thread()
    time.sleep(1.0)
    before = queue.stats["reads"]
    time.sleep(3.0)
    reads = queue.stats["reads"] - before
    worker.stop("test over", wait_s=30)
    assert reads <= 3.0 / poll_s + 2 and reads >= (1 if poll_s < 1 else 0)
    if poll_s < 1:
        assert reads >= 5


def test_a_failed_job_is_retried_after_the_retry_delay(emulator, space, tmp_path):
    queue = open_queue(emulator)
    task = queue.add(Task.new("demo/m", "demo/d", "t4-small", max_attempts=2))
    worker = jobs_worker(emulator, queue, "boom", tmp_path / "work", retry_delay_s=120)
    worker.start_thread()
    try:
        retried = wait_for(lambda: (t := queue.get(task.id)).status is Status.PENDING and t.attempts == 1 and t,
                           60, "the first attempt to fail")
        wait = (retried.not_before - queue.clock()).total_seconds()
        assert 100 <= wait <= 121, wait
    finally:
        worker.stop("test over", wait_s=30)


def test_max_timeout_caps_the_jobs_timeout_and_ends_the_run(emulator, space, tmp_path):
    queue = open_queue(emulator)
    task = queue.add(Task.new("demo/m", "demo/d", "t4-small", params={"sleep": 60}, timeout_s=600))
    worker = jobs_worker(emulator, queue, "sleepy", tmp_path / "work", max_timeout_s=3)
    worker.start_thread()
    try:
        job = _running_job(emulator)
        assert job["timeoutSeconds"] == 3
        failed = wait_for(lambda: (t := queue.get(task.id)).status is Status.FAILED and t, 60, "the timeout")
        assert "timed out" in failed.error and failed.attempts == 1
    finally:
        worker.stop("test over", wait_s=30)


@pytest.mark.parametrize("grace_s, cleaned_up", [(1.8, True), (0.2, False)])
def test_a_cancelled_jobs_callback_gets_the_stop_grace_to_return(emulator, hf_api, space, tmp_path, grace_s,
                                                                   cleaned_up):
    queue = open_queue(emulator)
    task = queue.add(Task.new("demo/m", "demo/d", "t4-small"))
    worker = jobs_worker(emulator, queue, "slow_to_stop", tmp_path / "work", stop_grace_s=grace_s)
    worker.start_thread()
    try:
        job = _running_job(emulator)
        time.sleep(1.0)
        queue.cancel(task.id, "not needed")
        wait_for(lambda: queue.get(task.id).lease_until is None, 60, "the cancelled run to stop")
    finally:
        worker.stop("test over", wait_s=30)
    log = "\n".join(hf_api.fetch_job_logs(job_id=job["id"], namespace="demo"))
    assert "cleaning up" in log
    assert ("cleanup done" in log) is cleaned_up, log
