"""Fine-tune a transformers model from the Hub on a Hub dataset with `Trainer`: a training callback.

`train(task, ctx)` (callback spec `scheduler.recipes.finetune:train`):

- `task.model_id` is loaded with `from_pretrained`, `task.dataset_id` with `datasets.load_dataset`,
  both with the Space's token, from whatever Hub `HF_ENDPOINT` names.
- `params.task`: `text-classification` or `causal-lm`; by default it is read from the model
  config's `architectures` (`...ForSequenceClassification` / `...ForCausalLM`, `...LMHeadModel`).
- Other params (defaults in `DEFAULTS`): epochs, learning_rate, batch_size, max_steps,
  text_column, label_column, max_length, val_fraction, save_steps, seed, split, dataset_config,
  private, lora (true or {r, alpha, dropout, target_modules}), merge_lora, relabel.
- Checkpoints go to `ctx.output_dir/checkpoints`; a task run again after a crash resumes from
  the last complete one instead of starting over.
- `ctx.should_stop()` is checked after every optimizer step; a stop saves a checkpoint and
  returns without pushing.
- The model, tokenizer and a model card are pushed to `OWNER/<model name>-<task id>` (OWNER is
  the token's user), so a retried task overwrites its own repo rather than making another.

The returned dict (the task's `result`) holds the final metrics and the repo id.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

CLASSIFICATION = "text-classification"
CAUSAL_LM = "causal-lm"
_TASK_ALIASES = {
    "text-classification": CLASSIFICATION, "classification": CLASSIFICATION,
    "sequence-classification": CLASSIFICATION, "seq-cls": CLASSIFICATION,
    "causal-lm": CAUSAL_LM, "causal_lm": CAUSAL_LM, "text-generation": CAUSAL_LM, "clm": CAUSAL_LM,
}
DEFAULTS: dict[str, Any] = {
    "epochs": 1.0, "learning_rate": 5e-5, "batch_size": 8, "max_steps": -1, "text_column": "text",
    "label_column": "label", "max_length": 256, "val_fraction": 0.1, "save_steps": 200,
    "save_total_limit": 2, "logging_steps": 10, "seed": 42, "split": "train", "dataset_config": None,
    "weight_decay": 0.0, "warmup_ratio": 0.0, "gradient_accumulation_steps": 1, "private": True,
    "lora": None, "merge_lora": False, "relabel": False, "eval_before": True,
}
CHECKPOINTS = "checkpoints"
FINAL = "final"
_PROGRESS_EVERY_S = 1.0
_DEFAULT_LABEL = re.compile(r"^LABEL_\d+$")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_owners: dict[str, str] = {}


class DatasetError(ValueError):
    """The dataset does not fit the task: the message names the column and the param to change."""


# ---------------------------------------------------------------- pure helpers (no torch needed)


def read_params(raw: dict | None) -> dict[str, Any]:
    params = dict(DEFAULTS)
    params.update({k: v for k, v in (raw or {}).items() if v is not None})
    casts = {"epochs": float, "learning_rate": float, "batch_size": int, "max_steps": int,
             "max_length": int, "val_fraction": float, "save_steps": int, "save_total_limit": int,
             "logging_steps": int, "seed": int, "weight_decay": float, "warmup_ratio": float,
             "gradient_accumulation_steps": int}
    for key, cast in casts.items():
        try:
            params[key] = cast(params[key])
        except (TypeError, ValueError):
            raise ValueError(f"params.{key} must be a number, got {params[key]!r}") from None
    for key in ("private", "merge_lora", "relabel", "eval_before"):
        params[key] = _as_bool(params[key], key)
    lora = params["lora"]
    if isinstance(lora, str):
        lora = _as_bool(lora, "lora")
    if lora is not None and not isinstance(lora, (bool, dict)):
        raise ValueError(f"params.lora must be true/false or an object like {{\"r\": 8}}, got {lora!r}")
    params["lora"] = {} if lora is True else (lora or None)
    return params


def _as_bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"params.{key} must be true or false, got {value!r}")


def task_kind(requested: str | None, architectures: list[str] | None, has_label_column: bool | None = None) -> str:
    """The training objective: asked for, else what the model's architecture was made for."""
    if requested:
        kind = _TASK_ALIASES.get(str(requested).strip().lower())
        if kind is None:
            raise ValueError(f"params.task {requested!r} is not one of: text-classification, causal-lm")
        return kind
    for arch in architectures or []:
        if arch.endswith("ForSequenceClassification"):
            return CLASSIFICATION
        if arch.endswith(("ForCausalLM", "LMHeadModel")):
            return CAUSAL_LM
    if has_label_column is None:
        raise ValueError(f"cannot tell the task from the model's architectures {architectures}; set params.task")
    return CLASSIFICATION if has_label_column else CAUSAL_LM


