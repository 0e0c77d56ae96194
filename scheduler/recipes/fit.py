"""Running `Trainer` as a plan says: its arguments, progress and stop requests relayed to the task,
a loss that turns non-finite ending the run, the per-device batch measured on a GPU before
training, and out-of-memory turned into a non-retryable error with what to change.

In a multi-process (DDP) run every rank must take the same decisions at the same step, or the
others wait forever in the next gradient all-reduce: stop and divergence flags are all-reduced.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from .errors import Diverged, OutOfMemory, ParamError
from .plan import Plan, memory_hints, optimizer_state_bytes, search_batch_size

_PROGRESS_EVERY_S = 1.0


def training_arguments(plan: Plan, params: dict, output_dir: str):
    """TrainingArguments from the plan (batch, accumulation, precision, checkpointing, device)
    and the params (schedule, optimizer, checkpoints). Raises ParamError for an unknown `optim`."""
    from transformers import TrainingArguments

    fields = TrainingArguments.__dataclass_fields__
    kwargs: dict[str, Any] = dict(
        output_dir=output_dir, num_train_epochs=params["epochs"], max_steps=params["max_steps"],
        learning_rate=params["learning_rate"], per_device_train_batch_size=plan.per_device_batch,
        per_device_eval_batch_size=plan.per_device_batch, gradient_accumulation_steps=plan.accumulation,
        weight_decay=params["weight_decay"], logging_steps=params["logging_steps"], save_strategy="steps",
        save_steps=params["save_steps"], save_total_limit=params["save_total_limit"], seed=params["seed"],
        report_to="none", disable_tqdm=True, eval_strategy="no", bf16=plan.precision == "bf16",
        fp16=plan.precision == "fp16", use_cpu=not plan.device.cuda, dataloader_num_workers=0,
        dataloader_pin_memory=plan.device.cuda,
    )
    # transformers 5 folded warmup_ratio into warmup_steps (a float below 1 is a ratio).
    if params["warmup_ratio"]:
        kwargs["warmup_ratio" if "warmup_ratio" in fields else "warmup_steps"] = params["warmup_ratio"]
    # ...and renamed gradient_checkpointing to activation_checkpointing (the old name warns).
    name = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    kwargs[name] = plan.checkpointing
    if plan.checkpointing:  # non-reentrant: works with a frozen embedding layer (LoRA) as is
        kwargs[f"{name}_kwargs"] = {"use_reentrant": False}
    if params["optim"]:
        check_optim(params["optim"])
        kwargs["optim"] = params["optim"]
    return TrainingArguments(**kwargs)


def check_optim(name: str | None) -> None:
    """`params.optim` is an optimizer transformers knows, and bitsandbytes is installed when it
    needs it (the 8-bit and paged ones): checked before anything is downloaded or loaded."""
    if not name:
        return
    from transformers.training_args import OptimizerNames

    known = [o.value for o in OptimizerNames]
    if name not in known:
        raise ParamError(f"params.optim {name!r} is not a transformers optimizer; known: {', '.join(known)}")
    if any(part in name for part in ("8bit", "paged", "bnb")):
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise ParamError(f"params.optim {name} needs bitsandbytes, which is not installed",
                             hint="pip install bitsandbytes, or optim adamw_torch") from None


def any_rank(flags: list[bool], device) -> list[bool]:
    """Each flag true if it is true on any process of a distributed run (as given otherwise)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return list(flags)
    tensor = torch.tensor([1 if flag else 0 for flag in flags], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [bool(v) for v in tensor.tolist()]


def min_over_ranks(value: int, device) -> int:
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    tensor = torch.tensor([value], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())


class Reporter:
    """Progress at most once a second (each one is a file write and a log line), loss as logged."""

    def __init__(self, ctx, main: bool):
        self.ctx = ctx
        self.main = main
        self.stopped = False
        self.diverged_at: int | None = None
        self._last = 0.0
        self._loss: float | None = None

    def step(self, step: int, total: int) -> None:
        now = time.monotonic()
        if self.main and (now - self._last >= _PROGRESS_EVERY_S or step >= total):
            self._last = now
            loss = f" loss {self._loss:.4f}" if self._loss is not None else ""
            self.ctx.progress(step / max(1, total), f"step {step}/{total}{loss}")

    def logged(self, step: int, total: int, logs: dict) -> None:
        if "loss" in logs and self.main:
            self._loss = float(logs["loss"])
            extra = "".join(f" {k} {logs[k]:.4g}" for k in ("learning_rate", "grad_norm", "epoch")
                            if isinstance(logs.get(k), (int, float)))
            self.ctx.log(f"step {step}/{total} loss {self._loss:.4f}{extra}")


def make_trainer(*, model, args, train_set, eval_set, collator, tokenizer, ctx, reporter: Reporter,
                 compute_metrics=None):
    """A Trainer that watches its loss and the task: a non-finite training loss or a stop request
    (`ctx.should_stop()`) ends training after the step on every rank; a stop saves a checkpoint."""
    import torch
    from transformers import PrinterCallback, Trainer, TrainerCallback

    class RecipeTrainer(Trainer):
        nonfinite = None

        def training_step(self, model, inputs, num_items_in_batch=None):
            loss = super().training_step(model, inputs, num_items_in_batch)
            # Kept on the device: one host sync per optimizer step, in on_step_end, not per batch.
            bad = ~torch.isfinite(loss.detach()).all()
            self.nonfinite = bad if self.nonfinite is None else (self.nonfinite | bad)
            return loss

    class Relay(TrainerCallback):
        def on_step_end(self, _args, state, control, **_):
            diverged = bool(trainer.nonfinite) if trainer.nonfinite is not None else False
            trainer.nonfinite = None
            diverged, stop_asked = any_rank([diverged, ctx.should_stop()], _args.device)
            if diverged:
                reporter.diverged_at = state.global_step
                control.should_training_stop = True
                return control
            reporter.step(state.global_step, state.max_steps)
            if stop_asked:
                reporter.stopped = True
                control.should_training_stop = True
                control.should_save = True  # so a requeued task picks up from here
            return control

        def on_log(self, _args, state, _control, logs=None, **_):
            reporter.logged(state.global_step, state.max_steps, logs or {})

    trainer = RecipeTrainer(model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
                            data_collator=collator, processing_class=tokenizer, callbacks=[Relay()],
                            compute_metrics=compute_metrics)
    # Without tqdm, Trainer prints every log dict as well; Relay already logs them one line each.
    trainer.remove_callback(PrinterCallback)
    return trainer


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(exc, (oom, MemoryError)) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc))


