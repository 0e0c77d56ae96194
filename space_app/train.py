"""Example training callback: a bag-of-words softmax classifier on a CSV dataset, in numpy.

Run by the scheduler as `train(task, ctx)`:
- `task.dataset_id`: a dataset repo with a CSV (`params.data_file`, default: `train.csv`, else the
  first CSV) holding a text column and a label column (`params.text_column` / `label_column`).
- `task.model_id`: a model this callback produced before (`model.npz` + `vocab.json`) is
  fine-tuned from its weights; any other model starts from scratch (a bag-of-words model
  cannot reuse a transformer's weights), which the log says.
- `params`: epochs (3), lr (0.5), batch_size (64), max_features (5000), val_fraction (0.2), seed (0).
- `params.recipe = "transformers"` hands the task to the Trainer fine-tuning recipe instead
  (`scheduler/recipes/finetune.py`, needs `space-scheduler[train]`).

The result is uploaded in one commit to `OWNER/<model name>-finetuned-<task id>`: a task that is
run again (a retry after a crash) overwrites its own repo instead of creating another.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np

WEIGHTS = "model.npz"
VOCAB = "vocab.json"
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_owners: dict[str, str] = {}


def train(task, ctx) -> dict:
    params = dict(task.params or {})
    if params.get("recipe") == "transformers":
        from scheduler.recipes.finetune import train as finetune

        return finetune(task, ctx)
    epochs = int(params.get("epochs", 3))
    lr = float(params.get("lr", 0.5))
    batch_size = int(params.get("batch_size", 64))
    rng = np.random.default_rng(int(params.get("seed", 0)))

    texts, labels = load_dataset(ctx, task.dataset_id, params)
    ctx.log(f"{len(texts)} examples, {len(set(labels))} labels from {task.dataset_id}")
    vocab, classes, weights, bias = load_base(ctx, task.model_id, texts, labels, int(params.get("max_features", 5000)))
    x = featurize(texts, vocab)
    y = np.array([classes.index(label) for label in labels])

    order = rng.permutation(len(y))
    n_val = int(len(y) * float(params.get("val_fraction", 0.2))) if len(y) >= 10 else 0
    val, fit = order[:n_val], order[n_val:]
    history = []
    for epoch in range(epochs):
        if ctx.should_stop():
            ctx.log(f"stopping early at epoch {epoch}")
            break
        shuffled = rng.permutation(fit)
        for start in range(0, len(shuffled), batch_size):
            batch = shuffled[start:start + batch_size]
            weights, bias = sgd_step(x[batch], y[batch], weights, bias, lr)
        loss, acc = evaluate(x[fit], y[fit], weights, bias)
        history.append({"epoch": epoch + 1, "loss": round(loss, 5), "train_accuracy": round(acc, 5)})
        ctx.progress((epoch + 1) / max(1, epochs), f"epoch {epoch + 1}/{epochs} loss {loss:.4f} acc {acc:.3f}")

    metrics = {"epochs": len(history), "examples": int(len(y)), "classes": len(classes)}
    if history:
        metrics.update(loss=history[-1]["loss"], train_accuracy=history[-1]["train_accuracy"])
    if n_val:
        val_loss, val_acc = evaluate(x[val], y[val], weights, bias)
        metrics.update(val_loss=round(val_loss, 5), val_accuracy=round(val_acc, 5))
    if ctx.should_stop():
        return {**metrics, "stopped": True}

    repo_id = upload(ctx, task, vocab, classes, weights, bias, metrics, history)
    ctx.log(f"uploaded to {repo_id}")
    return {**metrics, "repo_id": repo_id}


# ---------------------------------------------------------------- data


def load_dataset(ctx, dataset_id: str, params: dict) -> tuple[list[str], list[str]]:
    wanted = params.get("data_file")
    if wanted:
        path = Path(ctx.api.hf_hub_download(dataset_id, wanted, repo_type="dataset"))
    else:
        folder = Path(ctx.api.snapshot_download(dataset_id, repo_type="dataset", allow_patterns=["*.csv"]))
        found = sorted(folder.rglob("*.csv"), key=lambda p: (p.name != "train.csv", str(p)))
        if not found:
            raise FileNotFoundError(f"no CSV file in dataset {dataset_id}")
        path = found[0]
    text_column = params.get("text_column", "text")
    label_column = params.get("label_column", "label")
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    if not rows or text_column not in rows[0] or label_column not in rows[0]:
        columns = ", ".join(rows[0]) if rows else "none"
        raise ValueError(f"{path.name} needs columns {text_column!r} and {label_column!r} (has: {columns})")
    rows = [r for r in rows if (r[text_column] or "").strip() and (r[label_column] or "").strip()]
    return [r[text_column] for r in rows], [r[label_column].strip() for r in rows]


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def build_vocab(texts: list[str], max_features: int) -> list[str]:
    counts = Counter(token for text in texts for token in set(tokens(text)))
    return [word for word, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_features]]


def featurize(texts: list[str], vocab: list[str]) -> np.ndarray:
    index = {word: i for i, word in enumerate(vocab)}
    x = np.zeros((len(texts), len(vocab)), dtype=np.float32)
    for row, text in enumerate(texts):
        for token in tokens(text):
            col = index.get(token)
            if col is not None:
                x[row, col] += 1.0
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


# ---------------------------------------------------------------- model


def load_base(ctx, model_id: str, texts, labels, max_features: int):
    """Continue from a model this callback made earlier, else start from zeros."""
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    try:
        weights_path = ctx.api.hf_hub_download(model_id, WEIGHTS)
        meta = json.loads(Path(ctx.api.hf_hub_download(model_id, VOCAB)).read_text(encoding="utf-8"))
        stored = np.load(weights_path)
        vocab, classes = list(meta["vocab"]), list(meta["classes"])
        missing = sorted(set(labels) - set(classes))
        weights, bias = stored["weights"], stored["bias"]
        if missing:  # new labels get fresh rows
            classes += missing
            weights = np.vstack([weights, np.zeros((len(missing), weights.shape[1]), dtype=weights.dtype)])
            bias = np.concatenate([bias, np.zeros(len(missing), dtype=bias.dtype)])
        ctx.log(f"fine-tuning {model_id} ({len(vocab)} words, {len(classes)} classes)")
        return vocab, classes, weights.astype(np.float32), bias.astype(np.float32)
    except (EntryNotFoundError, RepositoryNotFoundError, KeyError, ValueError, OSError) as exc:
        ctx.log(f"{model_id} has no {WEIGHTS}/{VOCAB} to start from ({type(exc).__name__}); training from scratch")
    vocab = build_vocab(texts, max_features)
    classes = sorted(set(labels))
    return vocab, classes, np.zeros((len(classes), len(vocab)), np.float32), np.zeros(len(classes), np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def sgd_step(x, y, weights, bias, lr):
    probs = softmax(x @ weights.T + bias)
    probs[np.arange(len(y)), y] -= 1.0
    grad = probs / max(1, len(y))
    return weights - lr * (grad.T @ x), bias - lr * grad.sum(axis=0)


def evaluate(x, y, weights, bias) -> tuple[float, float]:
    if len(y) == 0:
        return 0.0, 0.0
    probs = softmax(x @ weights.T + bias)
    loss = float(-np.log(np.maximum(probs[np.arange(len(y)), y], 1e-12)).mean())
    return loss, float((probs.argmax(axis=1) == y).mean())


# ---------------------------------------------------------------- upload


def owner(api) -> str:
    """The token's user, asked once per process (whoami is heavily rate-limited on the Hub)."""
    key = str(api.endpoint)
    if key not in _owners:
        _owners[key] = api.whoami(cache=True)["name"]
    return _owners[key]


