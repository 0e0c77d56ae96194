"""The fine-tuning recipe's parameters (`task.params`): one table, read strictly.

Every documented parameter is honoured or refused: an unknown name is refused with the list of
known ones (a misspelt `lr` must not train with the default learning rate while the model card
claims 0.1), and a value of the wrong type names the parameter. Values may arrive as JSON types or
as strings (`--param epochs=3`, a CSV cell), so numbers and booleans are parsed from text too.
Pure: no torch, no transformers.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any

from .errors import ParamError

CLASSIFICATION = "text-classification"
CAUSAL_LM = "causal-lm"
TASK_ALIASES = {
    "text-classification": CLASSIFICATION, "classification": CLASSIFICATION,
    "sequence-classification": CLASSIFICATION, "seq-cls": CLASSIFICATION,
    "causal-lm": CAUSAL_LM, "causal_lm": CAUSAL_LM, "text-generation": CAUSAL_LM, "clm": CAUSAL_LM,
}
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
QUANTIZATIONS = ("auto", "4bit", "none")


@dataclass(frozen=True)
class Param:
    """One parameter: `kind` is int, float, bool, str, choice or lora; `minimum` is inclusive."""

    name: str
    kind: str
    default: Any
    doc: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None


PARAMS: tuple[Param, ...] = (
    Param("recipe", "str", None, "`transformers` makes `space_app/train.py` hand the task to this recipe"),
    Param("task", "choice", None, "text-classification or causal-lm; default: read from the model and the dataset",
          choices=tuple(TASK_ALIASES)),
    Param("text_column", "str", None, "the text column; default: the one of text, sentence, content, review, ... present"),
    Param("label_column", "str", None, "the label column (classification); default: the one of label, labels, class, ... present"),
    Param("split", "str", "train", "the dataset split to train on"),
    Param("eval_split", "str", None,
          "the split to evaluate on; default: validation, valid or dev when the dataset has one, else "
          "val_fraction of the training split; `none` for no evaluation"),
    Param("dataset_config", "str", None, "the dataset's configuration (subset) name"),
    Param("val_fraction", "float", 0.1, "share of the training split held out when there is no eval split", minimum=0),
    Param("max_length", "int", 256, "tokens per example, capped by what the model's positions allow", minimum=1),
    Param("epochs", "float", 1.0, "passes over the training split (max_steps wins when set)", minimum=0),
    Param("max_steps", "int", -1, "optimizer steps; -1: from epochs", minimum=-1),
    Param("learning_rate", "float", 5e-5, "peak learning rate", minimum=0),
    Param("batch_size", "int", 8,
          "examples per optimizer step, across GPUs and gradient accumulation (the effective batch)", minimum=1),
    Param("per_device_train_batch_size", "int", None, "examples per forward pass per GPU; default: the largest that fits",
          minimum=1),
    Param("gradient_accumulation_steps", "int", None, "forward passes per optimizer step; default: batch_size / "
          "(per-device batch x GPUs)", minimum=1),
    Param("gradient_checkpointing", "bool", None, "recompute activations in the backward pass; default: when memory needs it"),
    Param("precision", "choice", "auto",
          "auto (bf16 on Ampere and newer GPUs, fp16 with loss scaling on older ones, fp32 on CPU), bf16, fp16 or "
          "fp32; mixed precision keeps fp32 master weights whatever the checkpoint's dtype", choices=PRECISIONS),
    Param("bf16", "bool", None, "shorthand: true is precision bf16, false turns mixed precision off"),
    Param("fp16", "bool", None, "shorthand: true is precision fp16, false turns mixed precision off"),
    Param("optim", "str", None, "a transformers optimizer name (adamw_torch, adafactor, paged_adamw_8bit, ...)"),
    Param("weight_decay", "float", 0.0, "AdamW weight decay", minimum=0),
    Param("warmup_ratio", "float", 0.0, "share of the steps with a rising learning rate", minimum=0),
    Param("logging_steps", "int", 10, "steps between two loss lines in the task log", minimum=1),
    Param("save_steps", "int", 200, "steps between two checkpoints (a retried task resumes from the last)", minimum=1),
    Param("save_total_limit", "int", 2, "checkpoints kept", minimum=1),
    Param("seed", "int", 42, "random seed (data order, new heads, LoRA init)"),
    Param("private", "bool", True, "push to a private repo"),
    Param("eval_before", "bool", True, "evaluate once before training, to show the gain"),
    Param("lora", "lora", None,
          "true, or an object {r, alpha, dropout, target_modules}: train a LoRA adapter instead of every weight"),
    Param("quantization", "choice", "auto",
          "auto (load the frozen base in 4 bits when a LoRA run needs it to fit the GPU), 4bit (QLoRA, needs "
          "bitsandbytes and a CUDA GPU) or none", choices=QUANTIZATIONS),
    Param("merge_lora", "bool", False, "merge the adapter into the base and push a full model"),
    Param("relabel", "bool", False, "train a new head when the dataset's labels differ from the model's named labels"),
)
BY_NAME = {p.name: p for p in PARAMS}
# {"key": (kind, default)} of params.lora; `target_modules` is a list of names or "all-linear".
LORA_FIELDS: dict[str, tuple[str, Any]] = {"r": ("int", 8), "alpha": ("int", 16), "dropout": ("float", 0.05),
                                           "target_modules": ("targets", None)}


def read_params(raw: dict | None) -> dict[str, Any]:
    """Every param of `PARAMS` with its value: given (parsed and checked) or its default.

    `lora` becomes None or a dict with every key of `LORA_FIELDS`; `task` its canonical name;
    `precision` absorbs the `bf16`/`fp16` shorthands. Raises `ParamError` naming the param."""
    raw = dict(raw or {})
    unknown = sorted(k for k in raw if k not in BY_NAME)
    if unknown:
        raise ParamError(f"unknown params: {', '.join(unknown)}{_did_you_mean(unknown, BY_NAME)} "
                         f"(known: {', '.join(BY_NAME)})")
    params = {}
    for param in PARAMS:
        value = raw.get(param.name)
        params[param.name] = param.default if value is None else _parse(param, value)
    if params["task"] is not None:
        params["task"] = TASK_ALIASES[params["task"]]
    params["precision"] = _precision(params, explicit="precision" in raw and raw["precision"] is not None)
    if params["lora"] is None and params["merge_lora"]:
        raise ParamError("params.merge_lora needs params.lora (there is no adapter to merge)")
    if params["quantization"] == "4bit" and params["lora"] is None:
        raise ParamError("params.quantization 4bit needs params.lora: 4-bit weights cannot be trained directly",
                         hint='add "lora": true (QLoRA)')
    return params


def explicit(raw: dict | None, name: str) -> bool:
    """Whether the task set `name` (a default is a choice the recipe may adapt, a given value is not)."""
    return (raw or {}).get(name) is not None


# Names other tools use for our params (Trainer's, TRL's, PEFT's scripts).
_OTHER_NAMES = {"lr": "learning_rate", "num_train_epochs": "epochs", "num_epochs": "epochs",
                "max_seq_length": "max_length", "max_seq_len": "max_length", "train_batch_size": "batch_size",
                "gradient_accumulation": "gradient_accumulation_steps", "use_lora": "lora",
                "load_in_4bit": "quantization", "activation_checkpointing": "gradient_checkpointing",
                "lora_r": "lora", "lora_alpha": "lora", "lora_dropout": "lora", "lora_target_modules": "lora"}


def _did_you_mean(unknown: list[str], known) -> str:
    hints = []
    for name in unknown:
        close = ([_OTHER_NAMES[name]] if name in _OTHER_NAMES and _OTHER_NAMES[name] in known
                 else difflib.get_close_matches(name, known, n=1, cutoff=0.75))
        if close:
            hints.append(f"{name} -> {close[0]}")
    return f" (did you mean {'; '.join(hints)}?)" if hints else ""


def _parse(param: Param, value: Any) -> Any:
    if param.kind == "lora":
        return _lora(value)
    parsed = _cast(param.kind, value, f"params.{param.name}", param.choices)
    if param.minimum is not None and parsed < param.minimum:
        raise ParamError(f"params.{param.name} must be at least {param.minimum:g}, got {value!r}")
    return parsed


def _cast(kind: str, value: Any, where: str, choices: tuple[str, ...] = ()) -> Any:
    if kind == "bool":
        return as_bool(value, where)
    if kind in ("int", "float"):
        if isinstance(value, bool):
            raise ParamError(f"{where} must be a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ParamError(f"{where} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ParamError(f"{where} must be a finite number, got {value!r}")
        if kind == "int":
            if number != int(number):
                raise ParamError(f"{where} must be a whole number, got {value!r}")
            return int(number)
        return number
    if not isinstance(value, str):
        raise ParamError(f"{where} must be a string, got {value!r}")
    text = value.strip()
    if choices:
        lowered = text.lower()
        if lowered not in choices:
            raise ParamError(f"{where} {value!r} is not one of: {', '.join(choices)}")
        return lowered
    if not text:
        raise ParamError(f"{where} must not be empty")
    return text


def as_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ParamError(f"{where} must be true or false, got {value!r}")


def _lora(value: Any) -> dict | None:
    if isinstance(value, str):
        value = as_bool(value, "params.lora")
    if value is False:
        return None
    if value is True:
        value = {}
    if not isinstance(value, dict):
        raise ParamError(f"params.lora must be true/false or an object like {{\"r\": 8}}, got {value!r}")
    unknown = sorted(k for k in value if k not in LORA_FIELDS)
    if unknown:
        raise ParamError(f"unknown params.lora keys: {', '.join(unknown)}{_did_you_mean(unknown, LORA_FIELDS)} "
                         f"(known: {', '.join(LORA_FIELDS)})")
    lora = {}
    for key, (kind, default) in LORA_FIELDS.items():
        given = value.get(key)
        where = f"params.lora.{key}"
        if given is None:
            lora[key] = default
        elif kind == "targets":
            lora[key] = _targets(given, where)
        else:
            lora[key] = _cast(kind, given, where)
            if key == "dropout" and not 0 <= lora[key] < 1:
                raise ParamError(f"{where} must be at least 0 and below 1, got {given!r}")
            if key != "dropout" and lora[key] <= 0:
                raise ParamError(f"{where} must be positive, got {given!r}")
    return lora


def _targets(value: Any, where: str) -> str | list[str]:
    if isinstance(value, str):
        names = [part.strip() for part in value.split(",") if part.strip()]
        if len(names) == 1 and names[0].lower() == "all-linear":
            return "all-linear"
    elif isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value):
        names = [v.strip() for v in value]
    else:
        names = []
    if not names:
        raise ParamError(f'{where} must be "all-linear" or a list of module names like ["q_proj", "v_proj"], '
                         f"got {value!r}")
    return names


def _precision(params: dict, explicit: bool) -> str:
    flags = {name: params[name] for name in ("bf16", "fp16") if params[name] is not None}
    if not flags:
        return params["precision"]
    if flags.get("bf16") and flags.get("fp16"):
        raise ParamError("params.bf16 and params.fp16 are both true: choose one precision")
    chosen = next((name for name, on in flags.items() if on), "fp32")
    if explicit and params["precision"] != chosen:
        names = ", ".join(f"{k}={str(v).lower()}" for k, v in flags.items())
        raise ParamError(f"params.precision {params['precision']} contradicts {names}")
    return chosen


def describe() -> list[tuple[str, str, str]]:
    """(name, default as JSON-ish text, doc) for every param, for docs and `recipe params`."""
    rows = []
    for p in PARAMS:
        default = "-" if p.default is None else str(p.default).lower() if isinstance(p.default, bool) else str(p.default)
        rows.append((p.name, default, p.doc))
    return rows
