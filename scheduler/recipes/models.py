"""Loading the model and tokenizer the way a plan says: dtype or 4-bit base, pad token, LoRA
adapter with the layers a new head adds. Needs torch, transformers (and peft for LoRA,
bitsandbytes for 4 bits, imported only when used).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from .architecture import ALL_LINEAR, lora_targets, new_modules, pad_token_for
from .errors import ParamError
from .params import CLASSIFICATION
from .plan import ModelShape, Plan

_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


@dataclass
class Loaded:
    """The model ready for Trainer and what was done to it (for the log and the model card);
    `new_keys` are the weights loading initialised at random (missing or of another shape)."""

    model: object
    new_keys: set[str]
    mismatched_head: bool
    lora_targets: str | list[str] | None = None
    modules_to_save: list[str] = field(default_factory=list)


def load_tokenizer(model_id: str, token, config):
    """The model's tokenizer with a pad token (see `pad_token_for`); returns (tokenizer, added)
    where `added` says a `[PAD]` token had to be added to the vocabulary."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_id, token=token)
    pad = pad_token_for(tokenizer.pad_token, tokenizer.eos_token, tokenizer.unk_token,
                        getattr(config, "eos_token_id", None), tokenizer.convert_ids_to_tokens)
    if pad is None:
        tokenizer.add_special_tokens({"pad_token": "[PAD]"})
        return tokenizer, True
    if tokenizer.pad_token is None:
        tokenizer.pad_token = pad
    return tokenizer, False


def _task_class(kind: str):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    return AutoModelForSequenceClassification if kind == CLASSIFICATION else AutoModelForCausalLM


def _config_for(config, kind: str, labels: list[str] | None):
    config = copy.deepcopy(config)
    if kind == CLASSIFICATION:
        config.num_labels = len(labels)
        config.id2label = dict(enumerate(labels))
        config.label2id = {name: i for i, name in enumerate(labels)}
    return config


def shape_of(config, kind: str, labels: list[str] | None) -> ModelShape:
    """The shape the memory plan needs, counted exactly on an empty (meta-device) model."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        empty = _task_class(kind).from_config(_config_for(config, kind, labels))
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    n_params = sum(p.numel() for p in empty.parameters())
    return ModelShape(n_params, int(text.hidden_size), int(text.num_hidden_layers), int(text.vocab_size),
                      lm_head=kind != CLASSIFICATION)


def load_model(model_id: str, token, config, kind: str, labels: list[str] | None, plan: Plan,
               local_rank: int = 0) -> Loaded:
    """`from_pretrained` in the plan's dtype: fp32 master weights for a full fine-tune whatever the
    checkpoint's dtype (transformers 5 would otherwise keep an fp16 checkpoint in fp16 and
    AdamW would update fp16 weights directly), the autocast dtype for a LoRA's frozen base, NF4
    with double quantization for QLoRA. A new or resized head is initialised at random and
    reported in `new_keys`."""
    import torch

    config = _config_for(config, kind, labels)
    kwargs: dict = {"token": token, "config": config, "output_loading_info": True}
    if kind == CLASSIFICATION:
        kwargs["ignore_mismatched_sizes"] = True  # a base head of another size gets a new one
    compute = getattr(torch, {"bf16": "bfloat16", "fp16": "float16"}.get(plan.precision, "float32"))
    if plan.weights == "4bit":
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise ParamError("4-bit loading (QLoRA) needs bitsandbytes, which is not installed",
                             hint='pip install bitsandbytes, or "quantization": "none" with a bigger flavor') from None
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute, llm_int8_skip_modules=["classifier", "score", "pre_classifier", "pooler"])
        kwargs["device_map"] = {"": local_rank}
        kwargs["dtype"] = compute
    else:
        kwargs["dtype"] = getattr(torch, _DTYPES[plan.weights])
    model, info = _task_class(kind).from_pretrained(model_id, **kwargs)
    mismatched = {key[0] if isinstance(key, tuple) else key for key in info.get("mismatched_keys", ())}
    return Loaded(model, set(info.get("missing_keys", ())) | mismatched, bool(mismatched))


def set_pad_token(model, tokenizer, added: bool) -> None:
    """The config's pad token is the tokenizer's (one id, even when `eos_token_id` is a list):
    decoder classifiers find each sequence's last token with it, and it is pushed in config.json."""
    if added:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    generation = getattr(model, "generation_config", None)
    if generation is not None and getattr(generation, "pad_token_id", None) is None:
        generation.pad_token_id = tokenizer.pad_token_id


def linear_layer_names(model) -> list[str]:
    """Names of the layers LoRA can adapt (`nn.Linear` and GPT-2's `Conv1D`)."""
    import torch
    from transformers.pytorch_utils import Conv1D

    return [name for name, module in model.named_modules() if isinstance(module, (torch.nn.Linear, Conv1D))]


def apply_lora(loaded: Loaded, kind: str, lora: dict, plan: Plan, model_type: str) -> Loaded:
    """Wrap the model in a peft LoRA model. Targets: `params.lora.target_modules`, else peft's list
    for the family when it fits, else every linear layer. Every randomly initialised layer is
    trained and saved with the adapter (`modules_to_save`). Trained weights are fp32 whatever
    the base's dtype, so fp16 loss scaling can unscale their gradients."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model, prepare_model_for_kbit_training
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    model = loaded.model
    if plan.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=plan.checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    # peft already trains and saves a classifier's `classifier`/`score` head.
    saved = new_modules(loaded.new_keys, auto_saved=("classifier", "score") if kind == CLASSIFICATION else ())
    linear = [name for name in linear_layer_names(model) if not any(name == s or name.startswith(s + ".") for s in saved)]
    targets = lora_targets(model_type, lora["target_modules"], linear, TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING)
    config = LoraConfig(task_type=TaskType.SEQ_CLS if kind == CLASSIFICATION else TaskType.CAUSAL_LM,
                        r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                        target_modules=targets, modules_to_save=saved or None)
    try:
        model = get_peft_model(model, config)
    except ValueError as exc:
        if "target" in str(exc).lower():
            raise ParamError(f"params.lora.target_modules {targets!r} do not fit this {model_type} model: {exc}",
                             hint='e.g. "all-linear"') from None
        raise
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
    loaded.model = model
    loaded.lora_targets = targets if targets == ALL_LINEAR else sorted(targets)
    names = [name for name, _ in model.named_modules()]
    loaded.modules_to_save = sorted(saved for saved in (getattr(model, "modules_to_save", None) or [])
                                    if any(name == saved or name.endswith("." + saved) for name in names))
    return loaded
