"""`space-scheduler demo --submit 3 --until-idle`: the README's command, headless, as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from .conftest import ROOT


def test_the_headless_demo_trains_three_tasks_on_one_gpu_boot_and_comes_back_to_cpu(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "scheduler", "demo", "--submit", "3", "--until-idle",
                           "--data", str(tmp_path / "hub"), "--boot-delay", "1"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "Tasks done: 3 of 3\n" in out
    assert "Hardware changes: 2\n" in out
    assert "Hardware now: cpu-basic (requested cpu-basic, stage RUNNING)" in out
    gpu = float(re.search(r"GPU seconds billed: ([\d.]+)", out).group(1))
    cost = float(re.search(r"Cost: \$([\d.]+)", out).group(1))
    assert gpu > 0 and cost > 0
    assert "Space RUNNING on t4-small" in out  # the live status line saw the GPU
    log = (tmp_path / "hub" / "spaces-logs" / "demo--space-scheduler.log").read_text()
    assert log.count("Application Startup") == 3 and "hf_demo_local_emulator_token" not in log
