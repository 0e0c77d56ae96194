"""`space-scheduler demo --submit 3 --until-idle`: the README's command, headless, as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from scheduler.commands import demo_cmd
from scheduler.emulator.storage import RepoStore
from scheduler.errors import UserError
from tests.recipes.helpers import needs_training

from .conftest import ROOT


def run_demo(tmp_path, *extra: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "scheduler", "demo", "--submit", "3", "--until-idle",
                           "--data", str(tmp_path / "hub"), "--boot-delay", "1", *extra],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
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
    return out


def test_the_headless_demo_trains_three_tasks_on_one_gpu_boot_and_comes_back_to_cpu(tmp_path):
    out = run_demo(tmp_path, "--recipe", "numpy")
    assert "(numpy recipe)" in out
    assert len(re.findall(r" DONE +demo/tiny-classifier: loss [\d.]+; pushed to demo/tiny-classifier-finetuned-", out)) == 3


@needs_training
def test_the_demo_runs_the_transformers_recipe_on_tiny_models_it_makes(tmp_path):
    out = run_demo(tmp_path)  # auto: the training extra is installed, so the real recipe
    assert "Tiny random-initialised models made here: demo/tiny-bert-sentiment, demo/tiny-gpt2" in out
    assert "(transformers recipe)" in out
    moves = re.findall(r" DONE +(demo/tiny-[\w-]+): eval loss ([\d.]+) -> ([\d.]+)(?:, accuracy ([\d.]+))?; "
                       r"pushed to (demo/[\w-]+)", out)
    assert [m[0] for m in moves] == ["demo/tiny-bert-sentiment", "demo/tiny-gpt2", "demo/tiny-bert-sentiment"], out
    for model, before, after, accuracy, pushed in moves:
        assert float(after) < float(before), (model, before, after)
        assert pushed.startswith(model + "-")
        if accuracy:
            assert float(accuracy) >= 0.9, (model, accuracy)
    # The emulator keeps its repos on disk: the pushed ones hold weights, a tokenizer and a card.
    store = RepoStore(tmp_path / "hub")
    for model, *_, pushed in moves:
        files = set(store.load_commit("model", pushed, store.refs("model", pushed)["main"]).tree)
        weights = "adapter_model.safetensors" if model.endswith("gpt2") else "model.safetensors"
        assert {weights, "tokenizer.json", "README.md"} <= files, (pushed, files)

def test_auto_falls_back_to_numpy_without_the_training_extra(monkeypatch):
    real = demo_cmd.importlib.util.find_spec
    monkeypatch.setattr(demo_cmd.importlib.util, "find_spec",
                        lambda name, *a: None if name == "peft" else real(name, *a))
    assert demo_cmd.missing_training_stack() == ["peft"]
    assert demo_cmd.choose_recipe("auto") == "numpy"
    assert demo_cmd.choose_recipe("numpy") == "numpy"
    with pytest.raises(UserError, match="--recipe transformers needs peft: pip install 'space-scheduler\\[train\\]'"):
        demo_cmd.choose_recipe("transformers")
