"""The recipe as on a two-GPU flavor, on two CPU processes: DDP over gloo under `accelerate launch`."""

from __future__ import annotations

from scheduler.recipes import finetune
from scheduler.recipes.plan import Device


def train(task, ctx):
    return finetune.train(task, ctx, Device("cpu", "CPU", 16 * 10 ** 9, count=2))
