"""Ready-made training callbacks.

- `scheduler.recipes.finetune:train`: fine-tune a transformers model with `Trainer` (text
  classification or causal LM, optional LoRA), resuming from checkpoints, pushing to the Hub.
- `scheduler.recipes.tiny`: a tiny random-initialised model and dataset made on the spot, and
  `seed_demo_repos(api, owner)` to upload them (demos and tests run offline on the emulator).

Both need the training extra: `pip install 'space-scheduler[train]'`.
"""
