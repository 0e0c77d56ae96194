"""What each family can be trained for and needs, from its config alone (no weights): the task
kind, the columns, the longest input, the pad token, the LoRA targets and the layers to save."""

from __future__ import annotations

import pytest

from scheduler.recipes.architecture import (Abilities, abilities, effective_max_length, infer_task, lora_targets,
                                            new_modules, pad_token_for, position_limit)
from scheduler.recipes.columns import find_column, plan_labels
from scheduler.recipes.errors import DatasetError, ModelError, ParamError
from scheduler.recipes.params import CAUSAL_LM, CLASSIFICATION
from scheduler.recipes.tiny import FAMILIES, make_family_model, make_rows, make_tokenizer

from .helpers import needs_training

# family -> (can classify, decoder, head named by the saved checkpoint)
ABILITIES = {"bert": (True, False, None), "distilbert": (True, False, None), "roberta": (True, False, None),
             "deberta-v2": (True, False, None), "gpt2": (True, True, CAUSAL_LM), "llama": (True, True, CAUSAL_LM),
             "mistral": (True, True, CAUSAL_LM), "phi3": (True, True, CAUSAL_LM), "qwen2": (True, True, CAUSAL_LM),
             "opt": (True, True, CAUSAL_LM)}


@pytest.fixture(scope="module")
def configs():
    texts = [row["text"] for row in make_rows(40)]
    out = {}
    for family, (style, *_rest) in FAMILIES.items():
        model = make_family_model(family, make_tokenizer(texts, style))
        model.config.architectures = [type(model).__name__]  # as save_pretrained writes it
        out[family] = model.config
    return out


@needs_training
@pytest.mark.parametrize("family", sorted(ABILITIES))
def test_each_family_can_do_what_its_architecture_allows(family, configs):
    found = abilities(configs[family])
    assert (found.can_classify, found.decoder, found.head) == ABILITIES[family]


@needs_training
def test_a_bert_saved_as_a_causal_lm_decoder_is_one_only_with_is_decoder(configs):
    config = configs["bert"]
    config.architectures = ["BertLMHeadModel"]
    assert abilities(config).decoder is False and abilities(config).head is None
    config.is_decoder = True
    assert abilities(config).decoder is True and abilities(config).head == CAUSAL_LM


ENCODER = Abilities("bert", True, False, None)
DECODER = Abilities("llama", True, True, None)
CAUSAL_CHECKPOINT = Abilities("llama", True, True, CAUSAL_LM)
CLASSIFIER_CHECKPOINT = Abilities("bert", True, False, CLASSIFICATION)


@pytest.mark.parametrize("requested,model,label,expected", [
    (None, ENCODER, "labels", CLASSIFICATION),             # an encoder and a `labels` column
    (None, CLASSIFIER_CHECKPOINT, None, CLASSIFICATION),
    (None, CAUSAL_CHECKPOINT, "label", CAUSAL_LM),          # the checkpoint says what it is for
    (None, DECODER, None, CAUSAL_LM),                        # a decoder and text only
    (CLASSIFICATION, CAUSAL_CHECKPOINT, "label", CLASSIFICATION),
    (CAUSAL_LM, DECODER, "label", CAUSAL_LM),
])
def test_the_task_is_asked_for_or_the_only_one_possible(requested, model, label, expected):
    assert infer_task(requested, model, label, model_id="m", dataset_id="d", columns=["text", "x"]) == expected


def test_impossible_or_ambiguous_tasks_are_refused_naming_the_param():
    with pytest.raises(DatasetError, match=r"m \(bert\) is an encoder.*needs a label column: dataset d has none "
                                           r"\(params.label_column.*its columns are: review, score"):
        infer_task(None, ENCODER, None, model_id="m", dataset_id="d", columns=["review", "score"])
    with pytest.raises(ModelError, match=r"is an encoder.*cannot be trained as a causal LM \(params.task\)"):
        infer_task(CAUSAL_LM, ENCODER, "label", model_id="m", dataset_id="d", columns=[])
    with pytest.raises(ParamError, match="can be a causal LM or a text classifier.*set params.task"):
        infer_task(None, DECODER, "label", model_id="m", dataset_id="d", columns=["text", "label"])
    with pytest.raises(ModelError, match="no sequence-classification head for m"):
        infer_task(CLASSIFICATION, Abilities("t5", False, False, None), "label", model_id="m", dataset_id="d",
                   columns=[])


@pytest.mark.parametrize("model_type,positions,pad,expected", [
    ("bert", 512, 0, 512), ("roberta", 514, 1, 512), ("xlm-roberta", 514, 1, 512), ("camembert", 514, 1, 512),
    ("gpt2", 1024, None, 1024), ("llama", 131072, None, 131072), ("t5", None, 0, None),
])
def test_the_positions_a_model_takes(model_type, positions, pad, expected):
    assert position_limit(model_type, positions, pad) == expected


@pytest.mark.parametrize("asked,tokenizer_max,positions,expected", [
    (256, int(1e30), 128, 128),   # a tokenizer saved without model_max_length
    (256, 512, 512, 256), (1024, 512, 2048, 512), (256, None, None, 256), (64, 10 ** 9, 32, 32),
])
def test_max_length_is_capped_by_tokenizer_and_positions(asked, tokenizer_max, positions, expected):
    assert effective_max_length(asked, tokenizer_max, positions) == expected