def output_repo(api, model_id: str, task_id: str) -> str:
    suffix = f"-finetuned-{task_id}"
    base = re.sub(r"[^A-Za-z0-9._-]", "-", model_id.split("/")[-1]).strip("-.") or "model"
    return f"{owner(api)}/{base[: 96 - len(suffix)]}{suffix}"


def upload(ctx, task, vocab, classes, weights, bias, metrics, history) -> str:
    api = ctx.api
    repo_id = output_repo(api, task.model_id, task.id)
    out = Path(ctx.output_dir) / "model"
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / WEIGHTS, weights=weights, bias=bias)
    (out / VOCAB).write_text(json.dumps({"vocab": vocab, "classes": classes}), encoding="utf-8")
    (out / "metrics.json").write_text(json.dumps({"metrics": metrics, "history": history}, indent=2), encoding="utf-8")
    (out / "README.md").write_text(model_card(task, repo_id, metrics), encoding="utf-8")
    api.create_repo(repo_id, repo_type="model", private=True, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(out), commit_message=f"Training task {task.id}")
    return repo_id


def model_card(task, repo_id: str, metrics: dict) -> str:
    rows = "\n".join(f"| {k} | {v} |" for k, v in metrics.items())
    return f"""---
library_name: numpy
tags:
- text-classification
- bag-of-words
base_model: {task.model_id}
datasets:
- {task.dataset_id}
---

# {repo_id.split('/')[-1]}

A bag-of-words softmax classifier trained by the scheduler task `{task.id}` on
[{task.dataset_id}](https://huggingface.co/datasets/{task.dataset_id}), starting from `{task.model_id}`
when it held weights of this kind.

| metric | value |
|---|---|
{rows}

Trained {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Files: `{WEIGHTS}` (weights, bias),
`{VOCAB}` (vocabulary, classes), `metrics.json` (per-epoch history).
"""