@contextlib.contextmanager
def memory_errors(plan: Plan, what: str):
    """Turns an out-of-memory error into `OutOfMemory` (non-retryable: the same run on the same
    flavor runs out again), with the plan and what would make it fit."""
    try:
        yield
    except BaseException as exc:
        if not is_out_of_memory(exc):
            raise
        _free_cuda_memory()
        raise OutOfMemory(f"out of memory while {what} on {plan.device.describe()}: {plan.summary()}",
                          hint="try " + ", ".join(memory_hints(plan))) from None


def _free_cuda_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def fit_batch_to_gpu(plan: Plan, model, args, *, vocab_size: int, kind: str, pad_token_id: int) -> Plan:
    """On a GPU: one forward and backward pass of the planned per-device batch at full length,
    measured; halved until it fits with the optimizer state still to come (`search_batch_size`).
    A no-op on CPU, where running out of memory is an OS kill rather than an exception."""
    if not plan.device.cuda:
        return plan
    import torch

    if plan.method != "qlora":
        model.to(args.device)
    if plan.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    state = trainable * optimizer_state_bytes(args.optim.value if hasattr(args.optim, "value") else args.optim)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(plan.precision)

    def step_fits(batch: int) -> bool:
        _free_cuda_memory()
        torch.cuda.reset_peak_memory_stats(args.device)
        ids = torch.full((batch, plan.max_length), pad_token_id + 1 if pad_token_id + 1 < vocab_size else 0,
                         dtype=torch.long, device=args.device)
        labels = torch.zeros(batch, dtype=torch.long, device=args.device) if kind != "causal-lm" else ids
        try:
            with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
            loss.backward()
            peak = torch.cuda.max_memory_allocated(args.device)
            return peak + state <= plan.device.budget_bytes
        except BaseException as exc:
            if not is_out_of_memory(exc):
                raise
            return False
        finally:
            model.zero_grad(set_to_none=True)
            _free_cuda_memory()

    found = search_batch_size(plan, step_fits)
    agreed = min_over_ranks(found.per_device_batch, args.device)
    if agreed != found.per_device_batch:
        found = search_batch_size(found, lambda batch: batch <= agreed)
    return found


def check_finite(metrics: dict, keys: tuple[str, ...], reporter: Reporter) -> None:
    """Raises Diverged when training stopped on a non-finite loss or a final loss is not finite."""
    import math

    if reporter.diverged_at is not None:
        raise Diverged(f"the training loss became NaN or infinite at step {reporter.diverged_at}; nothing was pushed",
                       hint="a lower learning_rate, precision fp32 or bf16, or warmup_ratio 0.1")
    bad = [k for k in keys if isinstance(metrics.get(k), float) and not math.isfinite(metrics[k])]
    if bad:
        raise Diverged(f"{', '.join(bad)} is not finite; nothing was pushed",
                       hint="a lower learning_rate, precision fp32 or bf16, or warmup_ratio 0.1")


def check_weights_finite(model) -> None:
    import torch

    for name, param in model.named_parameters():
        if param.requires_grad and not torch.isfinite(param.detach()).all():
            raise Diverged(f"trained weight {name} holds NaN or infinite values; nothing was pushed",
                           hint="a lower learning_rate, precision fp32 or bf16")
