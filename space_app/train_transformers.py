"""Training callback for the Space: fine-tune a transformers model with `Trainer`.

`--callback space_app/train_transformers.py:train`, or keep `space_app/train.py:train` and submit
tasks with `--param recipe=transformers`. Params, resuming after a crash and what is pushed where
are described in `scheduler/recipes/finetune.py`. Needs `space-scheduler[train]`.
"""

from scheduler.recipes.finetune import train

__all__ = ["train"]
