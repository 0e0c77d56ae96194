"""Fine-tune a transformers model from the Hub on a Hub dataset with `Trainer`: a training callback.

`train(task, ctx)` (callback spec `scheduler.recipes.finetune:train`):

- `task.model_id` and `task.dataset_id` are read with the Space's token from whatever Hub
  `HF_ENDPOINT` names; a repo that does not exist or cannot be read fails the task at once.
- `task.params`: the table in `scheduler/recipes/params.py` (`PARAMS`); an unknown param is
  refused with the list of known ones. The task kind, the text and label columns and the
  evaluation split are read from the model and the dataset when unambiguous, else the error
  names the param to set.
- The hardware is what this process physically has (torch's view; CPU here, the task's flavor
  on a Space): `plan.make_plan` chooses precision, method (full, LoRA, QLoRA), per-device batch,
  gradient accumulation, gradient checkpointing and launcher; several GPUs run one process each
  under `accelerate launch` (`launch.py`). The plan is logged and written into the model card.
- Checkpoints go to `ctx.output_dir/checkpoints`; a task run again after a crash resumes from
  the last complete one instead of starting over.
- `ctx.should_stop()` is checked after every optimizer step; a stop saves a checkpoint and
  returns without pushing.
- Failures that would repeat (a bad param or dataset, out of memory, a loss that turns NaN) raise
  `scheduler.errors.NonRetryable` subclasses (`errors.py`), with a hint.
- The model (or the LoRA adapter with the config of its head), tokenizer and a model card are
  pushed to `OWNER/<model name>-<task id>` (OWNER is the token's user), so a retried task
  overwrites its own repo rather than making another.

The returned dict (the task's `result`) holds the final metrics (finite numbers only), the
training configuration used and the repo id.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .architecture import abilities, effective_max_length, infer_task, position_limit
from .card import load_snippet, model_card
from .data import load_splits, prepare, text_and_label_columns, tokenize
from .errors import DatasetError, ModelError, OutOfMemory, ParamError
from .params import CAUSAL_LM, CLASSIFICATION, read_params
from .plan import Device, Request, make_plan, memory_hints, size_label

__all__ = ["train", "run", "detect_device", "read_params", "last_complete_checkpoint", "output_repo_name",
           "DatasetError", "CLASSIFICATION", "CAUSAL_LM", "CHECKPOINTS", "FINAL"]

CHECKPOINTS = "checkpoints"
FINAL = "final"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_owners: dict[str, str] = {}


def train(task, ctx, device: Device | None = None) -> dict:
    """The callback. `device` defaults to what torch sees; several devices start one process
    each (DDP through `accelerate launch`), this process waiting for them."""
    from .fit import check_optim

    params = read_params(task.params)
    check_optim(params["optim"])
    device = device or detect_device()
    ctx.log(f"task flavor {task.hardware}; this process has {device.describe()}")
    check_repos(ctx.api, task)
    if device.count > 1:
        from .launch import run_distributed

        return run_distributed(task, ctx, device)
    return run(task, ctx, params, device)


def detect_device() -> Device:
    """The accelerator this process physically has: CUDA devices as torch reports them, else the CPU and its RAM."""
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return Device("cuda", props.name, int(props.total_memory), torch.cuda.device_count(), (props.major, props.minor))
    return Device("cpu", "CPU", _ram_bytes())


def _ram_bytes() -> int:
    """Physical memory, or the container's cgroup limit when lower (a Space's container sees the
    host's RAM in /proc but is held to its flavor's)."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 16 * 10 ** 9
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            ram = min(ram, int(text))
    return int(ram)


