"""The jobs executor on the emulator: each task is a Hub Job of its flavor, the Space stays on cpu-basic."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from scheduler.executors import JobsExecutor, ProcessExecutor
from scheduler.hardware import SpaceController
from scheduler.queue import TaskQueue
from scheduler.settings import WorkerSettings, build_worker
from scheduler.tasks import Status, Task

from tests.support import wait_for

from ..conftest import TEST_TOKEN

ROOT = Path(__file__).resolve().parents[2]
CALLBACKS = Path(__file__).with_name("job_callbacks.py")
SPACE = "demo/scheduler"
QUEUE = "hf://datasets/demo/queue"


def jobs_worker(emulator, queue, callback: str, work_dir: Path, **settings):
    """A worker with the jobs executor for SPACE (the emulator runs each Job's command on this machine)."""
    from huggingface_hub import HfApi

    options = {**dict(poll_s=0.2, jobs_poll_s=0.2, watch_s=0.5), **settings}
    return build_worker(WorkerSettings(queue="-", callback=f"{CALLBACKS}:{callback}", executor="jobs", space=SPACE,
                                       token=TEST_TOKEN, endpoint=emulator.url, work_dir=str(work_dir), **options),
                        queue=queue, controller=SpaceController(SPACE, api=HfApi(endpoint=emulator.url,
                                                                                  token=TEST_TOKEN)))


def open_queue(emulator) -> TaskQueue:
    queue = TaskQueue.open(QUEUE, token=TEST_TOKEN, endpoint=emulator.url)
    queue.init()
    return queue


def new_tasks(n: int, hardware: str = "t4-small", **params) -> list[Task]:
    return [Task.new("demo/model", "demo/data", hardware, params=params) for _ in range(n)]


def emulated_jobs(emulator) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((emulator.data_dir / "jobs").glob("*.json"))]


def max_overlap(jobs: list[dict]) -> int:
    events = sorted([(j["_started"], 1) for j in jobs] + [(j["_finished"], -1) for j in jobs])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def test_six_tasks_with_three_concurrent_jobs_take_about_two_job_lengths_and_the_space_stays_on_cpu(
        emulator, hf_api, tmp_path):
    hf_api.create_repo(SPACE, repo_type="space", space_sdk="gradio")
    queue = open_queue(emulator)
    tasks = queue.add_many(new_tasks(6, sleep=3))
    worker = jobs_worker(emulator, queue, "sleepy", tmp_path / "work", max_concurrent_jobs=3)
    start = time.monotonic()
    worker.run(until_idle=True)
    wall = time.monotonic() - start

    done = {t.id: t for t in queue.list()}
    assert {t.status for t in done.values()} == {Status.DONE}
    assert all(t.attempts == 1 and t.result["token_seen"] for t in done.values())
    jobs = emulated_jobs(emulator)
    assert len(jobs) == 6 and {j["flavor"] for j in jobs} == {"t4-small"}
    assert max_overlap(jobs) == 3
    job_length = max(j["_finished"] - j["_started"] for j in jobs)
    # Two waves of three, not six in a row.
    assert 2 * 3.0 <= wall < 4 * job_length, (wall, job_length)
    assert all(t.gpu_seconds >= 3.0 and t.cost_usd > 0 for t in done.values())
    bill = emulator.billing(SPACE)
    assert bill["hardware_requests"] == 0 and bill["hardware_changes"] == 0
    assert {e["hardware"] for e in bill["timeline"] if e["hardware"]} == {"cpu-basic"}
    for task in tasks:
        log = (tmp_path / "work" / "logs" / f"{task.id}.log").read_text()
        job = done[task.id].result["job"]
        assert f"output of {task.id} from Job {job} on t4-small" in log
        assert TEST_TOKEN not in log


def test_a_failing_callback_fails_its_task_with_the_jobs_error_and_is_retried_as_a_new_job(emulator, tmp_path):
    queue = open_queue(emulator)
    task = queue.add(Task.new("demo/model", "demo/data", "a10g-small", max_attempts=2))
    worker = jobs_worker(emulator, queue, "boom", tmp_path / "work", retry_delay_s=0.0)
    worker.run(until_idle=True)
    failed = queue.get(task.id)
    assert failed.status is Status.FAILED and failed.attempts == 2
    assert "RuntimeError: exploded inside the Job" in failed.error
    assert len(emulated_jobs(emulator)) == 2


def test_cancelling_a_task_cancels_its_job(emulator, hf_api, tmp_path):
    hf_api.create_repo(SPACE, repo_type="space", space_sdk="gradio")
    queue = open_queue(emulator)
    task = queue.add_many(new_tasks(1, sleep=60))[0]
    worker = jobs_worker(emulator, queue, "sleepy", tmp_path / "work")
    thread = worker.start_thread()
    deadline = time.monotonic() + 30
    while not any(j["status"]["stage"] == "RUNNING" for j in emulated_jobs(emulator)):
        assert time.monotonic() < deadline, "the Job never started"
        time.sleep(0.1)
    queue.cancel(task.id, "not needed")
    deadline = time.monotonic() + 30
    while emulated_jobs(emulator)[0]["status"]["stage"] != "CANCELED":
        assert time.monotonic() < deadline, "the Job was not cancelled"
        time.sleep(0.1)
    worker.stop("test over", wait_s=30)
    assert not thread.is_alive()
    assert queue.get(task.id).status is Status.CANCELLED


