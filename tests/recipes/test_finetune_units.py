"""The recipe's helpers that need no model: checkpoints and the name of the pushed repo."""

from __future__ import annotations

import json

from scheduler.recipes.finetune import last_complete_checkpoint, output_repo_name


def test_last_complete_checkpoint_skips_one_cut_short(tmp_path):
    assert last_complete_checkpoint(tmp_path / "missing") is None
    for step in (10, 20):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (tmp_path / "checkpoint-30").mkdir()  # killed before its trainer state was written
    torn = tmp_path / "checkpoint-40"
    torn.mkdir()
    (torn / "trainer_state.json").write_text('{"global_st')
    (tmp_path / "checkpoint-9.tmp").mkdir()
    assert last_complete_checkpoint(tmp_path) == (tmp_path / "checkpoint-20", 20)


def test_output_repo_is_named_after_model_and_task():
    assert output_repo_name("acme/bert base", "01ABC") == "bert-base-01ABC"
    assert len(output_repo_name("a/" + "x" * 200, "01ABC")) == 96
