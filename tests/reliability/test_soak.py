"""Soak: a stream of tasks through the worker against a faulty Hub; every task ends DONE or FAILED with a
reason, tasks.csv stays small thanks to `archive`, and the worker's memory stays flat."""

from __future__ import annotations

import importlib.util

import pytest

from .conftest import FULL, ROOT

TASKS = 1000 if FULL else 100


def _soak_module():
    spec = importlib.util.spec_from_file_location("bench_soak", ROOT / "bench" / "soak.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_a_stream_of_tasks_through_a_worker_under_faults_all_finish_with_a_small_queue_file_and_flat_memory(tmp_path):
    result = _soak_module().soak(TASKS, tmp_path, timeout_s=1800)
    print(f"\nRELIABILITY soak: {result}")
    assert result["seen"] == result["unique"] == TASKS
    assert result["done"] + result["failed"] == TASKS and result["other"] == 0
    assert result["failed"] == TASKS // 10 and result["failed_without_reason"] == 0
    assert result["run_twice"] == 0
    assert result["worker_alive"]
    # Pending work is fed ten at a time and finished rows archived every few seconds: the file never
    # holds more than a few dozen rows, however many tasks went through.
    assert result["max_rows"] <= 60, result
    assert result["rss_kib_last"] - result["rss_kib_warm"] < 30 * 1024, result
    assert sum(v for k, v in result["faults"].items() if k.startswith("fault_")) > 0