def last_complete_checkpoint(folder: str | os.PathLike) -> tuple[Path, int] | None:
    """The newest `checkpoint-N` whose trainer state was fully written (it is written last, so a
    process killed while saving leaves a checkpoint without one), with its step."""
    found = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return None
    for entry in entries:
        match = _CHECKPOINT.match(entry.name)
        if match and entry.is_dir():
            found.append((int(match.group(1)), entry))
    for step, path in sorted(found, reverse=True):
        try:
            state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(state, dict) and state.get("global_step") == step:
            return path, step
    return None


def output_repo_name(model_id: str, task_id: str) -> str:
    suffix = f"-{task_id}"
    base = re.sub(r"[^A-Za-z0-9._-]", "-", model_id.split("/")[-1]).strip("-.") or "model"
    return f"{base[: 96 - len(suffix)]}{suffix}"


def check_columns(columns: list[str], kind: str, params: dict, dataset_id: str) -> None:
    needed = [("text_column", params["text_column"])]
    if kind == CLASSIFICATION:
        needed.append(("label_column", params["label_column"]))
    for param, column in needed:
        if column not in columns:
            raise DatasetError(
                f"dataset {dataset_id} has no column {column!r} (params.{param}); its columns are: "
                f"{', '.join(columns) or 'none'}")


def plan_labels(values: list, class_names: list[str] | None, config_label2id: dict[str, int] | None,
                *, column: str, dataset_id: str, model_id: str, relabel: bool) -> tuple[list[str], list[int]]:
    """The label names the model will have, and each example's label id.

    A config whose labels were named by someone (not transformers' `LABEL_0, LABEL_1` defaults)
    is kept: every dataset label must be one of them, unless `params.relabel` asks for a new head.
    """
    if class_names is not None:  # a ClassLabel column stores ids; compare by name
        values = [class_names[v] if isinstance(v, int) and 0 <= v < len(class_names) else v for v in values]
    present = sorted({str(v) for v in values if v is not None and str(v).strip() != ""},
                     key=lambda s: (not s.lstrip("-").isdigit(), int(s) if s.lstrip("-").isdigit() else 0, s))
    missing = sum(1 for v in values if v is None or str(v).strip() == "")
    if missing:
        raise DatasetError(f"column {column!r} of dataset {dataset_id} has {missing} empty label(s)")
    named = config_label2id and not all(_DEFAULT_LABEL.match(str(k)) for k in config_label2id)
    if named and not relabel:
        known = {str(k): int(i) for k, i in config_label2id.items()}
        by_id = {str(i): int(i) for i in known.values()}
        unknown = [v for v in present if v not in known and v not in by_id]
        if unknown:
            raise DatasetError(
                f"column {column!r} of dataset {dataset_id} has labels not in {model_id}'s config: "
                f"{', '.join(map(repr, unknown[:10]))}{' ...' if len(unknown) > 10 else ''}; the config knows "
                f"{', '.join(map(repr, sorted(known, key=known.get)))} (set params.relabel to train a new head)")
        names = [name for name, _ in sorted(known.items(), key=lambda kv: kv[1])]
        ids = [known[str(v)] if str(v) in known else by_id[str(v)] for v in values]
        return names, ids
    names = list(class_names) if class_names is not None else present  # keep the dataset's own order
    index = {name: i for i, name in enumerate(names)}
    return names, [index[str(v)] for v in values]


