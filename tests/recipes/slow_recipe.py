"""The fine-tuning recipe, held before optimizer step N+1 (`RECIPE_TEST_HOLD_AT_STEP=N`) until the
task is asked to stop, so that a test can stop or kill it in the middle of training whatever the
machine's load."""

from __future__ import annotations

import os
import time

from scheduler.recipes import finetune


def train(task, ctx):
    import transformers

    hold_at = int(os.environ.get("RECIPE_TEST_HOLD_AT_STEP", "-1"))
    original = transformers.Trainer.training_step

    def held(self, *args, **kwargs):
        if self.state.global_step == hold_at:
            while not ctx.should_stop():
                time.sleep(0.05)
        return original(self, *args, **kwargs)

    transformers.Trainer.training_step = held
    return finetune.train(task, ctx)
