"""Callbacks for the exactly-once tests, loaded by file path as users' callbacks are.

Each appends a JSON line per event to the file named by `params.trace`, so a test counts runs and
sees their times; those that start processes write each pid to `params.pids`."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import threading
import time

LOOP = "import time\nwhile True:\n    time.sleep(0.1)"


def _trace(task, event: str, **extra) -> None:
    line = {"task": task.id, "attempt": task.attempts, "event": event, "t": time.time(),
            "who": os.environ.get("WHO", ""), **extra}
    with open(task.params["trace"], "a") as f:
        f.write(json.dumps(line) + "\n")


def _pid(task, pid: int) -> None:
    with open(task.params["pids"], "a") as f:
        f.write(f"{pid}\n")


def returns(task, ctx):
    """Returns the value named by params.value: every kind of value tasks.csv cannot hold as is."""
    import numpy

    _trace(task, "start")
    values = {
        "nan": {"loss": float("nan"), "accuracy": 0.5},
        "inf": {"loss": float("inf")},
        "-inf": {"grad_norm": float("-inf")},
        "nested": {"history": [0.9, float("nan")], "eval": {"loss": float("inf"), "ok": True}},
        "numpy": {"loss": numpy.float32("nan"), "steps": numpy.int64(3), "weights": numpy.array([1.5, 2.5])},
        "objects": {"when": datetime.datetime(2026, 1, 1), "pair": (1, 2)},
        "oversized": {"blob": "x" * 100_000},
    }
    return values[task.params["value"]]


def sleeps(task, ctx):
    """Sleeps params.seconds, checking should_stop(); returns who ran it."""
    _trace(task, "start")
    end = time.monotonic() + float(task.params.get("seconds", 1))
    while time.monotonic() < end:
        if ctx.should_stop():
            _trace(task, "stopped")
            return {"stopped": True}
        time.sleep(0.05)
    _trace(task, "end")
    return {"who": os.environ.get("WHO", "")}


def echoes_token(task, ctx):
    """Puts the token it was given in its result, its log and an error message."""
    token = os.environ.get("HF_TOKEN", "")
    ctx.log(f"token {token}")
    return {"echo": token, "nested": {"token": token}}


# ---------------------------------------------------------------- processes that outlive their parent


def spawns(task, ctx):
    """Starts processes the way training launchers and careless callbacks do (params.how), then
    ignores should_stop() (a launcher waiting for its workers) or returns at once (params.returns)."""
    _trace(task, "start")
    how = task.params["how"]
    if how == "child":  # torchrun / accelerate launch / subprocess.run of a training script
        proc = subprocess.Popen([sys.executable, "-c", LOOP])
        _pid(task, proc.pid)
    elif how == "setsid":  # a daemon that left the process group
        proc = subprocess.Popen([sys.executable, "-c", LOOP], start_new_session=True)
        _pid(task, proc.pid)
    elif how == "double-fork":  # the classic daemon: fork, setsid, fork, parent exits
        read, write = os.pipe()
        if os.fork() == 0:
            os.setsid()
            pid = os.fork()
            if pid == 0:
                os.close(read)
                os.execv(sys.executable, [sys.executable, "-c", LOOP])
            os.write(write, str(pid).encode())
            os._exit(0)
        os.close(write)
        _pid(task, int(os.read(read, 32).decode()))
    elif how == "thread":  # a non-daemon thread left behind: the interpreter would wait for it
        threading.Thread(target=time.sleep, args=(120,)).start()
    if task.params.get("returns"):
        return {"returned": True}
    while True:
        time.sleep(0.1)
