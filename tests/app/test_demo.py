"""`space-scheduler demo`: headless (`--submit 3 --until-idle`, the README's command) and
interactive (stopped with Ctrl-C), as a user runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scheduler.commands import demo_cmd
from scheduler.emulator.storage import RepoStore
from scheduler.errors import UserError
from tests.recipes.helpers import needs_training

from .conftest import ROOT, sigint_restored


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
    gpu = float(re.search(r"Time on paid hardware: ([\d.]+)s, billed as (\d+) started minute", out).group(1))
    minutes = int(re.search(r"billed as (\d+) started minute", out).group(1))
    billed = float(re.search(r"Billed: \$([\d.]+)", out).group(1))
    # One boot onto t4-small for the burst: every started minute at $0.40/h.
    assert gpu > 0 and minutes >= gpu / 60 and billed == pytest.approx(minutes * 0.40 / 60, abs=1e-4)
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
    # As if every package of the extra but peft were installed, whatever this machine has.
    monkeypatch.setattr(demo_cmd.importlib.util, "find_spec", lambda name, *a: None if name == "peft" else object())
    assert demo_cmd.missing_training_stack() == ["peft"]
    assert demo_cmd.choose_recipe("auto") == "numpy"
    assert demo_cmd.choose_recipe("numpy") == "numpy"
    with pytest.raises(UserError, match="--recipe transformers needs peft: pip install 'space-scheduler\\[train\\]'"):
        demo_cmd.choose_recipe("transformers")


def _processes_with(marker: bytes) -> set[int]:
    """Processes whose environment holds `marker` (every child of one demo has its Hub's address)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.add(int(entry.name))
            except OSError:  # gone, or not ours to read
                continue
    return found


def start_interactive_demo(tmp_path) -> tuple[subprocess.Popen, list[str], Path]:
    """`space-scheduler demo` without --data, its temporary folder under tmp_path; returns once it
    printed "Open it", with what it printed and its temporary folder."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(temp)}
    proc = subprocess.Popen([sys.executable, "-m", "scheduler", "demo", "--boot-delay", "1", "--recipe", "numpy"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=sigint_restored)
    out: list[str] = []
    while not out or not out[-1].startswith("Open it"):
        line = proc.stdout.readline()
        if not line:
            proc.kill()
            raise AssertionError("the demo ended early:\n" + "".join(out))
        out.append(line)
    [data] = list(temp.iterdir())
    return proc, out, data


def stop(proc: subprocess.Popen, signum: int, children: set[int], marker: bytes) -> float:
    """Send `signum`; seconds until the demo and `children` are gone (SIGKILL after 30 s)."""
    from tests.support import wait_for

    proc.send_signal(signum)
    sent = time.monotonic()
    try:
        proc.wait(timeout=30)
        wait_for(lambda: not (_processes_with(marker) & children), 30, "the children to end", every=0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return time.monotonic() - sent


def test_ctrl_c_stops_the_demo_and_a_training_child_within_5s_and_removes_its_temp_folder(tmp_path):
    """The interactive demo: every URL it prints answers; Ctrl-C while a task trains ends the demo,
    the Space's app and the training process within 5 s, and the temporary folder goes with them."""
    import httpx

    from scheduler.queue import TaskQueue
    from scheduler.tasks import Status, Task
    from tests.support import wait_for

    proc, out, data = start_interactive_demo(tmp_path)
    try:
        urls = re.findall(r"https?://[^\s)]+", "".join(out))
        assert len(urls) >= 2 and all(httpx.get(u, timeout=10).status_code == 200 for u in urls), urls
        hub = re.search(r"(http://127\.0\.0\.1:\d+)/_emulator", "".join(out)).group(1)
        queue = TaskQueue.open("hf://datasets/demo/tasks", token=demo_cmd.DEMO_TOKEN, endpoint=hub)
        task = queue.add(Task.new("demo/tiny-classifier", "demo/reviews-mini", "t4-small",
                                  params={"epochs": 100000, "batch_size": 1}, submitted_by="demo"))
        wait_for(lambda: queue.get(task.id).status is Status.RUNNING, 120, "the task to run", every=0.5)
        marker = f"HF_ENDPOINT={hub}".encode()

        def app_and_training() -> set[int] | None:
            pids = _processes_with(marker)
            return pids if len(pids) >= 2 else None

        children = wait_for(app_and_training, 60, "the app and its training process")
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    took = stop(proc, signal.SIGINT, children, marker)
    out.append(proc.stdout.read())
    assert proc.returncode == 0, "".join(out)
    assert took <= 5.0, f"Ctrl-C took {took:.1f}s to stop the demo and its children"
    assert not data.exists() and list(data.parent.iterdir()) == []


def test_sigterm_stops_the_demo_the_same_way(tmp_path):
    proc, out, data = start_interactive_demo(tmp_path)
    hub = re.search(r"(http://127\.0\.0\.1:\d+)/_emulator", "".join(out)).group(1)
    marker = f"HF_ENDPOINT={hub}".encode()
    children = _processes_with(marker)
    assert children  # the Space's app
    took = stop(proc, signal.SIGTERM, children, marker)
    out.append(proc.stdout.read())
    assert proc.returncode == 0 and "Stopping:" in out[-1], "".join(out)
    assert took <= 5.0 and not data.exists()