def test_the_pad_token_comes_from_eos_even_when_the_config_lists_several():
    def names(i):
        return {128001: "<|end_of_text|>", 128009: "<|eot_id|>"}.get(i)

    assert pad_token_for("[PAD]", "[SEP]", "[UNK]", 2, names) == "[PAD]"
    assert pad_token_for(None, "</s>", "<unk>", [2, 3], names) == "</s>"                      # Llama-3 style list
    assert pad_token_for(None, None, "<unk>", [128001, 128009], names) == "<|end_of_text|>"   # no EOS in the tokenizer
    assert pad_token_for(None, None, "<unk>", None, names) == "<unk>"
    assert pad_token_for(None, None, None, None, names) is None


LLAMA_LINEAR = [f"model.layers.{i}.{part}" for i in range(2) for part in
                ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                 "mlp.up_proj", "mlp.down_proj")] + ["lm_head"]
PHI3_LINEAR = [f"model.layers.{i}.{part}" for i in range(2) for part in
               ("self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj")] + ["lm_head"]
DISTILBERT_LINEAR = [f"distilbert.transformer.layer.{i}.{part}" for i in range(2)
                     for part in ("attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin",
                                  "ffn.lin1", "ffn.lin2")] + ["pre_classifier", "classifier"]
PEFT_DEFAULTS = {"llama": ["q_proj", "v_proj"], "bert": ["query", "value"]}


def test_lora_targets_fit_the_architecture():
    assert lora_targets("llama", None, LLAMA_LINEAR, PEFT_DEFAULTS) == ["q_proj", "v_proj"]
    assert lora_targets("phi3", None, PHI3_LINEAR, PEFT_DEFAULTS) == "all-linear"          # no peft default
    assert lora_targets("distilbert", None, DISTILBERT_LINEAR, PEFT_DEFAULTS) == "all-linear"
    # a peft default that names layers this checkpoint does not have is not used either
    assert lora_targets("llama", None, PHI3_LINEAR, PEFT_DEFAULTS) == "all-linear"
    assert lora_targets("phi3", ["qkv_proj"], PHI3_LINEAR, PEFT_DEFAULTS) == ["qkv_proj"]
    assert lora_targets("phi3", "all-linear", PHI3_LINEAR, PEFT_DEFAULTS) == "all-linear"
    assert lora_targets("llama", ["layers.0.self_attn.q_proj"], LLAMA_LINEAR, PEFT_DEFAULTS) == ["layers.0.self_attn.q_proj"]
    with pytest.raises(ParamError, match=r"params.lora.target_modules \['q_proj', 'v_proj'\] match no linear layer "
                                         r"of this phi3 model; its linear layers are named: down_proj, gate_up_proj, "
                                         r"lm_head, o_proj, qkv_proj"):
        lora_targets("phi3", ["q_proj", "v_proj"], PHI3_LINEAR, PEFT_DEFAULTS)


def test_the_layers_a_new_head_adds_are_saved_with_the_adapter():
    bert = {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"}
    assert new_modules(bert) == ["bert.pooler.dense"]
    assert new_modules(bert, auto_saved=()) == ["bert.pooler.dense", "classifier"]
    distil = {"pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias"}
    assert new_modules(distil) == ["pre_classifier"]
    roberta = {"classifier.dense.weight", "classifier.out_proj.weight", "classifier.out_proj.bias"}
    assert new_modules(roberta) == []
    assert new_modules({"score.weight"}) == [] and new_modules({"lm_head.weight"}) == ["lm_head"]


def test_columns_are_found_under_their_usual_names_or_named_in_the_error():
    assert find_column(["review", "labels"], None, ("text", "review"), param="text_column", dataset_id="d",
                       purpose="text") == "review"
    assert find_column(["text"], None, ("label", "labels"), param="label_column", dataset_id="d", purpose="label",
                       required=False) is None
    with pytest.raises(DatasetError, match=r"dataset d has no column 'body' \(params.text_column\); its columns "
                                           r"are: review, labels"):
        find_column(["review", "labels"], "body", ("text",), param="text_column", dataset_id="d", purpose="text")
    with pytest.raises(DatasetError, match=r"several possible label columns \(label, labels\): set params.label_column"):
        find_column(["text", "label", "labels"], None, ("label", "labels"), param="label_column", dataset_id="d",
                    purpose="label")
    with pytest.raises(DatasetError, match=r"no text column \(params.text_column, looked for text, sentence\); its "
                                           r"columns are: a, b"):
        find_column(["a", "b"], None, ("text", "sentence"), param="text_column", dataset_id="d", purpose="text")


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
    names, ids = plan_labels([1, 0], ["pos", "neg"], None, column="label", dataset_id="d", model_id="m",
                             relabel=False)
    assert names == ["pos", "neg"] and ids == [1, 0]
    with pytest.raises(DatasetError, match="column 'y' .* 1 empty label"):
        plan_labels(["a", ""], None, None, column="y", dataset_id="d", model_id="m", relabel=False)
    with pytest.raises(DatasetError, match="column 'y' .* 1 distinct label.*at least 2"):
        plan_labels(["a", "a"], None, None, column="y", dataset_id="d", model_id="m", relabel=False)
