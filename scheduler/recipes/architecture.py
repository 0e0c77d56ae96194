"""What a model's architecture can be trained for and what it needs: the task kind, LoRA target
modules, the longest input its positions allow, its pad token, the layers a new head adds.

Pure functions of config values (the callers read them from transformers objects), so each rule is
tested as a table without loading a model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .columns import LABEL_COLUMNS
from .errors import DatasetError, ModelError, ParamError
from .params import CAUSAL_LM, CLASSIFICATION

# Families whose position ids start after the padding index (RoBERTa's `create_position_ids_from_input_ids`):
# `max_position_embeddings` 514 allows 512 tokens.
POSITION_OFFSET_TYPES = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer",
                                   "data2vec-text", "ibert", "luke", "roberta-prelayernorm", "xmod", "mpnet"})
# transformers' "no limit" sentinel for model_max_length is int(1e30); anything this large is unset.
_UNSET_LENGTH = 10 ** 8
ALL_LINEAR = "all-linear"
_PLAIN_NAME = re.compile(r"^[\w.]+$")


@dataclass(frozen=True)
class Abilities:
    """`can_classify`: transformers has a sequence-classification head for the family;
    `decoder`: causal attention, so it can be trained as a causal LM; `head`: the task an
    `architectures` entry names (a checkpoint saved with that head), else None."""

    model_type: str
    can_classify: bool
    decoder: bool
    head: str | None


def abilities_of(model_type: str, architectures: list[str] | None, is_decoder: bool, *,
                 classify_types, causal_types, masked_types) -> Abilities:
    """Families with a masked-LM head (BERT, RoBERTa...) also have a causal-LM class, which is
    only a decoder with `is_decoder=True`; without it the attention is bidirectional and a
    causal-LM loss is learnt by looking at the very token to predict."""
    decoder = model_type in causal_types and (model_type not in masked_types or bool(is_decoder))
    head = None
    for arch in architectures or []:
        if arch.endswith("ForSequenceClassification"):
            head = CLASSIFICATION
            break
        if arch.endswith(("ForCausalLM", "LMHeadModel")) and decoder:
            head = CAUSAL_LM
            break
    return Abilities(model_type, model_type in classify_types, decoder, head)


def abilities(config) -> Abilities:
    """`abilities_of` for a transformers config, from transformers' auto-class mappings."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
                                                        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES)

    return abilities_of(config.model_type, getattr(config, "architectures", None),
                        bool(getattr(config, "is_decoder", False)),
                        classify_types=MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
                        causal_types=MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, masked_types=MODEL_FOR_MASKED_LM_MAPPING_NAMES)


def infer_task(requested: str | None, model: Abilities, label_column: str | None, *, model_id: str,
               dataset_id: str, columns: list[str]) -> str:
    """The training objective: asked for (if the model can do it), else the only one possible.

    A checkpoint saved with a head (`...ForSequenceClassification`, `...ForCausalLM`) says what it
    is for; an encoder can only be a classifier (and then needs a label column); a decoder without
    a head is a causal LM unless the dataset has a label column, which is ambiguous: the error asks
    for params.task."""
    name = f"{model_id} ({model.model_type})"
    if requested == CAUSAL_LM and not model.decoder:
        raise ModelError(f"{name} is an encoder: its attention sees the token it would predict, so it cannot be "
                         f"trained as a causal LM (params.task)",
                         hint="use task text-classification, or a decoder model (GPT-2, Llama, Qwen2, ...)")
    if requested == CLASSIFICATION and not model.can_classify:
        raise ModelError(f"transformers has no sequence-classification head for {name} (params.task)")
    if requested:
        return requested
    if model.head and (model.head == CAUSAL_LM or model.can_classify):
        return model.head
    if not model.decoder:
        if not model.can_classify:
            raise ModelError(f"{name} can be neither a text classifier nor a causal LM with transformers")
        if label_column is None:
            raise DatasetError(
                f"{name} is an encoder, fine-tuned as a text classifier, which needs a label column: dataset "
                f"{dataset_id} has none (params.label_column, looked for {', '.join(LABEL_COLUMNS)}); its columns "
                f"are: {', '.join(columns) or 'none'}")
        return CLASSIFICATION
    if label_column is None or not model.can_classify:
        return CAUSAL_LM
    raise ParamError(f"{name} can be a causal LM or a text classifier and dataset {dataset_id} has a label column "
                     f"{label_column!r}: set params.task to text-classification or causal-lm")


def position_limit(model_type: str, max_position_embeddings: int | None, pad_token_id: int | None) -> int | None:
    """The longest input the model's position embeddings take (None: no absolute positions known)."""
    if not max_position_embeddings:
        return None
    if model_type in POSITION_OFFSET_TYPES:
        return max_position_embeddings - ((pad_token_id if pad_token_id is not None else 1) + 1)
    return max_position_embeddings


def effective_max_length(asked: int, tokenizer_max: int | None, positions: int | None) -> int:
    """min(params.max_length, the tokenizer's model_max_length, the model's positions)."""
    limits = [asked]
    if tokenizer_max and tokenizer_max < _UNSET_LENGTH:
        limits.append(int(tokenizer_max))
    if positions:
        limits.append(int(positions))
    return max(1, min(limits))


def pad_token_for(pad: str | None, eos: str | None, unk: str | None, config_eos: int | list[int] | None,
                  id_to_token) -> str | None:
    """The token to pad with: the tokenizer's own, else its EOS (what GPT-2 and Llama users do),
    else the first of the config's EOS ids (Llama-3 configs list several), else UNK; None if the
    tokenizer has none of these (the caller adds a `[PAD]` token)."""
    if pad is not None:
        return pad
    if eos is not None:
        return eos
    first = config_eos[0] if isinstance(config_eos, (list, tuple)) and config_eos else config_eos
    if isinstance(first, int):
        token = id_to_token(first)
        if token is not None:
            return token
    return unk


def lora_targets(model_type: str, asked: str | list[str] | None, linear_names: list[str],
                 defaults: dict[str, list[str]]) -> str | list[str]:
    """The modules LoRA adapts. Asked names must each match a linear layer (by name or dotted
    suffix, as peft matches them); by default peft's per-family list when it fits the model,
    else every linear layer but the output head (`all-linear`)."""
    suffixes = sorted({name.rsplit(".", 1)[-1] for name in linear_names})

    def present(target: str) -> bool:
        return any(name == target or name.endswith("." + target) for name in linear_names)

    if asked == ALL_LINEAR:
        return ALL_LINEAR
    if asked:
        missing = [t for t in asked if _PLAIN_NAME.match(t) and not present(t)]
        if missing:
            raise ParamError(f"params.lora.target_modules {missing} match no linear layer of this {model_type} model; "
                             f"its linear layers are named: {', '.join(suffixes)}", hint='or use "all-linear"')
        return list(asked)
    default = defaults.get(model_type)
    if default and all(present(t) for t in default):
        return list(default)
    return ALL_LINEAR


def new_modules(missing_keys, auto_saved: tuple[str, ...] = ("classifier", "score")) -> list[str]:
    """The modules that loading had to initialise at random (from `missing_keys`), outermost only
    and without those peft already trains for a classifier. A LoRA run trains and saves them
    (`modules_to_save`): a random layer left frozen, or not saved, changes every reload."""
    paths = sorted({key.rsplit(".", 1)[0] for key in missing_keys if "." in key})
    kept: list[str] = []
    for path in paths:
        if any(path == name or path.startswith(name + ".") or path.endswith("." + name) for name in auto_saved):
            continue
        if any(path.startswith(parent + ".") for parent in kept):
            continue
        kept.append(path)
    return kept
