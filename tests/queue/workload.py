"""Processes for the concurrency tests: `python workload.py add|drain ...`. Prints one JSON line."""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    role, url, endpoint, token, local_lock = sys.argv[1:6]
    from scheduler.queue import TaskQueue
    from scheduler.tasks import Task

    options = {} if url.startswith("hf://") is False else {"local_lock": local_lock == "1"}
    queue = TaskQueue.open(url, token=token or None, endpoint=endpoint or None, **options)
    if role == "add":
        index, count = int(sys.argv[6]), int(sys.argv[7])
        for i in range(count):
            queue.add(Task.new("acme/model", "acme/data", "t4-small", id=f"p{index:02d}-{i:03d}"))
        print(json.dumps({"role": role, "stats": queue.stats}))
    else:
        expected, deadline = int(sys.argv[6]), time.monotonic() + float(sys.argv[7])
        claimed: list[str] = []
        completed: list[str] = []
        worker = f"drainer-{time.time_ns()}"
        while len(completed) < expected and time.monotonic() < deadline:
            task = queue.claim(worker, lease_s=600)
            if task is None:
                time.sleep(0.05)
                continue
            claimed.append(task.id)
            queue.complete(task.id, task.lease_id, {"ok": True})
            completed.append(task.id)
        print(json.dumps({"role": role, "claimed": claimed, "completed": completed, "stats": queue.stats}))


if __name__ == "__main__":
    main()
