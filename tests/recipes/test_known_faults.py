"""The recipe's known faults, each as its whole kind, and the failures that must not be retried.

All scenarios run in one child process on one emulator (see runner.py); each test asserts on one.
"""

from __future__ import annotations

import pytest

from tests.recipes.helpers import needs_training
from tests.recipes.scenarios import csv_dataset, review_rows, run_scenarios

pytestmark = needs_training

STEPS = {"recipe": "transformers", "max_steps": 6, "learning_rate": 2e-2, "batch_size": 8, "logging_steps": 2}
TWO = ("neg", "pos")


def long_reviews() -> list[dict]:
    rows = review_rows(60, TWO)
    rows[3]["text"] = " ".join(["the film was really wonderful"] * 400)  # ~2,000 words
    return rows


SPEC = {
    "models": [
        {"repo": "demo/tiny-llama3", "family": "llama", "config": {"eos_token_id": [2, 3]}},
        {"repo": "demo/tiny-phi3", "family": "phi3"},
        {"repo": "demo/tiny-bert", "family": "bert"},
        {"repo": "demo/tiny-bert-pretraining", "family": "bert", "model_class": "BertForPreTraining"},
        {"repo": "demo/tiny-bert-128", "family": "bert", "positions": 128, "tokenizer_max_length": None},
        {"repo": "demo/tiny-roberta", "family": "roberta", "tokenizer_max_length": None},
        {"repo": "demo/tiny-gpt2", "family": "gpt2"},
        {"repo": "demo/tiny-gpt2-fp16", "family": "gpt2", "dtype": "float16"},
    ],
    "datasets": [
        csv_dataset("demo/reviews-2", review_rows(60, TWO), review_rows(8, TWO, seed=1)),
        {"repo": "demo/reviews-parquet", "files": {"data/train-00000-of-00001.parquet": {
            "format": "parquet",
            "rows": [{"review": r["text"], "labels": int(r["label"] == "pos")} for r in review_rows(120, TWO)]}}},
        csv_dataset("demo/texts", [{"text": r["text"]} for r in review_rows(60)],
                    [{"text": r["text"]} for r in review_rows(8, seed=1)], fmt="jsonl"),
        csv_dataset("demo/reviews-long", long_reviews()),
    ],
    "scenarios": [
        # a Llama-3 config whose eos_token_id is a list (its classification and LoRA runs are in the matrix)
        {"id": "llama3-full-causal-lm", "model": "demo/tiny-llama3", "dataset": "demo/reviews-2",
         "params": STEPS, "reload": True},
        # LoRA targets that fit the architecture, or an error naming our param
        {"id": "phi3-wrong-targets", "model": "demo/tiny-phi3", "dataset": "demo/texts",
         "params": {**STEPS, "lora": {"target_modules": ["q_proj", "v_proj"]}}},
        {"id": "phi3-fused-qkv", "model": "demo/tiny-phi3", "dataset": "demo/texts",
         "params": {**STEPS, "lora": {"target_modules": ["qkv_proj"]}}, "reload": True},
        # a LoRA classifier from a checkpoint with a pooler, two labels: names and config come back
        {"id": "bert-pretraining-lora-classifier", "model": "demo/tiny-bert-pretraining",
         "dataset": "demo/reviews-2", "params": {**STEPS, "lora": True}, "reload": True},
        # an encoder is a classifier, whatever its label column is called, or the error names it
        {"id": "encoder-labels-column", "model": "demo/tiny-bert", "dataset": "demo/reviews-parquet",
         "params": {**STEPS, "text_column": "review"}},
        {"id": "encoder-columns-detected", "model": "demo/tiny-bert", "dataset": "demo/reviews-parquet",
         "params": STEPS},
        {"id": "encoder-text-only", "model": "demo/tiny-bert", "dataset": "demo/texts", "params": STEPS},
        {"id": "encoder-as-causal-lm", "model": "demo/tiny-bert", "dataset": "demo/reviews-2",
         "params": {**STEPS, "task": "causal-lm"}},
        # an fp16 checkpoint trains in fp32 master weights; a run that diverges pushes nothing
        {"id": "fp16-checkpoint", "model": "demo/tiny-gpt2-fp16", "dataset": "demo/texts",
         "params": {**STEPS, "learning_rate": 2e-4, "max_steps": 20}, "reload": True},
        {"id": "diverges", "model": "demo/tiny-gpt2", "dataset": "demo/texts",
         "params": {**STEPS, "learning_rate": 1e30}},
        # max_length capped by the positions when the tokenizer has no model_max_length
        {"id": "long-text-bert-128-positions", "model": "demo/tiny-bert-128", "dataset": "demo/reviews-long",
         "params": {**STEPS, "max_steps": 4}},
        {"id": "long-text-roberta-offset-positions", "model": "demo/tiny-roberta", "dataset": "demo/reviews-long",
         "params": {**STEPS, "max_steps": 4}},
        # params are applied or refused
        {"id": "unknown-params", "model": "demo/tiny-bert", "dataset": "demo/reviews-2",
         "params": {**STEPS, "bf16": True, "gradient_checkpointing": True, "optim": "adafactor",
                    "per_device_train_batch_size": 2, "lr": 0.1}},
        {"id": "gpu-params-applied", "model": "demo/tiny-bert", "dataset": "demo/reviews-2",
         "params": {**STEPS, "max_steps": 3, "bf16": True, "gradient_checkpointing": True, "optim": "adafactor",
                    "per_device_train_batch_size": 2}},
        # failures that would repeat on every attempt
        {"id": "missing-model", "model": "demo/no-such-model", "dataset": "demo/reviews-2", "params": STEPS},
        {"id": "missing-dataset", "model": "demo/tiny-bert", "dataset": "demo/no-such-data", "params": STEPS},
        {"id": "out-of-memory", "model": "demo/tiny-bert", "dataset": "demo/reviews-2", "params": STEPS,
         "device": {"kind": "cpu", "name": "a 100 kB CPU", "memory_bytes": 10 ** 5}},
    ],
}


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    results, seconds = run_scenarios(tmp_path_factory.mktemp("faults"), SPEC)
    print(f"known faults: {len(SPEC['scenarios'])} scenarios in {seconds:.0f} s")
    return results


