"""Runs many recipe scenarios in one child process, so torch and transformers are imported once
(each import costs seconds; a process per task would make the family matrix too slow for CI).

    python -m tests.recipes.runner SPEC.json OUT.json     (HF_ENDPOINT, HF_TOKEN in the environment)

SPEC: {"models": [...], "datasets": [...], "scenarios": [...]}
- a model: {"repo", "family", "style"?, "tokenizer_max_length"?, "positions"?, "config"?, "dtype"?}: a tiny
  random model of the family (scheduler.recipes.tiny) pushed with its tokenizer;
- a dataset: {"repo", "files": {path: {"rows": [...], "format": "csv"|"parquet"|"jsonl"}}};
- a scenario: {"id", "model", "dataset", "params", "reload": bool, "device"?: {...}}: the recipe run
  the way a worker runs it (a real RunContext, files in a work dir), then, with "reload", the pushed
  repo loaded back exactly as its model card says and evaluated on the dataset's validation split.

OUT: {scenario id: {"ok", "result" | "error", "error_type", "nonretryable", "hint", "log", "reload"?}},
rewritten after each scenario.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import tempfile
import traceback
from pathlib import Path


def push_models(api, models: list[dict], texts: list[str]) -> None:
    import torch

    from scheduler.recipes.tiny import FAMILIES, make_family_model, make_tokenizer

    for spec in models:
        style = spec.get("style") or FAMILIES[spec["family"]][0]
        tokenizer = make_tokenizer(texts, style, spec.get("tokenizer_max_length", 64))
        model = make_family_model(spec["family"], tokenizer, positions=spec.get("positions", 64),
                                  **spec.get("config", {}))
        if spec.get("model_class"):  # another head of the same config, e.g. BertForPreTraining (with a pooler)
            import transformers

            model = getattr(transformers, spec["model_class"])(model.config)
        if spec.get("dtype"):
            model = model.to(getattr(torch, spec["dtype"]))
        with tempfile.TemporaryDirectory() as folder:
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            api.create_repo(spec["repo"], exist_ok=True)
            api.upload_folder(repo_id=spec["repo"], folder_path=folder)


def push_datasets(api, datasets_: list[dict]) -> None:
    for spec in datasets_:
        api.create_repo(spec["repo"], repo_type="dataset", exist_ok=True)
        with tempfile.TemporaryDirectory() as folder:
            for path, content in spec["files"].items():
                target = Path(folder) / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(encode(content["rows"], content.get("format", "csv")))
            api.upload_folder(repo_id=spec["repo"], repo_type="dataset", folder_path=folder)


def encode(rows: list[dict], fmt: str) -> bytes:
    if fmt == "csv":
        from scheduler.recipes.tiny import rows_to_csv

        return rows_to_csv(rows)
    if fmt == "jsonl":
        return "".join(json.dumps(row) + "\n" for row in rows).encode()
    import datasets

    buffer = io.BytesIO()
    datasets.Dataset.from_list(rows).to_parquet(buffer)
    return buffer.getvalue()


def run_scenario(scenario: dict, work_dir: Path) -> dict:
    from scheduler.callbacks import RunContext, TaskFiles
    from scheduler.errors import NonRetryable
    from scheduler.recipes import finetune
    from scheduler.recipes.plan import Device
    from scheduler.tasks import Task

    task = Task.new(scenario["model"], scenario["dataset"], scenario.get("hardware", "cpu-basic"),
                    params=scenario.get("params", {}))
    lines: list[str] = []
    ctx = RunContext(task, TaskFiles(work_dir, task.id), emit=lines.append, should_stop=lambda: False,
                     token=os.environ["HF_TOKEN"], endpoint=os.environ["HF_ENDPOINT"])
    device = Device(**scenario["device"]) if scenario.get("device") else None
    try:
        result = finetune.train(task, ctx, device)
        out = {"ok": True, "result": result}
    except Exception as exc:  # noqa: BLE001 - the test asserts on what was raised
        out = {"ok": False, "error": str(exc), "error_type": type(exc).__name__,
               "nonretryable": isinstance(exc, NonRetryable), "hint": getattr(exc, "hint", ""),
               "traceback": traceback.format_exc(limit=-3)}
    out["log"] = "\n".join(lines)
    from huggingface_hub import HfApi

    api = HfApi()
    out["repo_id"] = f"{api.whoami()['name']}/{finetune.output_repo_name(task.model_id, task.id)}"
    out["pushed"] = api.repo_exists(out["repo_id"])
    if out["pushed"]:
        from huggingface_hub import hf_hub_download

        out["pushed_files"] = sorted(api.list_repo_files(out["repo_id"]))
        out["card"] = Path(hf_hub_download(out["repo_id"], "README.md")).read_text(encoding="utf-8")
        if "config.json" in out["pushed_files"]:
            config = json.loads(Path(hf_hub_download(out["repo_id"], "config.json")).read_text(encoding="utf-8"))
            out["pushed_config"] = {k: config.get(k) for k in ("architectures", "id2label", "pad_token_id", "dtype")}
    if out["ok"] and scenario.get("reload"):
        try:
            out["reload"] = reload_and_evaluate(out["result"], scenario["dataset"], work_dir)
        except Exception:  # noqa: BLE001 - a repo that does not load back is a test failure, not a crash
            out["reload"] = {"error": traceback.format_exc(limit=-4)}
    return out


def card_snippet(repo_id: str) -> str:
    from huggingface_hub import hf_hub_download

    card = Path(hf_hub_download(repo_id, "README.md")).read_text(encoding="utf-8")
    match = re.search(r"```python\n(.*?)```", card, re.S)
    assert match, f"no python block in the card of {repo_id}"
    return match.group(1)


def reload_and_evaluate(result: dict, dataset_id: str, work: Path) -> dict:
    """Load the pushed repo twice as its card says (different seeds: a layer left out of the
    repo would be initialised differently each time) and evaluate it on the validation split
    with the same Trainer evaluation, batch and collator as the recipe, so the loss must match."""
    import datasets
    import torch
    from transformers import (DataCollatorForLanguageModeling, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    training = result["training"]
    classifier = training["task"] == "text-classification"
    snippet = card_snippet(result["repo_id"])
    validation = datasets.load_dataset(dataset_id, split="validation")
    texts = list(validation[training["text_column"]])
    outputs = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        scope: dict = {}
        exec(snippet, scope)  # noqa: S102 - the card's own instructions are what is tested
        model, tokenizer = scope["model"].eval(), scope["tokenizer"]
        config = model.config
        columns = dict(tokenizer(texts, truncation=True, max_length=training["max_length"]))
        if classifier:
            columns["labels"] = [config.label2id[str(v)] for v in validation[training["label_column"]]]
        collator = (DataCollatorWithPadding(tokenizer) if classifier
                    else DataCollatorForLanguageModeling(tokenizer, mlm=False))
        args = TrainingArguments(output_dir=str(work / "reload"), report_to="none", use_cpu=True, disable_tqdm=True,
                                 per_device_eval_batch_size=training["per_device_train_batch_size"])
        predicted = Trainer(model=model, args=args, data_collator=collator, processing_class=tokenizer).predict(
            datasets.Dataset.from_dict(columns))
        out = {"eval_loss": predicted.metrics["test_loss"], "batch": args.per_device_eval_batch_size}
        if classifier:
            logits = predicted.predictions[0] if isinstance(predicted.predictions, tuple) else predicted.predictions
            ids = logits.argmax(-1)
            out.update(predicted=[config.id2label[int(i)] for i in ids],
                       accuracy=float((ids == predicted.label_ids).mean()),
                       id2label={str(k): v for k, v in config.id2label.items()}, pad_token_id=config.pad_token_id)
        weights = [p for p in model.parameters()]
        out.update(dtypes=sorted({str(p.dtype) for p in weights}),
                   finite=all(bool(torch.isfinite(p).all()) for p in weights))
        outputs.append(out)
    first, second = outputs
    first["same_on_second_load"] = (abs(first["eval_loss"] - second["eval_loss"]) < 1e-6
                                    and first.get("predicted") == second.get("predicted"))
    first["architectures"] = getattr(model.config, "architectures", None)
    return first


def main(spec_path: str, out_path: str) -> int:
    from huggingface_hub import HfApi

    from scheduler.recipes.tiny import make_rows

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    api = HfApi()
    texts = [row["text"] for row in make_rows()] + spec.get("extra_words", [])
    push_models(api, spec.get("models", []), texts)
    push_datasets(api, spec.get("datasets", []))
    results: dict = {}
    work = Path(out_path).parent / "work"
    for scenario in spec["scenarios"]:
        results[scenario["id"]] = run_scenario(scenario, work)
        Path(out_path).write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