def test_three_workers_on_one_queue_run_thirty_tasks_each_exactly_once(emulator, hf_api, tmp_path):
    hf_api.create_repo(SPACE, repo_type="space", space_sdk="gradio")
    open_queue(emulator).add_many(new_tasks(30, hardware="cpu-basic"))
    workers = [jobs_worker(emulator, open_queue(emulator), "sleepy", tmp_path / f"w{i}", max_concurrent_jobs=2)
               for i in range(3)]
    threads = [threading.Thread(target=w.run, kwargs={"until_idle": True}) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    tasks = open_queue(emulator).list()
    assert len(tasks) == 30 and {t.status for t in tasks} == {Status.DONE}
    assert all(t.attempts == 1 for t in tasks)
    labels = [j["labels"]["space-scheduler-task"] for j in emulated_jobs(emulator)]
    assert sorted(labels) == sorted(t.id for t in tasks)  # one Job per task, none twice
    assert len({t.worker for t in tasks}) > 1


def test_the_executor_is_chosen_by_name_and_space_stays_the_default(emulator, hf_api, monkeypatch, tmp_path):
    queue = open_queue(emulator)
    hf_api.create_repo(SPACE, repo_type="space", space_sdk="gradio")
    controller = SpaceController(SPACE, api=hf_api)
    monkeypatch.delenv("SCHEDULER_EXECUTOR", raising=False)

    def build(**kw):
        settings = WorkerSettings.from_env(queue="-", callback="x.py:f", space=SPACE, work_dir=str(tmp_path), **kw)
        return build_worker(settings, queue=queue, controller=controller)

    space = build()
    assert isinstance(space.executor, ProcessExecutor) and space.executor.manages_hardware
    monkeypatch.setenv("SCHEDULER_EXECUTOR", "jobs")
    jobs = build(token=TEST_TOKEN).executor
    assert isinstance(jobs, JobsExecutor) and jobs.image == f"hf.co/spaces/{SPACE}" and jobs.namespace == "demo"
    with pytest.raises(ValueError, match="executor"):
        build(executor="gpu")


def test_a_task_cancelled_and_requeued_while_its_job_runs_never_has_two_jobs_at_once(emulator, hf_api, tmp_path):
    hf_api.create_repo(SPACE, repo_type="space", space_sdk="gradio")
    queue = open_queue(emulator)
    task = queue.add_many(new_tasks(1, sleep=60))[0]
    worker = jobs_worker(emulator, queue, "sleepy", tmp_path / "work", max_concurrent_jobs=2)
    thread = worker.start_thread()
    try:
        wait_for(lambda: any(j["status"]["stage"] == "RUNNING" for j in emulated_jobs(emulator)), 60, "the Job")
        queue.cancel(task.id, "wrong dataset")
        requeued = queue.requeue(task.id)
        assert requeued.status is Status.PENDING and requeued.not_before is not None  # waits for the old run
        wait_for(lambda: len([j for j in emulated_jobs(emulator) if j.get("_started")]) == 2, 60,
                 "the requeued task's Job to start")
        first, second = sorted(emulated_jobs(emulator), key=lambda j: j["_created"])
        assert first["status"]["stage"] == "CANCELED"
        assert first["_finished"] <= second["_started"], (first, second)  # one after the other
        assert queue.get(task.id).gpu_seconds > 0  # the cancelled run's time is kept
    finally:
        queue.cancel(task.id, "test over")
        worker.stop("test over", wait_s=60)
        thread.join(60)
    assert max_overlap(emulated_jobs(emulator)) == 1
    assert all(j["status"]["stage"] in ("CANCELED", "COMPLETED") for j in emulated_jobs(emulator))


def test_a_job_whose_start_answer_was_lost_is_followed_not_started_again(emulator, hf_api, tmp_path):
    hf_api.create_repo(SPACE, repo_type="space", space_sdk="gradio")
    queue = open_queue(emulator)
    task = queue.add_many(new_tasks(1, sleep=2))[0]
    # The Hub creates the Job; its answer never arrives (the connection drops before the body).
    emulator.set_faults(drop_after_rate=1.0, paths=r"^/api/jobs/demo$", methods="POST")
    worker = jobs_worker(emulator, queue, "sleepy", tmp_path / "work")
    thread = threading.Thread(target=worker.run, kwargs={"until_idle": True})
    thread.start()
    wait_for(lambda: emulated_jobs(emulator), 60, "the Job to be created")
    emulator.set_faults(drop_after_rate=0.0, methods=None, paths=None)
    thread.join(120)
    done = queue.get(task.id)
    assert done.status is Status.DONE and done.attempts == 1
    assert len(emulated_jobs(emulator)) == 1
    assert emulator.stats.get("fault_dropped", 0) >= 1


def test_no_token_reaches_tasks_csv_the_task_log_or_the_jobs_own_log(emulator, hf_api, tmp_path):
    hf_api.create_repo(SPACE, repo_type="space", space_sdk="gradio")
    queue = open_queue(emulator)
    task = queue.add_many(new_tasks(1))[0]
    jobs_worker(emulator, queue, "echoes_token", tmp_path / "work").run(until_idle=True)
    done = queue.get(task.id)
    assert done.status is Status.DONE and done.result == {"echo": "***", "nested": {"token": "***"}}
    csv_text = Path(hf_api.hf_hub_download("demo/queue", "tasks.csv", repo_type="dataset",
                                           force_download=True)).read_text()
    job = emulated_jobs(emulator)[0]
    job_log = "\n".join(hf_api.fetch_job_logs(job_id=job["id"], namespace="demo"))
    task_log = (tmp_path / "work" / "logs" / f"{task.id}.log").read_text()
    assert "token ***" in job_log and "token ***" in task_log
    for text in (csv_text, job_log, task_log, done.log):
        assert TEST_TOKEN not in text