def model_card(*, repo_id: str, task, kind: str, params: dict, metrics: dict, lora: bool, merged: bool) -> str:
    shown = {k: v for k, v in sorted(params.items()) if v is not None and k != "recipe"}
    param_rows = "\n".join(f"| {k} | `{json.dumps(v)}` |" for k, v in shown.items())
    metric_rows = "\n".join(f"| {k} | {v} |" for k, v in metrics.items())
    link = task_link(task.id)
    pipeline = "text-classification" if kind == CLASSIFICATION else "text-generation"
    library = "peft" if lora and not merged else "transformers"
    adapter = ""
    if lora and not merged:
        adapter = (f"\nThis repo holds a LoRA adapter: load it with `peft` "
                   f"(`AutoPeftModel...from_pretrained(\"{repo_id}\")`) on top of `{task.model_id}`.\n")
    return f"""---
library_name: {library}
pipeline_tag: {pipeline}
base_model: {task.model_id}
datasets:
- {task.dataset_id}
tags:
- space-scheduler
- {pipeline}
{"- lora" + chr(10) if lora else ""}---

# {repo_id.split('/')[-1]}

`{task.model_id}` fine-tuned for {pipeline} on [{task.dataset_id}]({_hub_url('datasets/' + task.dataset_id)})
by the scheduler task {link}.
{adapter}
## Final metrics

| metric | value |
|---|---|
{metric_rows}

## Training parameters

| param | value |
|---|---|
{param_rows}

Trained {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with `transformers.Trainer`.
"""


def _hub_url(path: str) -> str:
    return f"{os.environ.get('HF_ENDPOINT', 'https://huggingface.co').rstrip('/')}/{path}"


def task_link(task_id: str) -> str:
    """The task's row lives in the queue dataset's tasks.csv; link to it when the worker says where."""
    queue = os.environ.get("SCHEDULER_QUEUE", "")
    if queue.startswith("hf://datasets/"):
        return f"[`{task_id}`]({_hub_url('datasets/' + queue[len('hf://datasets/'):].strip('/'))}/blob/main/tasks.csv)"
    space = os.environ.get("SPACE_ID")
    if space:
        return f"`{task_id}` (queue of the Space [{space}]({_hub_url('spaces/' + space)}))"
    return f"`{task_id}`"


# ---------------------------------------------------------------- the callback


def train(task, ctx) -> dict:
    params = read_params(task.params)
    _quiet_libraries()

    import datasets
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    token = ctx.api.token
    transformers.set_seed(params["seed"])
    config = AutoConfig.from_pretrained(task.model_id, token=token)

    ctx.log(f"loading dataset {task.dataset_id} (split {params['split']})")
    data = datasets.load_dataset(task.dataset_id, params["dataset_config"], split=params["split"], token=token)
    kind = task_kind(params.get("task"), getattr(config, "architectures", None),
                     params["label_column"] in data.column_names)
    check_columns(data.column_names, kind, params, task.dataset_id)
    data = data.filter(lambda row: isinstance(row[params["text_column"]], str) and row[params["text_column"]].strip() != "")
    if len(data) == 0:
        raise DatasetError(f"column {params['text_column']!r} of dataset {task.dataset_id} has no non-empty text")

    labels = None
    if kind == CLASSIFICATION:
        feature = data.features[params["label_column"]]
        class_names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
        labels, label_ids = plan_labels(
            data[params["label_column"]], class_names, getattr(config, "label2id", None),
            column=params["label_column"], dataset_id=task.dataset_id, model_id=task.model_id,
            relabel=params["relabel"])
        data = data.remove_columns([params["label_column"]]).add_column("labels", label_ids)

    ctx.log(f"{kind}: {len(data)} examples" + (f", labels {labels}" if labels else ""))
    tokenizer = AutoTokenizer.from_pretrained(task.model_id, token=token)
    if tokenizer.pad_token is None:  # GPT-2-like tokenizers have none; batches need one
        tokenizer.pad_token = tokenizer.eos_token
    model = _load_model(task, kind, labels, token, params, ctx)

    max_length = min(params["max_length"], getattr(tokenizer, "model_max_length", params["max_length"]) or params["max_length"])
    text_column = params["text_column"]

    def tokenize(batch):
        return tokenizer(batch[text_column], truncation=True, max_length=max_length)

    keep = {"labels"} if kind == CLASSIFICATION else set()
    data = data.map(tokenize, batched=True, remove_columns=[c for c in data.column_names if c not in keep])
    train_set, eval_set = data, None
    if params["val_fraction"] > 0 and len(data) >= 20:
        parts = data.train_test_split(test_size=params["val_fraction"], seed=params["seed"])
        train_set, eval_set = parts["train"], parts["test"]

    return _fit_and_push(task, ctx, params, kind, model, tokenizer, train_set, eval_set, labels)


def _quiet_libraries() -> None:
    # Progress bars redraw with \r, which the task log (line based) turns into walls of text.
    import datasets
    import transformers
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_warning()


