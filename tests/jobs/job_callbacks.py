"""Callbacks the Jobs tests run inside emulated Jobs (loaded by file path, as users' callbacks are)."""

from __future__ import annotations

import os
import time


def sleepy(task, ctx):
    ctx.log(f"output of {task.id} from Job {os.environ.get('JOB_ID')} on {os.environ.get('ACCELERATOR')}")
    time.sleep(float(task.params.get("sleep", 0)))
    return {"job": os.environ.get("JOB_ID"), "token_seen": bool(os.environ.get("HF_TOKEN"))}


def boom(task, ctx):
    raise RuntimeError("exploded inside the Job")


def publishes(task, ctx):
    return {"repo_id": task.params["repo_id"], "accuracy": 0.9}


def slow_to_stop(task, ctx):
    """Runs until cancelled, then takes a second to clean up."""
    while not ctx.should_stop():
        time.sleep(0.05)
    ctx.log("cleaning up")
    time.sleep(1.0)
    ctx.log("cleanup done")
    return {"stopped": True}


def echoes_token(task, ctx):
    """Puts the token it was given in its log and its result."""
    token = os.environ.get("HF_TOKEN", "")
    ctx.log(f"token {token}")
    return {"echo": token, "nested": {"token": token}}
