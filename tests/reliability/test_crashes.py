"""SIGKILL at the worst moments: a submitter mid-commit, the Hub mid-write, the worker mid-task.
After a restart nothing acknowledged is lost, nothing is duplicated, and the GPU ends on cpu-basic."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest
from huggingface_hub import HfApi

from scheduler import codec
from scheduler.queue import TaskQueue
from scheduler.tasks import Status

from .conftest import FULL, TOKEN, acked_in, json_lines, spawn_actor, wait_for

URL = "hf://datasets/demo/crashes"
ROUNDS = 10 if FULL else 3


def _acked(lines: list[dict]) -> tuple[set[str], set[str]]:
    started = {e["id"] for e in lines if e.get("op") == "add" and e.get("phase") == "start"}
    acked = {e["id"] for e in lines if e.get("op") == "add" and e.get("ok")}
    return acked, started - acked


def _all_ids(url: str, endpoint: str) -> list[str]:
    return [t.id for t in TaskQueue.open(url, token=TOKEN, endpoint=endpoint, unavailable_deadline_s=60).list()]


def test_a_submitter_killed_mid_commit_loses_nothing_it_was_told_and_a_rerun_adds_nothing_twice(hub_process, tmp_path):
    TaskQueue.open(URL, token=TOKEN, endpoint=hub_process.url).init()
    # Every commit is held for a moment, so the kills land while one is in flight.
    _set_faults(hub_process.url, dict(latency_s=0.3, latency_rate=1.0, paths=r"/commit/"))
    rng = random.Random(3)
    acked: set[str] = set()
    in_flight: set[str] = set()
    for round_ in range(ROUNDS):
        log = tmp_path / f"submitter-{round_}.jsonl"
        proc = spawn_actor("add", URL, hub_process.url, f"k{round_}", 50, 0, 60, log=log, HF_TOKEN=TOKEN)
        wait_for(lambda: acked_in(log) >= 2, 120, "the submitter's first acknowledged adds")
        time.sleep(rng.random() * 1.0)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        done, pending = _acked(json_lines(log.read_text()))
        assert done, "the submitter was killed before anything was acknowledged"
        acked |= done
        in_flight |= pending
    ids = _all_ids(URL, hub_process.url)
    assert len(ids) == len(set(ids))
    assert acked <= set(ids)
    assert set(ids) <= acked | in_flight  # only the add cut short may or may not have landed
    # The same submissions again (as a user would retry): client ids make them no-ops.
    _set_faults(hub_process.url, dict(latency_rate=0.0))
    for round_ in range(ROUNDS):
        proc = spawn_actor("add", URL, hub_process.url, f"k{round_}", 3, 0, 60, HF_TOKEN=TOKEN)
        proc.communicate(timeout=120)
    again = _all_ids(URL, hub_process.url)
    assert len(again) == len(set(again)) and set(ids) <= set(again)
    print(f"\nRELIABILITY submitter SIGKILL: {ROUNDS} kills, {len(acked)} acknowledged adds kept, "
          f"{len(in_flight & set(ids))}/{len(in_flight)} in-flight adds landed, 0 duplicates")


def test_the_hub_killed_mid_write_restarts_on_a_readable_repo_with_every_acknowledged_task(hub_process, tmp_path):
    TaskQueue.open(URL, token=TOKEN, endpoint=hub_process.url).init()
    logs = [tmp_path / f"adder-{i}.jsonl" for i in range(3)]
    adders = [spawn_actor("add", URL, hub_process.url, f"h{i}", 400, 0, 120, log=log, HF_TOKEN=TOKEN)
              for i, log in enumerate(logs)]
    rng = random.Random(4)
    kills = 0
    try:
        for _ in range(ROUNDS):
            before = sum(acked_in(log) for log in logs)
            wait_for(lambda: sum(acked_in(log) for log in logs) >= before + 3, 120, "adds to land between kills")
            time.sleep(rng.random() * 1.0)
            hub_process.kill()  # SIGKILL: whatever write was under way stops half done
            kills += 1
            time.sleep(0.5)
            hub_process.start()
            # The repo reads back and the queue parses after every crash, not only at the end.
            api = HfApi(endpoint=hub_process.url, token=TOKEN)
            assert "tasks.csv" in api.list_repo_files("demo/crashes", repo_type="dataset")
            codec.parse(TaskQueue.open(URL, token=TOKEN, endpoint=hub_process.url).store.read().data).tasks()
    finally:
        for proc in adders:
            proc.send_signal(signal.SIGKILL)
    for proc in adders:
        proc.communicate(timeout=30)
    lines = [json_lines(log.read_text()) for log in logs]
    acked: set[str] = set()
    in_flight: set[str] = set()
    for out in lines:
        done, pending = _acked(out)
        acked |= done
        in_flight |= pending
    ids = _all_ids(URL, hub_process.url)
    assert len(ids) == len(set(ids))
    assert acked and acked <= set(ids), sorted(acked - set(ids))[:5]
    assert set(ids) <= acked | in_flight
    leftovers = [p for p in hub_process.data_dir.rglob("*") if p.name.startswith(".tmp-")]
    print(f"\nRELIABILITY hub SIGKILL: {kills} kills mid-write, {len(acked)} acknowledged adds all readable, "
          f"{len(leftovers)} temp files left")


# ---------------------------------------------------------------- the worker on an emulated Space


@pytest.fixture
def space_rig(tmp_path):
    from scheduler.emulator import start_emulator
    from tests.worker.conftest import Rig

    handle = start_emulator(tmp_path / "hub", boot_delay=1.0, app_start_delay=0.1, stop_grace=3.0, fsync=False)
    rig = Rig(handle, tmp_path, token="hf_crashRigToken0123456789")
    try:
        yield rig
    finally:
        try:
            if rig.worker_pid() is not None:
                rig.api.request_space_hardware(rig.space, "cpu-basic")
        finally:
            handle.stop()


def _children_running(task_id: str) -> list[int]:
    """Callback processes still alive for this task (their argv names its spec file)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = open(f"/proc/{entry}/cmdline", "rb").read()
            except OSError:
                continue
            if b"scheduler.callbacks" in cmdline and task_id.encode() in cmdline:
                found.append(int(entry))
    return found