def check_repos(api, task) -> None:
    """A model or dataset that does not exist, is gated or private to someone else fails at once."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    for repo_type, repo_id, error in (("model", task.model_id, ModelError), ("dataset", task.dataset_id, DatasetError)):
        try:
            api.repo_info(repo_id, repo_type=repo_type)
        except GatedRepoError:
            raise error(f"{repo_type} {repo_id} is gated", hint="accept its conditions on the Hub with the account "
                        "whose token the Space uses") from None
        except RepositoryNotFoundError:
            raise error(f"{repo_type} {repo_id} does not exist or the Space's token cannot read it",
                        hint=f"check the {repo_type} id, or give the token access") from None
    if not api.file_exists(task.model_id, "config.json"):
        raise ModelError(f"model {task.model_id} has no config.json: it is not a transformers model")


@dataclass
class Prepared:
    """The dataset as the run uses it: task kind, columns, label names, raw splits."""

    kind: str
    text_column: str
    label_column: str | None
    labels: list[str] | None
    train: Any
    eval: Any | None
    eval_source: str


def run(task, ctx, params: dict, device: Device, rank: int = 0) -> dict:
    """One training process: load, plan, fit, evaluate, push (rank 0). `rank` > 0 in DDP."""
    main = rank == 0
    log = ctx.log if main else (lambda _message: None)
    _quiet_libraries()

    import transformers
    from transformers import AutoConfig

    from .fit import fit_batch_to_gpu, memory_errors, training_arguments
    from .models import apply_lora, load_model, load_tokenizer, set_pad_token, shape_of

    token = ctx.api.token
    transformers.set_seed(params["seed"])
    try:
        config = AutoConfig.from_pretrained(task.model_id, token=token)
    except ValueError as exc:  # an architecture this transformers does not know (remote code is never run)
        raise ModelError(f"model {task.model_id} cannot be loaded by transformers {transformers.__version__}: {exc}") from None
    data = _prepare_data(task, params, config, token, log)
    tokenizer, added_pad = load_tokenizer(task.model_id, token, config)
    max_length = _max_length(params, tokenizer, config, log)

    plan = make_plan(device, shape_of(config, data.kind, data.labels), Request.from_params(params, max_length))
    if not plan.fits:
        raise OutOfMemory(f"{task.model_id} ({size_label(plan.shape.n_params)} parameters) {plan.summary()}",
                          hint="try " + ", ".join(memory_hints(plan)))
    if plan.method == "qlora" and params["merge_lora"]:
        raise ParamError("params.merge_lora cannot merge into a 4-bit base (this run loads the base in 4 bits)",
                         hint='push the adapter (the default), or "quantization": "none" on a bigger flavor')
    log(f"plan: {plan.summary()}")
    for note in plan.notes:
        log(f"plan: {note}")

    with memory_errors(plan, "loading the model"):
        loaded = load_model(task.model_id, token, config, data.kind, data.labels, plan,
                            int(os.environ.get("LOCAL_RANK", rank)))
    set_pad_token(loaded.model, tokenizer, added_pad)
    if loaded.new_keys:
        log(f"initialised at random (not in the checkpoint): {', '.join(sorted(loaded.new_keys))}")
    if params["lora"] is not None:
        loaded = apply_lora(loaded, data.kind, params["lora"], plan, config.model_type)
        trainable, total = loaded.model.get_nb_trainable_parameters()
        log(f"LoRA r={params['lora']['r']} on {loaded.lora_targets}"
            + (f", trained in full: {', '.join(loaded.modules_to_save)}" if loaded.modules_to_save else "")
            + f": {trainable:,} of {total:,} parameters trainable")

    checkpoints = Path(ctx.output_dir) / CHECKPOINTS
    args = training_arguments(plan, params, str(checkpoints))
    with memory_errors(plan, "measuring one training step"):
        measured = fit_batch_to_gpu(plan, loaded.model, args, vocab_size=len(tokenizer), kind=data.kind,
                                    pad_token_id=tokenizer.pad_token_id)
    if measured is not plan:
        plan = measured
        log(f"plan: {plan.notes[-1]}; now {plan.summary()}")
        args = training_arguments(plan, params, str(checkpoints))
    return _fit_and_push(task, ctx, params, plan, args, loaded, tokenizer, data, max_length, main, log)


def _prepare_data(task, params: dict, config, token, log) -> Prepared:
    splits = load_splits(task.dataset_id, params, token)
    text_column, label_column = text_and_label_columns(splits, params, task.dataset_id)
    kind = infer_task(params["task"], abilities(config), label_column, model_id=task.model_id,
                      dataset_id=task.dataset_id, columns=splits.columns)
    train_raw, eval_raw, labels = prepare(splits, kind=kind, text_column=text_column, label_column=label_column,
                                          params=params, dataset_id=task.dataset_id, model_id=task.model_id,
                                          config_label2id=getattr(config, "label2id", None))
    log(f"{kind}: {len(train_raw)} training examples from column {text_column!r}"
        + (f", labels {labels} from column {label_column!r}" if labels else "")
        + (f"; evaluation on {len(eval_raw)} examples of {splits.eval_source}" if eval_raw is not None else "; no evaluation"))
    return Prepared(kind, text_column, label_column if kind == CLASSIFICATION else None, labels, train_raw, eval_raw,
                    splits.eval_source)


def _max_length(params: dict, tokenizer, config, log) -> int:
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    positions = position_limit(config.model_type, getattr(text_config, "max_position_embeddings", None),
                               getattr(text_config, "pad_token_id", None))
    max_length = effective_max_length(params["max_length"], tokenizer.model_max_length, positions)
    if max_length < params["max_length"]:
        log(f"max_length {params['max_length']} capped to {max_length}: what the tokenizer and the model's "
            f"{positions or 'unlimited'} positions take")
    return max_length


def _fit_and_push(task, ctx, params, plan, args, loaded, tokenizer, data: Prepared, max_length: int, main: bool,
                  log) -> dict:
    from .fit import Reporter, any_rank, check_finite, make_trainer, memory_errors

    classifier = data.kind == CLASSIFICATION
    train_set = tokenize(data.train, tokenizer, data.text_column, max_length, classifier)
    eval_set = tokenize(data.eval, tokenizer, data.text_column, max_length, classifier)
    reporter = Reporter(ctx, main)
    trainer = make_trainer(model=loaded.model, args=args, train_set=train_set, eval_set=eval_set,
                           collator=_collator(data.kind, tokenizer), tokenizer=tokenizer, ctx=ctx, reporter=reporter,
                           compute_metrics=_accuracy if classifier else None)
    checkpoints = Path(args.output_dir)
    resume = last_complete_checkpoint(checkpoints)
    if resume:
        log(f"attempt {task.attempts}: resuming from {resume[0].name}")
    elif task.attempts > 1:
        log(f"attempt {task.attempts}: no complete checkpoint to resume from, starting over")

    metrics: dict[str, Any] = {"task": data.kind, "train_examples": len(train_set)}
    if eval_set is not None:
        metrics["eval_examples"] = len(eval_set)
        if params["eval_before"]:
            with memory_errors(plan, "evaluating"):
                before = trainer.evaluate()
            metrics["initial_eval_loss"] = _round(before.get("eval_loss"))
            log(f"before training: eval loss {metrics['initial_eval_loss']}")

    if any_rank([ctx.should_stop()], args.device)[0]:  # cancelled while loading; Relay looks after each step
        log("stopped before training started")
        return {**metrics, "stopped": True, "global_step": resume[1] if resume else 0}
    started = time.monotonic()
    with memory_errors(plan, "training"):
        output = trainer.train(resume_from_checkpoint=str(resume[0]) if resume else None)
    step = trainer.state.global_step
    start_step = resume[1] if resume else 0
    metrics.update(train_loss=output.training_loss, global_step=step, max_steps=trainer.state.max_steps,
                   resumed_from_step=start_step, steps_this_attempt=step - start_step,
                   epochs=_round(trainer.state.epoch), train_seconds=round(time.monotonic() - started, 2))
    check_finite(metrics, ("train_loss",), reporter)
    metrics["train_loss"] = _round(metrics["train_loss"])
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    if losses:
        metrics.update(first_logged_loss=_round(losses[0]), last_logged_loss=_round(losses[-1]))
    if reporter.stopped:
        log(f"stopped at step {step}; checkpoint kept in {checkpoints.name}/, nothing pushed")
        return _finite({**metrics, "stopped": True})

    if eval_set is not None:
        with memory_errors(plan, "evaluating"):
            after = trainer.evaluate()
        metrics["eval_loss"] = after.get("eval_loss")
        check_finite(metrics, ("eval_loss",), reporter)
        metrics["eval_loss"] = _round(metrics["eval_loss"])
        if "eval_accuracy" in after:
            metrics["eval_accuracy"] = _round(after["eval_accuracy"])
        if data.kind == CAUSAL_LM and after.get("eval_loss") is not None:
            metrics["eval_perplexity"] = _round(math.exp(min(after["eval_loss"], 50)))
    if not main:
        return {}
    used = used_settings(task, plan, args, trainer, loaded, params, data, max_length)
    ctx.progress(1.0, f"trained {step} steps; pushing")
    repo_id = push(task, ctx, params, data.kind, trainer, tokenizer, _finite(metrics), used, loaded.mismatched_head)
    log(f"pushed to {repo_id}")
    return _finite({**metrics, "training": used, "repo_id": repo_id})


def used_settings(task, plan, args, trainer, loaded, params, data: Prepared, max_length: int) -> dict:
    """What the run actually used, read back from the Trainer's arguments and the loaded model."""
    checkpointing = getattr(args, "activation_checkpointing", None)
    if checkpointing is None:
        checkpointing = getattr(args, "gradient_checkpointing", False)
    precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
    used: dict[str, Any] = {
        "flavor": task.hardware, "device": plan.device.describe(), "task": data.kind, "method": plan.method,
        "text_column": data.text_column}
    if data.label_column:
        used.update(label_column=data.label_column, labels=data.labels)
    used.update({
        "evaluation": data.eval_source or "none", "max_length": max_length, "epochs": args.num_train_epochs,
        "max_steps": trainer.state.max_steps, "learning_rate": args.learning_rate,
        "batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps, "processes": args.world_size,
        "launcher": plan.launcher, "precision": precision, "base_weights": plan.weights,
        "gradient_checkpointing": bool(checkpointing), "optim": getattr(args.optim, "value", str(args.optim)),
        "weight_decay": args.weight_decay, "warmup_ratio": params["warmup_ratio"], "seed": args.seed})
    if params["lora"] is not None:
        lora = params["lora"]
        used.update(lora_r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                    lora_target_modules=loaded.lora_targets, modules_to_save=loaded.modules_to_save,
                    merged=params["merge_lora"])
    return used