def done(faults, name: str) -> dict:
    out = faults[name]
    assert out["ok"], f"{out['error_type']}: {out['error']}\n{out['traceback']}\n{out['log'][-2000:]}"
    assert out["pushed"], out
    reload = out.get("reload", {})
    assert "error" not in reload, reload.get("error")
    if reload:
        assert reload["same_on_second_load"] and reload["finite"]
        assert reload["eval_loss"] == pytest.approx(out["result"]["eval_loss"], abs=2e-5)
    return out


def refused(faults, name: str, error_type: str) -> dict:
    out = faults[name]
    assert not out["ok"], out.get("result")
    assert out["error_type"] == error_type, out["error"]
    assert out["nonretryable"], f"{name} would be retried: {out['error']}"
    assert not out["pushed"]
    return out


def test_a_llama3_eos_list_trains_a_causal_lm_in_full(faults):
    out = done(faults, "llama3-full-causal-lm")
    assert out["result"]["task"] == "causal-lm" and out["result"]["training"]["method"] == "full"
    assert out["result"]["training"]["evaluation"] == "split 'validation'"


def test_lora_target_modules_that_do_not_fit_name_our_param(faults):
    out = refused(faults, "phi3-wrong-targets", "ParamError")
    assert "params.lora.target_modules ['q_proj', 'v_proj'] match no linear layer of this phi3 model" in out["error"]
    assert "qkv_proj" in out["error"] and out["hint"] == 'or use "all-linear"'
    fused = done(faults, "phi3-fused-qkv")
    assert fused["result"]["training"]["lora_target_modules"] == ["qkv_proj"]


def test_a_lora_classifier_loads_back_with_its_labels_and_config(faults):
    out = done(faults, "bert-pretraining-lora-classifier")
    assert out["reload"]["id2label"] == {"0": "neg", "1": "pos"}
    assert out["result"]["training"]["modules_to_save"] == ["classifier"]  # the pooler came with the checkpoint
    assert {"adapter_config.json", "adapter_model.safetensors", "config.json", "tokenizer.json"} <= set(out["pushed_files"])
    assert out["pushed_config"]["architectures"] == ["BertForSequenceClassification"]
    assert "PeftModel.from_pretrained(base" in out["card"]


