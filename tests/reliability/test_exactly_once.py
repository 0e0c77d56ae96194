"""Exactly once, under the faults that used to run tasks twice or orphan paid work: results the queue
cannot store, outcomes that cannot be recorded, processes that outlive their task, leases that cannot
be renewed, cancels that race the end of a run, a Hub that keeps failing."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest

from scheduler.errors import StoreError
from scheduler.hardware import LocalController
from scheduler.queue import TaskQueue
from scheduler.settings import WorkerSettings, build_worker
from scheduler.tasks import Status, Task
from tests.support import wait_for

from ..conftest import TEST_TOKEN

CALLBACKS = Path(__file__).with_name("lifecycle_callbacks.py")
HUB_QUEUE = "hf://datasets/demo/queue"


def local_worker(tmp_path: Path, callback: str, *, queue=None, controller=None, **settings):
    options = {**dict(poll_s=0.2, watch_s=0.5, stop_grace_s=1, retry_delay_s=0), **settings}
    s = WorkerSettings(queue=str(tmp_path / "queue"), callback=f"{CALLBACKS}:{callback}", executor="local",
                       work_dir=str(tmp_path / "work"), **options)
    return build_worker(s, queue=queue, controller=controller)


def task(tmp_path: Path, **params) -> Task:
    params.setdefault("trace", str(tmp_path / "trace.jsonl"))
    params.setdefault("pids", str(tmp_path / "pids.txt"))
    return Task.new("demo/model", "demo/data", "t4-small", params=params, max_attempts=params.pop("attempts", 3),
                    timeout_s=params.pop("timeout", 600))


def trace(tmp_path: Path) -> list[dict]:
    path = tmp_path / "trace.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def runs_of(tmp_path: Path, task_id: str) -> int:
    return sum(1 for e in trace(tmp_path) if e["task"] == task_id and e["event"] == "start")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


# ---------------------------------------------------------------- what a result may hold


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "nested", "numpy", "objects"])
def test_a_result_the_csv_cannot_hold_as_is_is_stored_with_nulls_and_noted_after_one_run(tmp_path, value):
    worker = local_worker(tmp_path, "returns")
    added = worker.queue.add(task(tmp_path, value=value))
    worker.run(until_idle=True)
    done = worker.queue.get(added.id)
    assert done.status is Status.DONE, done.error
    assert runs_of(tmp_path, added.id) == 1
    text = json.dumps(done.result, allow_nan=False)  # what is stored is plain JSON
    if value in ("nan", "inf", "-inf", "nested", "numpy"):
        assert "null" in text and "stored as null" in done.log
    if value == "numpy":
        assert done.result["steps"] == 3 and done.result["weights"] == [1.5, 2.5]
    if value == "objects":
        assert done.result == {"when": "2026-01-01 00:00:00", "pair": [1, 2]}


def test_an_oversized_result_fails_its_task_once_naming_the_limit(tmp_path):
    worker = local_worker(tmp_path, "returns")
    added = worker.queue.add(task(tmp_path, value="oversized"))
    worker.run(until_idle=True)
    failed = worker.queue.get(added.id)
    assert failed.status is Status.FAILED and failed.attempts == 1
    assert "16,384" in failed.error and "bytes" in failed.error
    assert runs_of(tmp_path, added.id) == 1
    assert failed.result is None and len((tmp_path / "queue" / "tasks.csv").read_bytes()) < 50_000


def test_no_executor_stores_or_prints_the_token_a_callback_puts_in_its_result(tmp_path):
    secret = "plain-secret-value-7731"  # not hf_-shaped: redaction must know it, not guess it
    worker = local_worker(tmp_path, "echoes_token", token=secret)
    added = worker.queue.add(task(tmp_path))
    worker.run(until_idle=True)
    done = worker.queue.get(added.id)
    assert done.status is Status.DONE and done.result == {"echo": "***", "nested": {"token": "***"}}
    written = [p.read_text(errors="replace") for p in (tmp_path).rglob("*") if p.is_file()]
    assert not any(secret in text for text in written)


# ---------------------------------------------------------------- processes that outlive their task


@pytest.mark.parametrize("how", ["child", "setsid", "double-fork"])
@pytest.mark.parametrize("ending", ["timeout", "cancel", "worker stop", "returns"])
def test_every_process_a_run_started_ends_with_it(tmp_path, how, ending):
    worker = local_worker(tmp_path, "spawns", stop_grace_s=0.5)
    params = dict(how=how, returns=ending == "returns", timeout=2 if ending == "timeout" else 600)
    added = worker.queue.add(task(tmp_path, **params))
    thread = worker.start_thread()
    pids = tmp_path / "pids.txt"
    wait_for(lambda: pids.exists() and pids.read_text().strip(), 30, "the callback to start its process")
    pid = int(pids.read_text().split()[0])
    if ending == "cancel":
        worker.queue.cancel(added.id, "not needed")
        worker.wake()  # a cancel from this process's own page
    if ending == "worker stop":
        worker.stop("received SIGTERM", wait_s=30)
    else:
        wait_for(lambda: worker.queue.get(added.id).status is not Status.RUNNING
                 and not worker.journal.pending() and not worker.runs, 30, "the run to be recorded")
        worker.stop("test over", wait_s=30)
    assert not thread.is_alive()
    wait_for(lambda: not alive(pid), 5, f"process {pid} ({how}) to be gone after the {ending}")
    expected = {"timeout": Status.FAILED, "cancel": Status.CANCELLED, "worker stop": Status.PENDING,
                "returns": Status.DONE}[ending]
    assert worker.queue.get(added.id).status is expected


def test_a_callback_that_returns_while_a_non_daemon_thread_lingers_ends_its_task_at_once(tmp_path):
    worker = local_worker(tmp_path, "spawns")
    added = worker.queue.add(task(tmp_path, how="thread", returns=True))
    started = time.monotonic()
    worker.run(until_idle=True)
    assert worker.queue.get(added.id).status is Status.DONE
    assert time.monotonic() - started < 60  # the thread sleeps 120 s


# ---------------------------------------------------------------- outcomes that cannot be recorded at once


def test_a_burst_of_5xx_as_a_run_ends_does_not_run_it_again(emulator, tmp_path):
    queue = TaskQueue.open(HUB_QUEUE, token=TEST_TOKEN, endpoint=emulator.url, unavailable_deadline_s=1.0)
    queue.init()
    added = queue.add(task(tmp_path, seconds=1.0))
    worker = local_worker(tmp_path, "sleeps", queue=queue)
    thread = threading.Thread(target=worker.run, kwargs={"until_idle": True})
    thread.start()
    wait_for(lambda: runs_of(tmp_path, added.id), 30, "the run to start")
    emulator.set_faults(error_rate=1.0, paths=r"/commit/")  # longer than the queue's outage deadline
    wait_for(lambda: worker.journal.pending(), 30, "the outcome to be journaled")
    time.sleep(3.0)
    assert worker.queue.get(added.id).status is Status.RUNNING and thread.is_alive()
    emulator.set_faults(error_rate=0.0)
    thread.join(60)
    done = queue.get(added.id)
    assert done.status is Status.DONE and done.attempts == 1
    assert runs_of(tmp_path, added.id) == 1


def test_an_outcome_journaled_before_a_restart_is_recorded_by_the_next_worker_without_a_rerun(emulator, tmp_path):
    queue = TaskQueue.open(HUB_QUEUE, token=TEST_TOKEN, endpoint=emulator.url, unavailable_deadline_s=1.0)
    queue.init()
    added = queue.add(task(tmp_path, seconds=0.5))
    first = local_worker(tmp_path, "sleeps", queue=queue)
    thread = first.start_thread()
    wait_for(lambda: runs_of(tmp_path, added.id), 30, "the run to start")
    emulator.set_faults(error_rate=1.0, paths=r"/commit/")
    wait_for(lambda: first.journal.pending(), 30, "the outcome to be journaled")
    first.stop("received SIGTERM", wait_s=30)
    assert not thread.is_alive() and first.journal.pending()
    assert queue.get(added.id).status is Status.RUNNING
    emulator.set_faults(error_rate=0.0)

    second = local_worker(tmp_path, "sleeps", queue=TaskQueue.open(HUB_QUEUE, token=TEST_TOKEN, endpoint=emulator.url))
    second.run(until_idle=True)
    done = queue.get(added.id)
    assert done.status is Status.DONE and done.attempts == 1 and done.result["who"] == ""
    assert runs_of(tmp_path, added.id) == 1 and not second.journal.pending()


def test_5xx_on_every_commit_is_waited_out_with_backoff_then_reported_as_unavailable(emulator, tmp_path):
    queue = TaskQueue.open(HUB_QUEUE, token=TEST_TOKEN, endpoint=emulator.url, unavailable_deadline_s=3.0)
    queue.init()
    emulator.set_faults(error_rate=1.0, paths=r"/commit/")
    started = time.monotonic()
    with pytest.raises(StoreError, match="unavailable"):
        queue.add(task(tmp_path))
    elapsed = time.monotonic() - started
    emulator.set_faults(error_rate=0.0)
    assert elapsed >= 3.0
    assert queue.stats["ambiguous"] < 25, queue.stats  # not 200 commits in a tight loop
    assert queue.list() == []  # and nothing was written


def test_a_cancel_that_lands_as_the_run_ends_keeps_the_runs_paid_time(tmp_path):
    # The row watcher would notice the cancel and stop the run; here it looks too rarely to, so the
    # cancel races the outcome: the worker's record then keeps the usage on the cancelled task.
    worker = local_worker(tmp_path, "sleeps", watch_s=600, controller=LocalController(price_per_hour=3.6))
    added = worker.queue.add(task(tmp_path, seconds=1.5))
    thread = worker.start_thread()
    wait_for(lambda: runs_of(tmp_path, added.id), 30, "the run to start")
    worker.queue.cancel(added.id, "changed my mind")
    wait_for(lambda: any(e["event"] == "end" for e in trace(tmp_path)), 30, "the run to end")
    wait_for(lambda: worker.queue.get(added.id).lease_until is None, 30, "the usage to be recorded")
    worker.stop("test over", wait_s=30)
    thread.join(30)
    cancelled = worker.queue.get(added.id)
    assert cancelled.status is Status.CANCELLED and cancelled.result is None
    assert cancelled.gpu_seconds >= 1.4 and cancelled.cost_usd > 0.001


# ---------------------------------------------------------------- leases that cannot be renewed


def test_a_run_whose_lease_cannot_be_renewed_stops_before_it_runs_out(emulator, tmp_path):
    queue = TaskQueue.open(HUB_QUEUE, token=TEST_TOKEN, endpoint=emulator.url)
    queue.init()
    added = queue.add(task(tmp_path, seconds=60))
    worker = local_worker(tmp_path, "sleeps", queue=queue, lease_s=6, stop_grace_s=1)
    thread = worker.start_thread()
    wait_for(lambda: runs_of(tmp_path, added.id), 30, "the run to start")
    claimed = queue.get(added.id)
    # Every renewal is refused with a long Retry-After, as a spent commit quota would be.
    emulator.set_faults(commit_429_every=1, retry_after_s=30, paths=r"/commit/")
    wait_for(lambda: any(e["event"] == "stopped" for e in trace(tmp_path)), 30, "the run to stop")
    start, stop = (next(e["t"] for e in trace(tmp_path) if e["event"] == kind) for kind in ("start", "stopped"))
    lease_end = claimed.lease_until.timestamp()
    assert stop <= lease_end + 0.5, (stop, lease_end)  # stopped by the time its lease ran out
    emulator.set_faults(commit_429_every=0)
    worker.stop("test over", wait_s=60)
    thread.join(60)
    assert runs_of(tmp_path, added.id) == 1


# ---------------------------------------------------------------- a worker that cannot die


def test_a_remote_worker_keeps_trying_to_release_the_gpu_through_a_hub_outage(emulator, hf_api, tmp_path):
    space = "demo/gpu-box"
    hf_api.create_repo(space, repo_type="space", space_sdk="gradio")
    hf_api.request_space_hardware(space, "t4-small", sleep_time=3600)
    wait_for(lambda: hf_api.get_space_runtime(space).hardware == "t4-small", 30, "the Space on t4-small")
    emulator.set_faults(error_rate=1.0, paths=rf"/api/spaces/{space}/(runtime|hardware)")
    from scheduler.hardware import SpaceController

    worker = build_worker(WorkerSettings(queue=str(tmp_path / "queue"), callback=f"{CALLBACKS}:sleeps", space=space,
                                         work_dir=str(tmp_path / "work"), poll_s=0.5),
                          controller=SpaceController(space, api=hf_api, poll_s=0.2, retry_deadline_s=0.5))
    thread = worker.start_thread()
    wait_for(lambda: worker.status()["state"] == "error", 30, "a failing step")
    time.sleep(4)  # several failed steps and releases
    assert thread.is_alive()
    emulator.set_faults(error_rate=0.0)
    wait_for(lambda: hf_api.get_space_runtime(space).requested_hardware == "cpu-basic", 60, "the GPU given back")
    worker.stop("test over", wait_s=30)


def test_a_worker_that_boots_during_an_outage_waits_it_out_then_runs_its_task(emulator, hf_api, tmp_path):
    space = "demo/booting"
    hf_api.create_repo(space, repo_type="space", space_sdk="gradio")
    emulator.set_faults(error_rate=1.0, paths=rf"/api/spaces/{space}/runtime")
    from scheduler.hardware import SpaceController

    worker = build_worker(WorkerSettings(queue=str(tmp_path / "queue"), callback=f"{CALLBACKS}:sleeps", space=space,
                                         work_dir=str(tmp_path / "work"), poll_s=0.5, retry_delay_s=0),
                          controller=SpaceController(space, api=hf_api, poll_s=0.2))
    added = worker.queue.add(task(tmp_path, seconds=0.1).replace(hardware="cpu-basic"))
    thread = threading.Thread(target=worker.run, kwargs={"until_idle": True})
    thread.start()
    time.sleep(4)
    assert thread.is_alive()
    emulator.set_faults(error_rate=0.0)
    thread.join(60)
    assert worker.queue.get(added.id).status is Status.DONE


def test_a_remote_worker_stopped_while_its_gpu_boots_gives_the_gpu_back(gpu_emulator_slow_boot, hf_api_slow, tmp_path):
    import subprocess
    import sys

    from tests.support import ROOT, child_env

    space = "demo/remote-switch"
    hf_api_slow.create_repo(space, repo_type="space", space_sdk="gradio")
    wait_for(lambda: hf_api_slow.get_space_runtime(space).stage == "RUNNING", 30, "the Space to run")
    queue = TaskQueue.open(str(tmp_path / "queue"))
    queue.add(task(tmp_path, seconds=1))
    env = child_env(HF_TOKEN=TEST_TOKEN, HF_ENDPOINT=gpu_emulator_slow_boot.url)
    env.pop("SPACE_ID", None)
    worker = subprocess.Popen([sys.executable, "-m", "scheduler", "worker", "--queue", str(tmp_path / "queue"),
                               "--space", space, "--callback", f"{CALLBACKS}:sleeps", "--work-dir",
                               str(tmp_path / "work"), "--poll", "0.2"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: hf_api_slow.get_space_runtime(space).requested_hardware == "t4-small", 30, "the GPU requested")
    worker.send_signal(signal.SIGINT)
    output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, output
    wait_for(lambda: hf_api_slow.get_space_runtime(space).requested_hardware == "cpu-basic", 30, "the GPU released")


@pytest.fixture
def gpu_emulator_slow_boot(tmp_path):
    from scheduler.emulator import start_emulator

    handle = start_emulator(tmp_path / "hub", boot_delay=4.0, stop_grace=2.0, fsync=False)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def hf_api_slow(gpu_emulator_slow_boot):
    from huggingface_hub import HfApi

    return HfApi(endpoint=gpu_emulator_slow_boot.url, token=TEST_TOKEN)


def test_a_signal_reaches_the_worker_not_the_callback_and_the_worker_stops_the_run(tmp_path):
    import subprocess
    import sys

    from tests.support import ROOT, child_env

    queue = TaskQueue.open(str(tmp_path / "queue"))
    added = queue.add(task(tmp_path, how="child"))
    worker = subprocess.Popen([sys.executable, "-m", "scheduler", "worker", "--queue", str(tmp_path / "queue"),
                               "--hardware", "local", "--callback", f"{CALLBACKS}:spawns", "--work-dir",
                               str(tmp_path / "work"), "--poll", "0.2"], env=child_env(), cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pids = tmp_path / "pids.txt"
    wait_for(lambda: pids.exists() and pids.read_text().strip(), 30, "the callback to start its process")
    pid = int(pids.read_text().split()[0])
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=60)
    wait_for(lambda: not alive(pid), 10, "the training process to be gone")
    interrupted = queue.get(added.id)
    assert interrupted.status is Status.PENDING and "SIGTERM" in interrupted.error, output


def test_a_cancel_from_another_client_stops_even_a_stubborn_callback_within_ten_seconds_by_default(emulator, tmp_path):
    """Default settings: the row is checked every 3 s (a cheap read of the head), a stopped callback
    gets 5 s, then its whole process tree is killed."""
    queue = TaskQueue.open(HUB_QUEUE, token=TEST_TOKEN, endpoint=emulator.url)
    queue.init()
    added = queue.add(task(tmp_path, how="child"))
    worker = build_worker(WorkerSettings(queue="-", callback=f"{CALLBACKS}:spawns", executor="local",
                                         work_dir=str(tmp_path / "work"), poll_s=0.5), queue=queue)
    assert (worker.settings.watch_s, worker.settings.stop_grace_s) == (3.0, 5.0)
    thread = worker.start_thread()
    pids = tmp_path / "pids.txt"
    wait_for(lambda: pids.exists() and pids.read_text().strip(), 60, "the callback to start its process")
    pid = int(pids.read_text().split()[0])
    other = TaskQueue.open(HUB_QUEUE, token=TEST_TOKEN, endpoint=emulator.url)
    cancelled_at = time.monotonic()
    other.cancel(added.id, "wrong dataset")
    wait_for(lambda: not alive(pid), 30, "the training process to be gone")
    elapsed = time.monotonic() - cancelled_at
    print(f"\nRELIABILITY cancel from another client: training gone {elapsed:.1f}s after the cancel")
    assert elapsed <= 10.0 + 2.0  # at most 3 s to notice + 5 s grace, plus this machine's scheduling slack
    wait_for(lambda: queue.get(added.id).lease_until is None, 30, "the run's usage to be recorded")
    worker.stop("test over", wait_s=30)
    thread.join(30)
    assert queue.get(added.id).status is Status.CANCELLED and queue.get(added.id).gpu_seconds > 0
