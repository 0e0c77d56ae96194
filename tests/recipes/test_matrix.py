"""Every common family x {classification, classification + LoRA, causal LM + LoRA}: the recipe trains
a tiny random model (made on the spot, served by the emulator), pushes it, and the repo loads back
the way its model card says and predicts the same: the validation loss of the reloaded model is
the one the recipe reported, and two loads agree (no layer left out of the repo).

Bounded for CI: 6 steps of batch 8 per cell on hidden size 32, all cells in one child process.
"""

from __future__ import annotations

import pytest

from scheduler.recipes.tiny import ENCODER_FAMILIES
from tests.recipes.helpers import needs_training
from tests.recipes.scenarios import csv_dataset, review_rows, run_scenarios

pytestmark = needs_training

DECODERS = ("gpt2", "llama", "mistral", "phi3", "qwen2")
FAMILIES = (*ENCODER_FAMILIES, *DECODERS)
CAUSAL_LORA = (*DECODERS, "opt")
PARAMS = {"recipe": "transformers", "max_steps": 6, "learning_rate": 2e-2, "batch_size": 8, "logging_steps": 2}
LABELS = {"0": "neg", "1": "neutral", "2": "pos"}
# The tiny Llama is configured like Llama-3.1-Instruct: `eos_token_id` is a list ([</s>, <|eot_id|>]).
LLAMA3_EOS = [2, 3]
# peft has no default LoRA targets for these families: every linear layer is adapted.
ALL_LINEAR = {"phi3", "distilbert"}

CELLS = ([(f, "classification") for f in FAMILIES] + [(f, "classification+lora") for f in FAMILIES]
         + [(f, "causal-lm+lora") for f in CAUSAL_LORA])


def scenario(family: str, kind: str) -> dict:
    params = dict(PARAMS)
    if kind.startswith("classification"):
        params["task"] = "text-classification"
    if kind.endswith("+lora"):
        params["lora"] = True
    return {"id": f"{family}/{kind}", "model": f"demo/tiny-{family}", "dataset": "demo/reviews-3",
            "params": params, "reload": True}


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    models = [{"repo": f"demo/tiny-{f}", "family": f, **({"config": {"eos_token_id": LLAMA3_EOS}} if f == "llama" else {})}
              for f in (*FAMILIES, "opt")]
    spec = {"models": models, "datasets": [csv_dataset("demo/reviews-3", review_rows(60), review_rows(9, seed=1))],
            "scenarios": [scenario(f, k) for f, k in CELLS]}
    results, seconds = run_scenarios(tmp_path_factory.mktemp("matrix"), spec)
    print(f"matrix: {len(CELLS)} cells in {seconds:.0f} s")
    return results


@pytest.mark.parametrize("family,kind", CELLS, ids=[f"{f}-{k}" for f, k in CELLS])
def test_trains_pushes_loads_back_and_predicts_the_same(matrix, family, kind):
    out = matrix[f"{family}/{kind}"]
    assert out["ok"], f"{out['error_type']}: {out['error']}\n{out['traceback']}\n{out['log'][-2000:]}"
    result, reload = out["result"], out["reload"]
    assert "error" not in reload, reload["error"]
    assert result["task"] == ("text-classification" if kind.startswith("classification") else "causal-lm")
    assert result["repo_id"] == out["repo_id"] and out["pushed"]
    # the loss moved, so matching it proves the trained weights are the ones that load
    assert abs(result["eval_loss"] - result["initial_eval_loss"]) > 1e-3
    assert reload["eval_loss"] == pytest.approx(result["eval_loss"], abs=2e-5)
    assert reload["same_on_second_load"]
    assert reload["finite"]
    if kind.startswith("classification"):
        assert reload["id2label"] == LABELS and result["training"]["labels"] == list(LABELS.values())
        assert reload["pad_token_id"] is not None  # decoder classifiers batch with it
        assert reload["accuracy"] == pytest.approx(result["eval_accuracy"], abs=1e-5)
    training = result["training"]
    if kind.endswith("+lora"):
        assert training["method"] == "lora" and training["base_weights"] == "float32"  # CPU: fp32 everywhere
        expected = "all-linear" if family in ALL_LINEAR else training["lora_target_modules"]
        assert training["lora_target_modules"] == expected and expected
    else:
        assert training["method"] == "full"
    assert training["precision"] == "fp32" and training["processes"] == 1


def test_a_llama3_config_with_an_eos_list_gets_one_pad_token_id(matrix):
    out = matrix["llama/classification"]
    assert out["ok"] and out["reload"]["pad_token_id"] == 2  # the tokenizer's EOS, </s>


def test_new_layers_of_a_lora_classifier_are_trained_and_saved(matrix):
    assert matrix["bert/classification+lora"]["result"]["training"]["modules_to_save"] == ["bert.pooler.dense",
                                                                                           "classifier"]
    assert matrix["distilbert/classification+lora"]["result"]["training"]["modules_to_save"] == ["classifier",
                                                                                                 "pre_classifier"]
    assert matrix["deberta-v2/classification+lora"]["result"]["training"]["modules_to_save"] == ["classifier",
                                                                                                 "pooler.dense"]
    assert matrix["llama/classification+lora"]["result"]["training"]["modules_to_save"] == ["score"]
