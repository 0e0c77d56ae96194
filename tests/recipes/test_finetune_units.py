"""The recipe's decisions that need no model: params, task inference, checkpoints, labels, names."""

from __future__ import annotations

import json

import pytest

from scheduler.recipes.finetune import (CAUSAL_LM, CLASSIFICATION, DatasetError, check_columns,
                                        last_complete_checkpoint, output_repo_name, plan_labels,
                                        read_params, task_kind)


def test_params_are_cast_and_bad_ones_named():
    params = read_params({"epochs": "2", "learning_rate": "1e-3", "lora": "true", "private": "no"})
    assert params["epochs"] == 2.0 and params["learning_rate"] == 1e-3
    assert params["lora"] == {} and params["private"] is False
    assert read_params({"lora": {"r": 4}})["lora"] == {"r": 4}
    assert read_params({})["lora"] is None
    with pytest.raises(ValueError, match="params.batch_size"):
        read_params({"batch_size": "many"})
    with pytest.raises(ValueError, match="params.lora"):
        read_params({"lora": 3})


def test_task_is_asked_for_or_read_from_the_architecture():
    assert task_kind("classification", ["GPT2LMHeadModel"]) == CLASSIFICATION
    assert task_kind(None, ["BertForSequenceClassification"]) == CLASSIFICATION
    assert task_kind(None, ["GPT2LMHeadModel"]) == CAUSAL_LM
    assert task_kind(None, ["LlamaForCausalLM"]) == CAUSAL_LM
    assert task_kind(None, ["BertModel"], has_label_column=True) == CLASSIFICATION
    assert task_kind(None, None, has_label_column=False) == CAUSAL_LM
    with pytest.raises(ValueError, match="params.task"):
        task_kind("translation", None)


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


def test_missing_columns_are_named():
    with pytest.raises(DatasetError, match=r"no column 'text' \(params.text_column\).*sentence, label"):
        check_columns(["sentence", "label"], CLASSIFICATION, read_params({}), "acme/data")
    with pytest.raises(DatasetError, match=r"no column 'target' \(params.label_column\)"):
        check_columns(["text"], CLASSIFICATION, read_params({"label_column": "target"}), "acme/data")
    check_columns(["text"], CAUSAL_LM, read_params({}), "acme/data")


def test_labels_follow_a_named_config_or_the_dataset():
    named = {"negative": 0, "positive": 1}
    names, ids = plan_labels(["positive", "negative", 1], None, named, column="label",
                             dataset_id="d", model_id="m", relabel=False)
    assert names == ["negative", "positive"] and ids == [1, 0, 1]
    with pytest.raises(DatasetError, match=r"column 'label' .* labels not in m's config: 'neutral'"):
        plan_labels(["positive", "neutral"], None, named, column="label", dataset_id="d", model_id="m", relabel=False)
    names, ids = plan_labels(["b", "a", "b"], None, {"LABEL_0": 0, "LABEL_1": 1}, column="label",
                             dataset_id="d", model_id="m", relabel=False)
    assert names == ["a", "b"] and ids == [1, 0, 1]
    names, ids = plan_labels(["positive", "neutral"], None, named, column="label", dataset_id="d",
                             model_id="m", relabel=True)
    assert names == ["neutral", "positive"] and ids == [1, 0]
    names, ids = plan_labels([0, 1, 0], ["neg", "pos"], None, column="label", dataset_id="d", model_id="m",
                             relabel=False)
    assert names == ["neg", "pos"] and ids == [0, 1, 0]
    with pytest.raises(DatasetError, match="column 'y' .* 1 empty label"):
        plan_labels(["a", ""], None, None, column="y", dataset_id="d", model_id="m", relabel=False)
    names, ids = plan_labels([1, 0], ["pos", "neg"], None, column="label", dataset_id="d", model_id="m",
                             relabel=False)
    assert names == ["pos", "neg"] and ids == [1, 0]
