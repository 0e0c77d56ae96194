"""The executor and notifications are chosen from the CLI or the Space's variables."""

from __future__ import annotations

import argparse

import pytest

from scheduler.commands import worker_cmd
from scheduler.errors import UserError
from scheduler.executors import JobsExecutor, ProcessExecutor


def _build(tmp_path, *extra, where=("--space", "demo/scheduler")):
    parser = argparse.ArgumentParser()
    worker_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["worker", "--queue", str(tmp_path / "q"), *where,
                              "--work-dir", str(tmp_path / "work"), "--callback", "space_app/train.py:train", *extra])
    return worker_cmd.build_worker(args)


def test_the_space_executor_is_the_default_and_jobs_is_one_flag_or_variable_away(tmp_path, monkeypatch):
    monkeypatch.delenv("SCHEDULER_EXECUTOR", raising=False)
    assert isinstance(_build(tmp_path).executor, ProcessExecutor)
    local = _build(tmp_path, where=("--hardware", "local"))
    assert local.executor.name == "local" and not local.manages_hardware
    jobs = _build(tmp_path, "--executor", "jobs", "--max-concurrent-jobs", "5")
    assert isinstance(jobs.executor, JobsExecutor) and jobs.executor.capacity == 5
    monkeypatch.setenv("SCHEDULER_EXECUTOR", "jobs")
    assert isinstance(_build(tmp_path).executor, JobsExecutor)
    with pytest.raises(UserError, match="at least 1"):
        _build(tmp_path, "--max-concurrent-jobs", "0")


def test_notifications_are_wired_only_when_asked_for(tmp_path, monkeypatch):
    monkeypatch.delenv("SCHEDULER_EXECUTOR", raising=False)
    monkeypatch.delenv("SCHEDULER_NOTIFY", raising=False)
    assert _build(tmp_path).on_finish is None
    monkeypatch.setenv("SCHEDULER_NOTIFY", "model")
    assert callable(_build(tmp_path).on_finish)
