"""Task params: every one honoured or refused, naming the param; unknown names listed with the known."""

from __future__ import annotations

import pytest

from scheduler.errors import NonRetryable
from scheduler.recipes.errors import ParamError
from scheduler.recipes.params import BY_NAME, CAUSAL_LM, CLASSIFICATION, read_params

from .helpers import needs_training


def test_defaults_and_values_given_as_json_or_as_text():
    params = read_params({"epochs": "2", "learning_rate": "1e-3", "lora": "true", "private": "no",
                          "gradient_checkpointing": "on", "per_device_train_batch_size": 4.0})
    assert params["epochs"] == 2.0 and params["learning_rate"] == 1e-3 and params["private"] is False
    assert params["lora"] == {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": None}
    assert params["gradient_checkpointing"] is True and params["per_device_train_batch_size"] == 4
    defaults = read_params(None)
    assert set(defaults) == set(BY_NAME)
    assert (defaults["lora"], defaults["precision"], defaults["batch_size"], defaults["task"]) == (None, "auto", 8, None)
    assert read_params({"task": "Classification"})["task"] == CLASSIFICATION
    assert read_params({"task": "text-generation"})["task"] == CAUSAL_LM


def test_unknown_params_are_refused_with_the_known_ones():
    with pytest.raises(ParamError) as caught:
        read_params({"lr": 0.1, "learning_rat": 0.1, "epochs": 1})
    message = str(caught.value)
    assert message.startswith("unknown params: learning_rat, lr (did you mean learning_rat -> learning_rate; "
                              "lr -> learning_rate?)")
    assert "(known: recipe, task, " in message and "learning_rate" in message
    assert isinstance(caught.value, NonRetryable)
    with pytest.raises(ParamError, match=r"unknown params.lora keys: rank \(known: r, alpha, dropout, target_modules\)"):
        read_params({"lora": {"rank": 8}})


@pytest.mark.parametrize("raw,message", [
    ({"batch_size": "many"}, "params.batch_size must be a number, got 'many'"),
    ({"batch_size": 0}, "params.batch_size must be at least 1"),
    ({"max_steps": 2.5}, "params.max_steps must be a whole number"),
    ({"learning_rate": "inf"}, "params.learning_rate must be a finite number"),
    ({"private": "maybe"}, "params.private must be true or false"),
    ({"fp16": 1.5}, "params.fp16 must be true or false"),
    ({"task": "translation"}, "params.task 'translation' is not one of"),
    ({"precision": "int8"}, "params.precision 'int8' is not one of: auto, bf16, fp16, fp32"),
    ({"lora": 3}, "params.lora must be true/false or an object"),
    ({"lora": {"r": 0}}, "params.lora.r must be positive"),
    ({"lora": {"dropout": 1}}, "params.lora.dropout must be at least 0 and below 1"),
    ({"lora": {"target_modules": 7}}, "params.lora.target_modules must be \"all-linear\" or a list"),
    ({"merge_lora": True}, "params.merge_lora needs params.lora"),
    ({"quantization": "4bit"}, "params.quantization 4bit needs params.lora"),
    ({"bf16": True, "fp16": True}, "params.bf16 and params.fp16 are both true"),
    ({"precision": "bf16", "fp16": True}, "params.precision bf16 contradicts fp16=true"),
    ({"text_column": 3}, "params.text_column must be a string"),
])
def test_bad_values_name_the_param(raw, message):
    with pytest.raises(ParamError) as caught:
        read_params(raw)
    assert message in str(caught.value)


def test_precision_shorthands_and_their_string_forms():
    assert read_params({"bf16": True})["precision"] == "bf16"
    assert read_params({"fp16": "true"})["precision"] == "fp16"
    # "false" from a CSV cell or `--param fp16=False` turns mixed precision off; it never turns fp16 on
    assert read_params({"fp16": "false"})["precision"] == "fp32"
    assert read_params({"bf16": False, "fp16": True})["precision"] == "fp16"
    assert read_params({"precision": "fp16", "fp16": True})["precision"] == "fp16"


def test_lora_target_modules_forms():
    assert read_params({"lora": {"target_modules": "all-linear"}})["lora"]["target_modules"] == "all-linear"
    assert read_params({"lora": {"target_modules": "q_proj, v_proj"}})["lora"]["target_modules"] == ["q_proj", "v_proj"]
    assert read_params({"lora": {"target_modules": ["qkv_proj"]}})["lora"]["target_modules"] == ["qkv_proj"]
    assert read_params({"lora": False})["lora"] is None


@needs_training  # the optimizer names are transformers' own
def test_optimizers_are_checked_before_anything_is_loaded():
    from scheduler.recipes.fit import check_optim

    check_optim(None)
    check_optim("adafactor")
    with pytest.raises(ParamError, match="params.optim 'adam' is not a transformers optimizer; known: adamw_torch"):
        check_optim("adam")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        with pytest.raises(ParamError, match="params.optim paged_adamw_8bit needs bitsandbytes"):
            check_optim("paged_adamw_8bit")
