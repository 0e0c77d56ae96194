"""The Hub goes away, answers 5xx/429, stalls, or loses commit answers in the middle of a burst of adds,
claims and completions from several processes: every operation completes once or reports an error,
no task is lost or run twice, and a worker carries on by itself once the Hub is back."""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import time

from scheduler.queue import TaskQueue
from scheduler.tasks import Status, Task

from .conftest import ACTORS, FULL, TOKEN, child_env, json_lines, spawn_actor, wait_for

ADDERS = 3
PER_ADDER = 40 if FULL else 12
OUTAGE_S = 30.0 if FULL else 10.0
URL = "hf://datasets/demo/reliability"


def _worker(endpoint: str, work_dir) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "scheduler", "worker", "--hardware", "local", "--queue", URL,
         "--callback", f"{ACTORS}:quick", "--work-dir", str(work_dir), "--lease", "60", "--poll", "0.2",
         "--retry-delay", "0", "--stop-grace", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=child_env(HF_ENDPOINT=endpoint, HF_TOKEN=TOKEN))


class Burst:
    """Adders, a drainer and (optionally) a worker, all separate processes on one Hub queue."""

    def __init__(self, endpoint: str, tmp_path, per_adder: int = PER_ADDER, pause_s: float = 0.1, worker: bool = True):
        self.endpoint = endpoint
        self.stop_file = tmp_path / "stop-draining"
        TaskQueue.open(URL, token=TOKEN, endpoint=endpoint).init()
        env = dict(HF_TOKEN=TOKEN)
        self.adders = [spawn_actor("add", URL, endpoint, f"a{i}", per_adder, pause_s, 240, **env) for i in range(ADDERS)]
        self.drainer = spawn_actor("drain", URL, endpoint, self.stop_file, 240, **env)
        self.worker = _worker(endpoint, tmp_path / "work") if worker else None
        self.expected = {f"a{i}-{j:04d}" for i in range(ADDERS) for j in range(per_adder)}
        self.added_here: set[str] = set()

    def queue(self) -> TaskQueue:
        return TaskQueue.open(URL, token=TOKEN, endpoint=self.endpoint, unavailable_deadline_s=60)

    def finish(self, timeout: float = 300) -> dict:
        outputs = []
        for proc in self.adders:
            out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, err[-3000:]
            outputs.append(json_lines(out))
        self.stop_file.touch()
        queue = self.queue()
        # Everything added must end up finished, by the drainer or by the worker.
        wait_for(lambda: all(t.is_terminal for t in queue.list()), timeout, "every task to finish", every=0.5)
        out, err = self.drainer.communicate(timeout=timeout)
        assert self.drainer.returncode == 0, err[-3000:]
        log = ""
        if self.worker is not None:
            self.worker.send_signal(signal.SIGTERM)
            log, _ = self.worker.communicate(timeout=60)
            assert self.worker.returncode == 0, log[-3000:]
        return {"adds": [line for lines in outputs for line in lines], "drain": json_lines(out), "worker_log": log}

    def check(self, result: dict) -> dict:
        adds = [e for e in result["adds"] if e["op"] == "add" and e.get("phase") != "start"]
        acked = {e["id"] for e in adds if e.get("ok")} | self.added_here
        errored = {e["id"] for e in adds if "error" in e}
        for e in adds:
            if "error" in e:  # a refusal must say what failed, not be a bare exception
                assert e["error"].split(":")[0] in ("StoreError", "Unavailable"), e
        tasks = self.queue().list()
        ids = [t.id for t in tasks]
        assert len(ids) == len(set(ids)), "a task was duplicated"
        assert acked <= set(ids), f"acknowledged adds lost: {sorted(acked - set(ids))[:5]}"
        assert set(ids) <= self.expected | self.added_here and self.expected <= acked | errored
        odd = [(t.id, t.status.value, t.attempts, t.error) for t in tasks
               if t.status is not Status.DONE or t.attempts != 1]
        assert not odd, odd[:5]  # nothing failed, nothing orphaned RUNNING, nothing run twice
        claims = collections.Counter(e["id"] for e in result["drain"] if e["op"] == "claim" and "id" in e)
        completes = {e["id"] for e in result["drain"] if e["op"] == "complete" and e.get("ok")}
        assert not claims or max(claims.values()) == 1
        assert set(claims) == completes
        by_worker = [t for t in tasks if not t.worker.startswith("drainer-")]
        return {"tasks": len(tasks), "acked": len(acked), "errors": len(errored), "drained": len(completes),
                "by_worker": len(by_worker), "tasks_list": tasks}


