"""Callbacks the worker tests run, loaded by file path as users' callbacks are."""

from __future__ import annotations

import os
import sys
import time


def ok(task, ctx):
    steps = int(task.params.get("steps", 2))
    for i in range(steps):
        if ctx.should_stop():
            return {"stopped_at": i}
        ctx.progress((i + 1) / steps, f"step {i + 1}/{steps}")
        time.sleep(float(task.params.get("sleep", 0.05)))
    ctx.log(f"trained {task.model_id} on {task.dataset_id}")
    return {"steps": steps, "attempt": task.attempts, "hardware": os.environ.get("SPACE_HARDWARE")}


def boom(task, ctx):
    ctx.log("about to fail")
    raise RuntimeError(f"exploded on purpose (attempt {task.attempts})")


def flaky(task, ctx):
    if task.attempts < 2:
        raise ConnectionError("the dataset server hung up")
    return {"recovered_on_attempt": task.attempts}


def stubborn(task, ctx):
    """Ignores should_stop() and every deadline."""
    ctx.log("never stopping")
    while True:
        time.sleep(0.1)


def leaky(task, ctx):
    token = os.environ.get("HF_TOKEN", "")
    ctx.log(f"my token is {token}")
    print(f"printing the token {token}", flush=True)
    print(f"and on stderr {token}", file=sys.stderr, flush=True)
    ctx.progress(0.5, f"halfway with {token}")
    raise PermissionError(f"denied for token {token}")


def by_param(task, ctx):
    """Dispatch on params.kind so one worker can run a mixed queue."""
    return globals()[task.params.get("kind", "ok")](task, ctx)


def crash_worker(task, ctx):
    """Kills the worker itself, like the OOM killer taking down the whole container."""
    import signal

    if task.attempts < 2:
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(30)
    return {"survived_on_attempt": task.attempts}


def crash_always(task, ctx):
    import signal

    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(30)
