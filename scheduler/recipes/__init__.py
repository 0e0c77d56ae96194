"""Ready-made training callbacks.

- `scheduler.recipes.finetune:train`: fine-tune a transformers model with `Trainer` (text
  classification or causal LM, in full, LoRA or QLoRA), planned for the device it runs on
  (`plan.py`: precision, memory, launcher), several GPUs under `accelerate launch` (`launch.py`),
  resuming from checkpoints, pushing to the Hub. Its params are `params.PARAMS`.
- `scheduler.recipes.tiny`: tiny random-initialised models of the common families and a dataset
  made on the spot, and `seed_demo_repos(api, owner)` to upload them (demos and tests run offline
  on the emulator).

Both need the training extra: `pip install 'space-scheduler[train]'`; `plan.py` and `params.py`
do not (`space-scheduler recipe plan` works without torch).

"""
