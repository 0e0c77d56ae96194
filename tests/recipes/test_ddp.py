"""Several devices: one process per device under `accelerate launch` (DDP), here two CPU processes
over gloo. The run trains and pushes once; a stop request reaches every rank, which stop at the
same step with a checkpoint; a callback process killed outright takes its ranks with it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from scheduler.recipes.finetune import CHECKPOINTS, last_complete_checkpoint
from tests.recipes.helpers import TIMEOUT, log_text, make_task, needs_training, run, start, stop_once_training
from tests.recipes.test_finetune import assert_classifier_works
from tests.support import wait_for

pytestmark = needs_training

DDP_RECIPE = f"{Path(__file__).with_name('ddp_recipe.py')}:train"
PARAMS = {"learning_rate": 5e-3, "batch_size": 16, "logging_steps": 10}


def ranks_of(spec_file: Path) -> list[int]:
    """Processes whose command line names this run's launch spec (the launcher and its ranks)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(spec_file).encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_two_processes_train_one_model_and_rank_zero_pushes_it(seeded_hub, tmp_path):
    hub, api, repos = seeded_hub
    task = make_task(repos["classifier"], repos["dataset"], max_steps=60, **PARAMS)
    outcome = run(hub.url, tmp_path / "work", task, DDP_RECIPE)
    assert outcome["ok"], outcome
    result = outcome["result"]
    training = result["training"]
    assert (training["processes"], training["per_device_train_batch_size"], training["gradient_accumulation_steps"],
            training["batch_size"]) == (2, 8, 1, 16)
    assert training["launcher"] == "accelerate launch (DDP, 2 processes)"
    assert result["global_step"] == 60 and result["eval_accuracy"] >= 0.9
    log = outcome["log"]
    assert "starting 2 training processes: accelerate launch (DDP)" in log
    assert log.count("Z step 60/60 loss") == 1  # rank 0 reports, rank 1 does not repeat it
    assert_classifier_works(api, result["repo_id"], tmp_path)


def test_a_stop_reaches_every_rank_and_a_killed_callback_takes_its_ranks_with_it(seeded_hub, tmp_path):
    hub, api, repos = seeded_hub
    work = tmp_path / "work"
    task = make_task(repos["classifier"], repos["dataset"], max_steps=100_000, save_steps=100_000, **PARAMS)
    checkpoints = work / "outputs" / task.id / CHECKPOINTS
    spec_file = work / "outputs" / task.id / "launch" / "spec.json"

    first = start(hub.url, work, task, DDP_RECIPE)
    outcome = stop_once_training(first)
    assert outcome["ok"], outcome
    stopped_at = outcome["result"]["global_step"]
    assert outcome["result"]["stopped"] is True and stopped_at >= 1
    assert last_complete_checkpoint(checkpoints)[1] == stopped_at  # both ranks stopped at the same step
    assert not api.repo_exists(f"demo/tiny-bert-sentiment-{task.id}")

    seen = len(log_text(first))  # the task's log goes on in the same file
    second = start(hub.url, work, task.replace(attempts=2), DDP_RECIPE)
    try:
        wait_for(lambda: "progress" in log_text(second)[seen:] or not second.running(), TIMEOUT, "training to resume")
        assert f"attempt 2: resuming from checkpoint-{stopped_at}" in log_text(second)[seen:]
        assert len(ranks_of(spec_file)) >= 3  # the launcher and two ranks
        # SIGKILL of the callback process alone, as when its worker dies with it: nobody is left to
        # end the tree, and torchrun started the ranks in sessions of their own.
        os.kill(second.popen.pid, signal.SIGKILL)
        wait_for(lambda: not ranks_of(spec_file), 30, "the ranks to exit")
    finally:
        second.finish()
    assert not api.repo_exists(f"demo/tiny-bert-sentiment-{task.id}")
