"""`space-scheduler demo`: the whole loop offline, on the embedded Hub emulator."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

DEMO_USER = "demo"
DEMO_TOKEN = "hf_demo_local_emulator_token"  # the emulator's own; never a real Hub token
EXAMPLES = [
    ("demo/tiny-classifier", "demo/sentiment-mini", "t4-small", {"epochs": 3}),
    ("demo/tiny-classifier", "demo/sentiment-mini", "t4-small", {"epochs": 5, "learning_rate": 0.5}),
    ("demo/tiny-classifier", "demo/topics-mini", "a10g-small", {"epochs": 2}),
]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the scheduler end to end on the offline Hub emulator")
    p.add_argument("--data", default=None, help="emulator data folder (default: a temporary folder)")
    p.add_argument("--submit", type=int, default=3, metavar="N", help="example tasks to submit (default 3)")
    p.set_defaults(handler=cmd_demo)


def cmd_demo(args) -> int:
    from ..emulator.server import start_emulator
    from ..queue import TaskQueue
    from ..tasks import Task

    data = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="space-scheduler-demo-"))
    with start_emulator(data, boot_delay=0.5) as hub:
        print(f"Hub emulator: {hub.url} (data in {data})")
        url = f"hf://datasets/{DEMO_USER}/tasks"
        queue = TaskQueue.open(url, token=DEMO_TOKEN, endpoint=hub.url)
        queue.init()
        print(f"Queue: {url}")
        tasks = [Task.new(m, d, h, params=p, submitted_by=DEMO_USER) for m, d, h, p in
                 (EXAMPLES * (args.submit // len(EXAMPLES) + 1))[: args.submit]]
        queue.add_many(tasks)
        print(f"Submitted {len(tasks)} task(s) in one commit")
        worker = f"demo-worker/{os.getpid()}"
        start = time.monotonic()
        while (task := queue.claim(worker, lease_s=60)) is not None:
            began = time.monotonic()
            queue.heartbeat(task.id, worker, 60)
            queue.complete(task.id, worker, {"echo": task.params}, gpu_seconds=round(time.monotonic() - began, 3))
            print(f"  {task.id}  {task.hardware:<10}  {task.model_id} on {task.dataset_id}: DONE")
        counts = queue.counts()
        print(f"Done in {time.monotonic() - start:.1f}s: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
        return 0 if counts["DONE"] == len(tasks) else 1