def _collator(kind: str, tokenizer):
    from transformers import DataCollatorForLanguageModeling, DataCollatorWithPadding

    return DataCollatorWithPadding(tokenizer) if kind == CLASSIFICATION else DataCollatorForLanguageModeling(tokenizer, mlm=False)


def _accuracy(prediction):
    import numpy as np

    logits, label_ids = prediction
    logits = logits[0] if isinstance(logits, tuple) else logits
    return {"accuracy": float((np.argmax(logits, axis=-1) == label_ids).mean())}


def _quiet_libraries() -> None:
    # Progress bars redraw with \r, which the task log (line based) turns into walls of text; the
    # load report lists every key of a new head, which the recipe says in one line.
    import datasets
    import transformers
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def _round(value, digits: int = 5):
    """Rounded, and None for NaN or infinity: a task's result is JSON, which has neither."""
    if value is None or not math.isfinite(float(value)):
        return None
    return round(float(value), digits)


def _finite(metrics: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


# ---------------------------------------------------------------- checkpoints and the pushed repo


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


def _owner(api) -> str:
    key = str(api.endpoint)
    if key not in _owners:  # whoami is tightly rate-limited on the Hub
        _owners[key] = api.whoami()["name"]
    return _owners[key]


def push(task, ctx, params, kind, trainer, tokenizer, metrics, used, mismatched_head: bool) -> str:
    """Save and upload, in one commit: the model or the LoRA adapter (for a classifier, with the
    config of its head: labels, their number and the pad token), tokenizer, card and metrics."""
    from .fit import check_weights_finite

    api = ctx.api
    repo_id = f"{_owner(api)}/{output_repo_name(task.model_id, task.id)}"
    final = Path(ctx.output_dir) / FINAL
    shutil.rmtree(final, ignore_errors=True)  # an earlier attempt's files must not be pushed with these
    model = trainer.model
    check_weights_finite(model)
    adapter = params["lora"] is not None and not params["merge_lora"]
    if params["lora"] is not None and params["merge_lora"]:
        model = model.merge_and_unload()
    model.save_pretrained(final)
    if adapter and kind == CLASSIFICATION:
        base = model.get_base_model()
        config = copy.deepcopy(base.config)
        config.architectures = [type(base).__name__]
        config.save_pretrained(final)
    tokenizer.save_pretrained(final)
    snippet = load_snippet(repo_id=repo_id, base_id=task.model_id, kind=kind, adapter=adapter,
                           mismatched_head=mismatched_head)
    (final / "README.md").write_text(
        model_card(repo_id=repo_id, task=task, kind=kind, metrics=metrics, used=used, adapter=adapter, snippet=snippet),
        encoding="utf-8")
    (final / "training_metrics.json").write_text(
        json.dumps({"metrics": metrics, "training": used, "log_history": trainer.state.log_history}, indent=2,
                   default=str), encoding="utf-8")
    api.create_repo(repo_id, repo_type="model", private=params["private"], exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(final), commit_message=f"Fine-tuned by task {task.id}")
    return repo_id
