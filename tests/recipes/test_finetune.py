"""The fine-tuning recipe end to end on the emulator, with the tiny random-initialised repos:
it trains (the loss falls), pushes a repo that loads back and predicts, resumes after a SIGKILL,
stops when asked, and refuses malformed datasets naming the column."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import wait_for

from scheduler.recipes.finetune import CHECKPOINTS, last_complete_checkpoint
from scheduler.recipes.tiny import make_rows, upload_dataset_csv
from tests.recipes.helpers import TIMEOUT, finish, make_task, needs_training, run, start, stop_once_training

pytestmark = needs_training

SLOW_RECIPE = f"{Path(__file__).with_name('slow_recipe.py')}:train"
SPACE_APP = Path(__file__).resolve().parents[2] / "space_app"
# Chosen so that the tiny classifier reaches ~100% accuracy in ~3 s of CPU training.
CLASSIFIER_PARAMS = {"learning_rate": 5e-3, "max_steps": 120, "batch_size": 16, "logging_steps": 10}


def load_back(api, repo_id: str, tmp_path: Path, cls_name: str):
    import transformers

    folder = api.snapshot_download(repo_id, local_dir=tmp_path / repo_id.replace("/", "--"))
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    return getattr(transformers, cls_name).from_pretrained(folder).eval(), tokenizer, Path(folder)


def classify(model, tokenizer, texts: list[str]) -> list[str]:
    import torch

    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    return [model.config.id2label[int(i)] for i in logits.argmax(-1)]


def assert_classifier_works(api, repo_id: str, tmp_path: Path) -> Path:
    files = set(api.list_repo_files(repo_id))
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md"} <= files
    model, tokenizer, folder = load_back(api, repo_id, tmp_path, "AutoModelForSequenceClassification")
    texts = ["the acting was truly superb", "the ending was rather dreadful",
             "this movie was very charming overall", "the script was simply tedious"]
    assert classify(model, tokenizer, texts) == ["positive", "negative", "positive", "negative"]
    return folder


def test_classifier_fine_tunes_pushes_and_loads_back(seeded_hub, tmp_path):
    hub, api, repos = seeded_hub
    task = make_task(repos["classifier"], repos["dataset"], recipe="transformers", **CLASSIFIER_PARAMS)
    # The Space's default callback hands the task over to the recipe.
    outcome = run(hub.url, tmp_path / "work", task, f"{SPACE_APP / 'train.py'}:train")
    assert outcome["ok"], outcome
    result = outcome["result"]
    assert result["task"] == "text-classification"  # read from the config's architectures
    assert result["global_step"] == 120 and result["resumed_from_step"] == 0
    assert result["last_logged_loss"] < result["first_logged_loss"] / 5
    assert result["eval_loss"] < result["initial_eval_loss"] / 5
    assert result["eval_accuracy"] >= 0.9
    assert result["repo_id"] == f"demo/tiny-bert-sentiment-{task.id}"
    assert "step 120/120 loss" in outcome["log"] and "progress 100%" in outcome["log"]
    progress = json.loads((tmp_path / "work" / "progress" / f"{task.id}.json").read_text())
    assert progress["fraction"] == 1.0

    folder = assert_classifier_works(api, result["repo_id"], tmp_path)
    card = (folder / "README.md").read_text()
    for expected in (f"base_model: {repos['classifier']}", f"- {repos['dataset']}", task.id,
                     "| learning_rate | `0.005` |", f"| eval_loss | {result['eval_loss']} |"):
        assert expected in card
    info = api.model_info(result["repo_id"])
    assert info.private


def test_causal_lm_with_lora_pushes_an_adapter_that_loads(seeded_hub, tmp_path):
    import torch
    from peft import PeftModel

    hub, api, repos = seeded_hub
    task = make_task(repos["causal_lm"], repos["dataset"], learning_rate=2e-2, max_steps=60,
                     batch_size=16, logging_steps=10, lora={"r": 8})
    outcome = run(hub.url, tmp_path / "work", task, f"{SPACE_APP / 'train_transformers.py'}:train")
    assert outcome["ok"], outcome
    result = outcome["result"]
    assert result["task"] == "causal-lm"
    assert result["eval_loss"] < result["initial_eval_loss"] - 0.1  # 3.69 -> 3.42 here; LoRA on attention only
    assert "LoRA r=8" in outcome["log"]
    files = set(api.list_repo_files(result["repo_id"]))
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md"} <= files
    assert "model.safetensors" not in files

    base, tokenizer, _ = load_back(api, repos["causal_lm"], tmp_path, "AutoModelForCausalLM")
    adapter = api.snapshot_download(result["repo_id"], local_dir=tmp_path / "adapter")
    model = PeftModel.from_pretrained(base, adapter).eval()
    prompt = tokenizer("the film was", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] > prompt["input_ids"].shape[1]
    assert "library_name: peft" in (Path(adapter) / "README.md").read_text()


def test_sigkilled_run_resumes_from_its_checkpoint(seeded_hub, tmp_path, monkeypatch):
    hub, api, repos = seeded_hub
    work = tmp_path / "work"
    task = make_task(repos["classifier"], repos["dataset"], save_steps=20, **CLASSIFIER_PARAMS)
    checkpoints = work / "outputs" / task.id / CHECKPOINTS

    # Held after step 25: past checkpoint-20, with 5 steps that the kill loses.
    monkeypatch.setenv("RECIPE_TEST_HOLD_AT_STEP", "25")
    first = start(hub.url, work, task, SLOW_RECIPE)
    try:
        wait_for(lambda: last_complete_checkpoint(checkpoints) or not first.running(), TIMEOUT, "a checkpoint")
        first.kill()  # SIGKILL: no chance to clean up or push
    finally:
        killed = first.finish()
    assert not killed.ok and "SIGKILL" in killed.error, killed
    assert last_complete_checkpoint(checkpoints)[1] == 20
    assert not api.repo_exists(f"demo/tiny-bert-sentiment-{task.id}")

    monkeypatch.delenv("RECIPE_TEST_HOLD_AT_STEP")
    outcome = run(hub.url, work, task.replace(attempts=2))
    assert outcome["ok"], outcome
    result = outcome["result"]
    assert "attempt 2: resuming from checkpoint-20" in outcome["log"]
    assert result["resumed_from_step"] == 20
    assert result["steps_this_attempt"] == 100 and result["global_step"] == 120
    assert result["eval_accuracy"] >= 0.9
    assert_classifier_works(api, result["repo_id"], tmp_path)


def test_stop_request_ends_training_with_a_checkpoint_and_no_push(seeded_hub, tmp_path, monkeypatch):
    hub, api, repos = seeded_hub
    work = tmp_path / "work"
    task = make_task(repos["classifier"], repos["dataset"], **CLASSIFIER_PARAMS)  # save_steps 200: none by schedule
    monkeypatch.setenv("RECIPE_TEST_HOLD_AT_STEP", "10")
    outcome = stop_once_training(start(hub.url, work, task, SLOW_RECIPE))
    assert outcome["ok"], outcome
    result = outcome["result"]
    assert result["stopped"] is True and 1 <= result["global_step"] <= 11
    assert last_complete_checkpoint(work / "outputs" / task.id / CHECKPOINTS)[1] == result["global_step"]
    assert "repo_id" not in result and not api.repo_exists(f"demo/tiny-bert-sentiment-{task.id}")


def test_malformed_datasets_fail_naming_the_column(seeded_hub, tmp_path):
    hub, api, repos = seeded_hub
    rows = make_rows(40)
    no_text = upload_dataset_csv(api, "demo/reviews-no-text", [{"phrase": r["text"], "label": r["label"]} for r in rows])
    new_label = upload_dataset_csv(api, "demo/reviews-neutral", rows + [{"text": "the film was fine", "label": "neutral"}])
    # Both at once: each spends most of its time importing torch.
    runs = [start(hub.url, tmp_path / "a", make_task(repos["classifier"], no_text)),
            start(hub.url, tmp_path / "b", make_task(repos["classifier"], new_label))]
    missing_text, unknown_label = (finish(p) for p in runs)
    assert not missing_text["ok"]
    assert "DatasetError" in missing_text["error"]
    assert "has no text column (params.text_column, looked for text, sentence" in missing_text["error"]
    assert "its columns are: phrase, label" in missing_text["error"]
    assert not unknown_label["ok"]
    assert "column 'label'" in unknown_label["error"] and "'neutral'" in unknown_label["error"]
    assert "labels not in demo/tiny-bert-sentiment's config" in unknown_label["error"]