def test_an_encoder_is_trained_as_a_classifier_or_the_label_column_is_asked_for(faults):
    for name in ("encoder-labels-column", "encoder-columns-detected"):
        out = done(faults, name)
        training = out["result"]["training"]
        assert out["result"]["task"] == "text-classification"
        assert (training["text_column"], training["label_column"], training["labels"]) == ("review", "labels", ["0", "1"])
        assert out["pushed_config"]["architectures"] == ["BertForSequenceClassification"]
        assert "0.1 of split 'train'" in training["evaluation"]
    out = refused(faults, "encoder-text-only", "DatasetError")
    assert "demo/tiny-bert (bert) is an encoder" in out["error"] and "params.label_column" in out["error"]
    assert "its columns are: text" in out["error"]
    out = refused(faults, "encoder-as-causal-lm", "ModelError")
    assert "cannot be trained as a causal LM (params.task)" in out["error"]


def test_an_fp16_checkpoint_trains_with_fp32_master_weights(faults):
    out = done(faults, "fp16-checkpoint")
    result = out["result"]
    assert result["global_step"] == 20 and result["eval_loss"] < result["initial_eval_loss"]
    assert out["reload"]["dtypes"] == ["torch.float32"]
    assert result["training"]["base_weights"] == "float32"
    assert "NaN" not in str(result) and "nan" not in out["log"]


def test_a_run_whose_loss_turns_non_finite_fails_and_pushes_nothing(faults):
    out = refused(faults, "diverges", "Diverged")
    assert "NaN or infinite" in out["error"] and "nothing was pushed" in out["error"]
    assert "learning_rate" in out["hint"]


def test_long_texts_are_cut_to_what_the_positions_take(faults):
    bert = done(faults, "long-text-bert-128-positions")
    assert bert["result"]["training"]["max_length"] == 128
    assert "max_length 256 capped to 128" in bert["log"]
    roberta = done(faults, "long-text-roberta-offset-positions")
    assert roberta["result"]["training"]["max_length"] == 64  # 66 position embeddings, offset by the padding index


def test_unknown_params_are_refused_at_once(faults):
    out = refused(faults, "unknown-params", "ParamError")
    assert out["error"].startswith("unknown params: lr (did you mean lr -> learning_rate?) (known: ")
    assert "gradient_checkpointing" in out["error"] and out["log"] == ""  # refused before anything was loaded


def test_the_params_a_gpu_user_reaches_for_are_applied_and_the_card_says_so(faults):
    out = done(faults, "gpu-params-applied")
    training = out["result"]["training"]
    assert (training["precision"], training["gradient_checkpointing"], training["optim"]) == ("bf16", True, "adafactor")
    assert (training["per_device_train_batch_size"], training["gradient_accumulation_steps"], training["batch_size"]) == (2, 4, 8)
    for row in ('| precision | `"bf16"` |', "| gradient_checkpointing | `true` |", '| optim | `"adafactor"` |',
                "| per_device_train_batch_size | `2` |", "| gradient_accumulation_steps | `4` |"):
        assert row in out["card"]
    assert "| lr |" not in out["card"] and "| bf16 |" not in out["card"]


def test_a_model_or_dataset_that_does_not_exist_fails_at_once(faults):
    out = refused(faults, "missing-model", "ModelError")
    assert "model demo/no-such-model does not exist or the Space's token cannot read it" in out["error"]
    out = refused(faults, "missing-dataset", "DatasetError")
    assert "dataset demo/no-such-data does not exist" in out["error"]


def test_a_run_that_cannot_fit_the_device_fails_at_once_with_what_would_fit(faults):
    out = refused(faults, "out-of-memory", "OutOfMemory")
    assert "demo/tiny-bert" in out["error"] and "does not fit" in out["error"] and "a 100 kB CPU" in out["error"]
    assert out["hint"].startswith("try ") and "a bigger flavor" in out["hint"]
