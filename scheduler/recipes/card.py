"""The model card pushed with a fine-tune: how to load what was pushed, the final metrics, and the
training configuration that was actually used (read from the plan and the Trainer's arguments,
never copied from the params). Pure text."""

from __future__ import annotations

import json
import os
import time

from .params import CLASSIFICATION


def load_snippet(*, repo_id: str, base_id: str, kind: str, adapter: bool, mismatched_head: bool) -> str:
    """Python that loads the pushed repo into `model` and `tokenizer`.

    A LoRA classifier's adapter needs its config (labels, number of labels, pad token), which
    peft's `AutoPeftModel...` would rebuild from the base model's; the repo's config.json is
    given to the base explicitly."""
    tokenizer = f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")'
    if not adapter:
        cls = "AutoModelForSequenceClassification" if kind == CLASSIFICATION else "AutoModelForCausalLM"
        return (f"from transformers import AutoTokenizer, {cls}\n\n"
                f'model = {cls}.from_pretrained("{repo_id}")\n{tokenizer}\n')
    if kind == CLASSIFICATION:
        resize = ", ignore_mismatched_sizes=True" if mismatched_head else ""
        return ("from peft import PeftModel\n"
                "from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer\n\n"
                f'config = AutoConfig.from_pretrained("{repo_id}")  # the trained head: labels, pad token\n'
                f'base = AutoModelForSequenceClassification.from_pretrained("{base_id}", config=config{resize})\n'
                f'model = PeftModel.from_pretrained(base, "{repo_id}")\n{tokenizer}\n')
    return ("from peft import AutoPeftModelForCausalLM\nfrom transformers import AutoTokenizer\n\n"
            f'model = AutoPeftModelForCausalLM.from_pretrained("{repo_id}")\n{tokenizer}\n')


def model_card(*, repo_id: str, task, kind: str, metrics: dict, used: dict, adapter: bool, snippet: str) -> str:
    """README.md with front matter the Hub reads (library, pipeline, base model, dataset)."""
    pipeline = "text-classification" if kind == CLASSIFICATION else "text-generation"
    metric_rows = "\n".join(f"| {k} | {v} |" for k, v in metrics.items())
    used_rows = "\n".join(f"| {k} | `{json.dumps(v)}` |" for k, v in used.items())
    what = "a LoRA adapter (with the layers it trained in full)" if adapter else "the whole model"
    lora_tag = "- lora\n" if used.get("method", "full") != "full" else ""
    return f"""---
library_name: {"peft" if adapter else "transformers"}
pipeline_tag: {pipeline}
base_model: {task.model_id}
datasets:
- {task.dataset_id}
tags:
- space-scheduler
- {pipeline}
{lora_tag}---

# {repo_id.split('/')[-1]}

`{task.model_id}` fine-tuned for {pipeline} on [{task.dataset_id}]({hub_url('datasets/' + task.dataset_id)})
by the scheduler task {task_link(task.id)}. This repo holds {what}.

## How to load

```python
{snippet.rstrip()}
```

## Final metrics

| metric | value |
|---|---|
{metric_rows}

## Training configuration

What the run used (after the recipe fitted the params to the hardware):

| setting | value |
|---|---|
{used_rows}

Trained {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with `transformers.Trainer`.
"""


def hub_url(path: str) -> str:
    return f"{os.environ.get('HF_ENDPOINT', 'https://huggingface.co').rstrip('/')}/{path}"


def task_link(task_id: str) -> str:
    """The task's row lives in the queue dataset's tasks.csv; link to it when the worker says where."""
    queue = os.environ.get("SCHEDULER_QUEUE", "")
    if queue.startswith("hf://datasets/"):
        return f"[`{task_id}`]({hub_url('datasets/' + queue[len('hf://datasets/'):].strip('/'))}/blob/main/tasks.csv)"
    space = os.environ.get("SPACE_ID")
    if space:
        return f"`{task_id}` (queue of the Space [{space}]({hub_url('spaces/' + space)}))"
    return f"`{task_id}`"
