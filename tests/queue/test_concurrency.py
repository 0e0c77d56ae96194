"""Many OS processes on one queue: nothing lost, nothing duplicated, every claim completed once."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scheduler.queue import TaskQueue
from scheduler.tasks import Status

from .conftest import TOKEN, make_hub_queue_url

WORKLOAD = str(Path(__file__).with_name("workload.py"))
ADDERS, PER_ADDER = 16, 25
# Under faults every refused preupload costs a client-side 1 s backoff, so CI runs that case with fewer
# tasks per process; SCHEDULER_STRESS=full runs it at full size (see BENCHMARKS.md).
FULL = os.environ.get("SCHEDULER_STRESS") == "full"
FAULTY_PER_ADDER = PER_ADDER if FULL else 6
# ...and with half the processes: 8 writers racing already make the compare-and-swap refuse commits.
FAULTY_ADDERS = ADDERS if FULL else 8


def _spawn(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
    return subprocess.Popen([sys.executable, WORKLOAD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def _run_workload(url: str, endpoint: str = "", per_adder: int = PER_ADDER,
                  n_adders: int = ADDERS) -> tuple[list[dict], dict]:
    total = n_adders * per_adder
    common = [url, endpoint, TOKEN if endpoint else "", "0"]
    drainer = _spawn("drain", *common, str(total), "900")
    adders = [_spawn("add", *common, str(i), str(per_adder)) for i in range(n_adders)]
    results = []
    for proc in adders + [drainer]:
        out, err = proc.communicate(timeout=1000)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results[:-1], results[-1]


@pytest.fixture(autouse=True)
def _without_quotas(request):
    """16 writers adding and draining 400 tasks in seconds: far past the Hub's 128 commits an hour and
    its requests per 5 minutes (the quotas have their own tests in tests/emulator/test_quotas.py)."""
    if "hub_emulator" not in request.fixturenames:
        yield
        return
    emulator = request.getfixturevalue("hub_emulator")
    emulator.set_rules("quota=off")
    yield
    emulator.set_rules("quota=on")


def _check(queue: TaskQueue, drain: dict, per_adder: int = PER_ADDER, n_adders: int = ADDERS) -> None:
    total = n_adders * per_adder
    tasks = queue.list()
    ids = [t.id for t in tasks]
    assert len(ids) == total and len(set(ids)) == total
    assert set(ids) == {f"p{i:02d}-{j:03d}" for i in range(n_adders) for j in range(per_adder)}
    odd = [(t.id, t.status.value, t.attempts, t.error) for t in tasks if t.status is not Status.DONE or t.attempts != 1]
    assert not odd, (len(odd), odd[:5], drain["stats"])
    claimed = collections.Counter(drain["claimed"])
    assert sorted(claimed) == sorted(ids) and max(claimed.values()) == 1
    assert drain["completed"] == drain["claimed"]


@pytest.mark.slow
def test_sixteen_processes_adding_through_the_hub_while_one_drains_lose_and_duplicate_nothing(hub_emulator):
    url = make_hub_queue_url(hub_emulator)
    adders, drain = _run_workload(url, hub_emulator.url)
    _check(TaskQueue.open(url, token=TOKEN, endpoint=hub_emulator.url), drain)
    # Without the local lock the processes really race: compare-and-swap had to refuse some commits.
    assert sum(a["stats"]["conflicts"] for a in adders) + drain["stats"]["conflicts"] > 0


@pytest.mark.slow
def test_the_same_under_5xx_and_429_faults(hub_emulator):
    url = make_hub_queue_url(hub_emulator)
    hub_emulator.set_faults(error_rate=0.10, commit_429_every=5, retry_after_s=0.2, seed=7)
    try:
        adders, drain = _run_workload(url, hub_emulator.url, FAULTY_PER_ADDER, FAULTY_ADDERS)
        stats = hub_emulator.stats
    finally:
        hub_emulator.set_faults(error_rate=0.0, commit_429_every=0)
    _check(TaskQueue.open(url, token=TOKEN, endpoint=hub_emulator.url), drain, FAULTY_PER_ADDER, FAULTY_ADDERS)
    assert stats, "the emulator reported no fault statistics"
    injected = {k: v for k, v in stats.items() if v}
    assert injected.get("fault_429") and injected.get("fault_error"), injected


@pytest.mark.slow
def test_sixteen_processes_on_a_folder_queue_lose_and_duplicate_nothing(tmp_path):
    folder = str(tmp_path / "queue")
    adders, drain = _run_workload(folder)
    _check(TaskQueue.open(folder), drain)