def test_a_hub_outage_in_the_middle_of_a_burst_loses_and_duplicates_nothing_and_the_worker_resumes(hub_process, tmp_path):
    burst = Burst(hub_process.url, tmp_path)
    queue = burst.queue()
    wait_for(lambda: len(queue.list()) >= ADDERS * PER_ADDER // 4, 120, "a quarter of the burst to land", every=0.2)
    hub_process.stop()
    down_at = time.time()
    time.sleep(OUTAGE_S)
    hub_process.start()
    # Tasks only the worker takes (the drainer claims cpu-upgrade only): it must resume by itself.
    late = queue.add_many([Task.new("acme/model", "acme/data", "t4-small", id=f"late-{i}") for i in range(3)])
    burst.added_here |= {t.id for t in late}
    result = burst.finish()
    summary = burst.check(result)
    assert summary["errors"] == 0  # the outage is shorter than the callers' deadline: they waited it out
    finished_after = [t for t in summary["tasks_list"] if t.finished_at.timestamp() > down_at + OUTAGE_S]
    assert finished_after, "nothing finished after the Hub came back"
    by_id = {t.id: t for t in summary["tasks_list"]}
    assert all(not by_id[t.id].worker.startswith("drainer-") for t in late), [by_id[t.id] for t in late]
    assert "Traceback" not in result["worker_log"], result["worker_log"][-3000:]
    report(f"outage {OUTAGE_S:.0f}s", summary, _stats(hub_process.url))


def test_a_burst_under_5xx_429_and_latency_spikes_loses_and_duplicates_nothing(hub_process, tmp_path):
    per_adder = PER_ADDER if FULL else 4
    burst = Burst(hub_process.url, tmp_path, per_adder=per_adder, pause_s=0.0)
    faults = dict(error_rate=0.2, commit_429_every=5, retry_after_s=0.5, latency_s=2.0, latency_rate=0.05, seed=11)
    _set_faults(hub_process.url, faults)
    try:
        result = burst.finish()
    finally:
        _set_faults(hub_process.url, dict(error_rate=0.0, commit_429_every=0, latency_rate=0.0))
    stats = _stats(hub_process.url)
    summary = burst.check(result)
    assert summary["errors"] == 0
    assert stats.get("fault_error", 0) > 0 and stats.get("fault_429", 0) > 0, stats
    report("5xx/429/latency", summary, stats)


def test_commits_whose_answers_are_lost_are_never_applied_twice(hub_process, tmp_path):
    per_adder = PER_ADDER if FULL else 8
    _set_faults(hub_process.url, dict(drop_after_commit_rate=0.3, paths=r"/commit/", seed=5))
    try:
        burst = Burst(hub_process.url, tmp_path, per_adder=per_adder, pause_s=0.0, worker=False)
        result = burst.finish()
    finally:
        _set_faults(hub_process.url, dict(drop_after_commit_rate=0.0, paths=None))
    stats = _stats(hub_process.url)
    summary = burst.check(result)
    assert summary["errors"] == 0
    assert stats.get("fault_dropped_after_commit", 0) >= 5, stats
    assert summary["drained"] == ADDERS * per_adder
    report("lost commit answers", summary, stats)


def report(name: str, summary: dict, stats: dict) -> None:
    """The figures RELIABILITY.md quotes (visible with `pytest -s`)."""
    shown = {k: v for k, v in summary.items() if k != "tasks_list"}
    faults = {k: v for k, v in stats.items() if k.startswith("fault") or k == "requests"}
    print(f"\nRELIABILITY {name}: {shown} {faults}")


def _set_faults(url: str, faults: dict) -> None:
    import httpx

    httpx.post(f"{url}/_emulator/faults", json=faults, timeout=10).raise_for_status()


def _stats(url: str) -> dict:
    import httpx

    return httpx.get(f"{url}/_emulator/stats", timeout=10).json()