def _load_model(task, kind: str, labels: list[str] | None, token, params: dict, ctx):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if kind == CLASSIFICATION:
        # A base without a matching head (or params.relabel) gets a fresh one of the right size.
        model = AutoModelForSequenceClassification.from_pretrained(
            task.model_id, token=token, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)}, ignore_mismatched_sizes=True)
    else:
        model = AutoModelForCausalLM.from_pretrained(task.model_id, token=token)
    if model.config.pad_token_id is None and getattr(model.config, "eos_token_id", None) is not None:
        model.config.pad_token_id = model.config.eos_token_id
    if params["lora"] is not None:
        from peft import LoraConfig, TaskType, get_peft_model

        lora = dict(params["lora"])
        config = LoraConfig(
            task_type=TaskType.SEQ_CLS if kind == CLASSIFICATION else TaskType.CAUSAL_LM,
            r=int(lora.get("r", 8)), lora_alpha=int(lora.get("alpha", 16)),
            lora_dropout=float(lora.get("dropout", 0.05)), target_modules=lora.get("target_modules"))
        model = get_peft_model(model, config)
        trainable, total = model.get_nb_trainable_parameters()
        ctx.log(f"LoRA r={config.r}: {trainable:,} of {total:,} parameters trainable")
    return model


def _fit_and_push(task, ctx, params, kind, model, tokenizer, train_set, eval_set, labels) -> dict:
    import numpy as np
    import torch
    from transformers import (DataCollatorForLanguageModeling, DataCollatorWithPadding, PrinterCallback,
                              Trainer, TrainerCallback, TrainingArguments)

    checkpoints = Path(ctx.output_dir) / CHECKPOINTS
    resume = last_complete_checkpoint(checkpoints)
    if resume:
        ctx.log(f"attempt {task.attempts}: resuming from {resume[0].name}")
    elif task.attempts > 1:
        ctx.log(f"attempt {task.attempts}: no complete checkpoint to resume from, starting over")

    args = TrainingArguments(
        output_dir=str(checkpoints), num_train_epochs=params["epochs"], max_steps=params["max_steps"],
        learning_rate=params["learning_rate"], per_device_train_batch_size=params["batch_size"],
        per_device_eval_batch_size=params["batch_size"], weight_decay=params["weight_decay"],
        **_warmup(TrainingArguments, params["warmup_ratio"]), gradient_accumulation_steps=params["gradient_accumulation_steps"],
        logging_steps=params["logging_steps"], save_strategy="steps", save_steps=params["save_steps"],
        save_total_limit=params["save_total_limit"], seed=params["seed"], report_to="none",
        disable_tqdm=True, eval_strategy="no", fp16=torch.cuda.is_available() and bool(params.get("fp16", False)),
        dataloader_num_workers=0, dataloader_pin_memory=torch.cuda.is_available(),
    )
    collator = (DataCollatorWithPadding(tokenizer) if kind == CLASSIFICATION
                else DataCollatorForLanguageModeling(tokenizer, mlm=False))

    def compute_metrics(prediction):
        logits, label_ids = prediction
        logits = logits[0] if isinstance(logits, tuple) else logits
        return {"accuracy": float((np.argmax(logits, axis=-1) == label_ids).mean())}

    reporter = _Reporter(ctx)

    class Relay(TrainerCallback):
        def on_step_end(self, _args, state, control, **_):
            reporter.step(state.global_step, state.max_steps)
            if ctx.should_stop():
                reporter.stopped = True
                control.should_training_stop = True
                control.should_save = True  # so a requeued task picks up from here
            return control

        def on_log(self, _args, state, _control, logs=None, **_):
            reporter.logged(state.global_step, state.max_steps, logs or {})

    trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                      data_collator=collator, processing_class=tokenizer, callbacks=[Relay()],
                      compute_metrics=compute_metrics if kind == CLASSIFICATION else None)
    # Without tqdm, Trainer prints every log dict as well; Relay already logs them one line each.
    trainer.remove_callback(PrinterCallback)

    metrics: dict[str, Any] = {"task": kind, "train_examples": len(train_set)}
    if eval_set is not None:
        metrics["eval_examples"] = len(eval_set)
        if params["eval_before"]:
            before = trainer.evaluate()
            metrics["initial_eval_loss"] = _round(before.get("eval_loss"))
            ctx.log(f"before training: eval loss {metrics['initial_eval_loss']}")

    if ctx.should_stop():  # cancelled while loading; Relay only looks after each step
        ctx.log("stopped before training started")
        return {**metrics, "stopped": True, "global_step": resume[1] if resume else 0}
    started = time.monotonic()
    output = trainer.train(resume_from_checkpoint=str(resume[0]) if resume else None)
    step = trainer.state.global_step
    start_step = resume[1] if resume else 0
    metrics.update(train_loss=_round(output.training_loss), global_step=step, max_steps=trainer.state.max_steps,
                   resumed_from_step=start_step, steps_this_attempt=step - start_step,
                   epochs=_round(trainer.state.epoch), train_seconds=round(time.monotonic() - started, 2))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    if losses:
        metrics.update(first_logged_loss=_round(losses[0]), last_logged_loss=_round(losses[-1]))
    if reporter.stopped:
        ctx.log(f"stopped at step {step}; checkpoint kept in {checkpoints.name}/, nothing pushed")
        return {**metrics, "stopped": True}

    if eval_set is not None:
        after = trainer.evaluate()
        metrics["eval_loss"] = _round(after.get("eval_loss"))
        if "eval_accuracy" in after:
            metrics["eval_accuracy"] = _round(after["eval_accuracy"])
        if kind == CAUSAL_LM and after.get("eval_loss") is not None:
            metrics["eval_perplexity"] = _round(math.exp(min(after["eval_loss"], 50)))
    ctx.progress(1.0, f"trained {step} steps; pushing")

    repo_id = _push(task, ctx, params, kind, trainer, tokenizer, metrics)
    ctx.log(f"pushed to {repo_id}")
    return {**metrics, "repo_id": repo_id}


