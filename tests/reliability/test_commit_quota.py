"""The Hub's commit quota (128 commits per hour per repository, hub-facts §11), compressed in time:
a burst that needs more commits than the window allows ends with every task run once, none lost or
left RUNNING, and the worker says what it waits for and until when."""

from __future__ import annotations

import json
from pathlib import Path

from scheduler.emulator import start_emulator
from scheduler.queue import TaskQueue
from scheduler.settings import WorkerSettings, build_worker
from scheduler.tasks import Status, Task

from ..conftest import TEST_TOKEN

CALLBACKS = Path(__file__).with_name("lifecycle_callbacks.py")
LIMIT, WINDOW_S = 8, 20.0  # 10 tasks need 13 commits (init, add, claim, 9 outcome+claim, last outcome)
OUTAGE_DEADLINE_S = 5.0  # the queue's patience with 5xx: far shorter than the quota's window


def test_a_burst_beyond_the_commit_quota_runs_every_task_once_and_says_what_it_waits_for(tmp_path):
    with start_emulator(tmp_path / "hub", boot_delay=0.2, fsync=False,
                        rules=f"commit_limit={LIMIT},commit_window_s={WINDOW_S}") as hub:
        queue = TaskQueue.open("hf://datasets/demo/queue", token=TEST_TOKEN, endpoint=hub.url,
                               unavailable_deadline_s=OUTAGE_DEADLINE_S)
        queue.init()
        trace = tmp_path / "trace.jsonl"
        tasks = queue.add_many([Task.new("demo/model", "demo/data", "t4-small",
                                         params={"seconds": 0.1, "trace": str(trace)}) for _ in range(10)])
        said: list[str] = []
        worker = build_worker(WorkerSettings(queue="-", callback=f"{CALLBACKS}:sleeps", executor="local",
                                             work_dir=str(tmp_path / "work"), poll_s=0.5, watch_s=1.0),
                              queue=queue, say=said.append)
        worker.run(until_idle=True)

        final = {t.id: t for t in queue.list()}
        assert {final[t.id].status for t in tasks} == {Status.DONE}
        assert all(final[t.id].attempts == 1 for t in tasks)
        starts = [json.loads(line)["task"] for line in trace.read_text().splitlines()
                  if json.loads(line)["event"] == "start"]
        assert sorted(starts) == sorted(t.id for t in tasks)  # each ran exactly once
        waits = [line for line in said if "waiting for the commit quota" in line]
        assert waits and "until" in waits[0], said
        assert queue.stats["quota_waits"] >= 1 and hub.stats.get("commit_quota_429", 0) >= 1