def test_a_worker_killed_mid_task_leaves_no_training_running_and_the_gpu_ends_on_cpu_basic(space_rig):
    rig = space_rig
    rig.start()
    victim = rig.add(params={"steps": 60, "sleep": 0.1})[0]
    others = rig.add(2, params={"steps": 1})
    wait_for(lambda: rig.queue.get(victim.id).status is Status.RUNNING, 90, "the task to start")
    wait_for(lambda: _children_running(victim.id), 30, "the callback process to start")
    os.kill(rig.worker_pid(), signal.SIGKILL)
    # The orphaned callback notices its worker is gone and stops: no GPU burnt on a result nobody records.
    wait_for(lambda: not _children_running(victim.id), 10, "the orphaned callback to exit")
    wait_for(lambda: rig.runtime().stage == "RUNTIME_ERROR", 30, "the Space to report the crash")
    rig.api.restart_space(rig.space)
    tasks = {t.id: t for t in rig.wait_all_final(120)}
    rig.wait_settled("cpu-basic")
    assert tasks[victim.id].status is Status.DONE and tasks[victim.id].attempts == 2
    assert all(tasks[t.id].status is Status.DONE and tasks[t.id].attempts == 1 for t in others)
    bill = rig.billing()
    assert bill["timeline"][-1]["hardware"] == "cpu-basic"
    print(f"\nRELIABILITY worker SIGKILL: victim re-run once (attempts=2), GPU billed "
          f"{bill['billed_seconds'].get('t4-small', 0):.1f}s, ended on cpu-basic")


def _set_faults(url: str, faults: dict) -> None:
    import httpx

    httpx.post(f"{url}/_emulator/faults", json=faults, timeout=10).raise_for_status()
