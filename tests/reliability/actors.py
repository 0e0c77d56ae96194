"""Processes the reliability tests start, kill and restart: `python actors.py ROLE ...`.

Each prints one JSON line per operation *as it is acknowledged* (flushed), so a test that SIGKILLs
the process still knows exactly which operations were acknowledged before the kill.
Also the callbacks the worker runs in these tests (`actors.py:quick`, `actors.py:leaky`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def say(**fields) -> None:
    sys.stdout.write(json.dumps({**fields, "t": round(time.time(), 2)}) + "\n")
    sys.stdout.flush()


def _queue(url: str, endpoint: str, deadline_s: float):
    from scheduler.queue import TaskQueue

    return TaskQueue.open(url, token=os.environ.get("HF_TOKEN") or None, endpoint=endpoint or None,
                          unavailable_deadline_s=deadline_s)


def add(url: str, endpoint: str, prefix: str, count: str, pause_s: str = "0", deadline_s: str = "120") -> None:
    from scheduler.tasks import Task

    queue = _queue(url, endpoint, float(deadline_s))
    for i in range(int(count)):
        task_id = f"{prefix}-{i:04d}"
        say(op="add", id=task_id, phase="start")
        try:
            queue.add(Task.new("acme/model", "acme/data", "cpu-upgrade", id=task_id, max_attempts=3))
        except Exception as exc:  # a clear error to the caller is an allowed outcome; it must be reported
            say(op="add", id=task_id, error=f"{type(exc).__name__}: {exc}")
        else:
            say(op="add", id=task_id, ok=True)
        time.sleep(float(pause_s))
    say(op="exit", stats=queue.stats)


def drain(url: str, endpoint: str, stop_file: str, deadline_s: str = "120") -> None:
    """Claim and complete until the stop file exists and nothing is left to claim."""
    queue = _queue(url, endpoint, float(deadline_s))
    me = f"drainer-{os.getpid()}"
    while True:
        try:
            task = queue.claim(me, lease_s=120, hardware="cpu-upgrade")
        except Exception as exc:
            say(op="claim", error=f"{type(exc).__name__}: {exc}")
            continue
        if task is None:
            if Path(stop_file).exists():
                break
            time.sleep(0.1)
            continue
        say(op="claim", id=task.id, attempts=task.attempts)
        try:
            queue.complete(task.id, task.lease_id, {"by": me})
        except Exception as exc:
            say(op="complete", id=task.id, error=f"{type(exc).__name__}: {exc}")
        else:
            say(op="complete", id=task.id, ok=True)
    say(op="exit", stats=queue.stats)


def quick(task, ctx):
    """The fast callback of the outage, fault and soak runs."""
    if task.params.get("fail"):
        raise ValueError(f"asked to fail ({task.params['fail']})")
    return {"pid": os.getpid(), "n": task.params.get("n")}


def leaky(task, ctx):
    """Tries every way a callback could spill the token: log, print, stderr, progress, exception."""
    token = os.environ.get("HF_TOKEN", "")
    ctx.log(f"token {token}")
    print(f"print {token}", flush=True)
    print(f"stderr {token}", file=sys.stderr, flush=True)
    ctx.progress(0.5, f"progress {token}")
    if task.params.get("ok"):
        return {"echo": token, "nested": {"deep": [token]}}
    raise PermissionError(f"refused with {token} (Authorization: Bearer {token})")


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    {"add": add, "drain": drain}[role](*args)