def _warmup(arguments_class, ratio: float) -> dict:
    # transformers 5 folded warmup_ratio into warmup_steps (a float below 1 is a ratio).
    if "warmup_ratio" in getattr(arguments_class, "__dataclass_fields__", {}):
        return {"warmup_ratio": ratio}
    return {"warmup_steps": float(ratio)} if ratio else {}


class _Reporter:
    """Progress at most once a second (each one is a file write and a log line), loss as logged."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.stopped = False
        self._last = 0.0
        self._loss: float | None = None

    def step(self, step: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last >= _PROGRESS_EVERY_S or step >= total:
            self._last = now
            loss = f" loss {self._loss:.4f}" if self._loss is not None else ""
            self.ctx.progress(step / max(1, total), f"step {step}/{total}{loss}")

    def logged(self, step: int, total: int, logs: dict) -> None:
        if "loss" in logs:
            self._loss = float(logs["loss"])
            extra = "".join(f" {k} {logs[k]:.4g}" for k in ("learning_rate", "grad_norm", "epoch")
                            if isinstance(logs.get(k), (int, float)))
            self.ctx.log(f"step {step}/{total} loss {self._loss:.4f}{extra}")


def _round(value, digits: int = 5):
    return None if value is None else round(float(value), digits)


def _owner(api) -> str:
    key = str(api.endpoint)
    if key not in _owners:  # whoami is tightly rate-limited on the Hub
        _owners[key] = api.whoami()["name"]
    return _owners[key]


def _push(task, ctx, params, kind, trainer, tokenizer, metrics) -> str:
    api = ctx.api
    repo_id = f"{_owner(api)}/{output_repo_name(task.model_id, task.id)}"
    final = Path(ctx.output_dir) / FINAL
    shutil.rmtree(final, ignore_errors=True)  # an earlier attempt's files must not be pushed with these
    model = trainer.model
    lora = params["lora"] is not None
    merged = lora and params["merge_lora"]
    if merged:
        model = model.merge_and_unload()
    model.save_pretrained(final)
    tokenizer.save_pretrained(final)
    (final / "README.md").write_text(
        model_card(repo_id=repo_id, task=task, kind=kind, params=params, metrics=metrics, lora=lora, merged=merged),
        encoding="utf-8")
    (final / "training_metrics.json").write_text(
        json.dumps({"metrics": metrics, "log_history": trainer.state.log_history}, indent=2, default=str),
        encoding="utf-8")
    api.create_repo(repo_id, repo_type="model", private=params["private"], exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(final), commit_message=f"Fine-tuned by task {task.id}")
    return repo_id
