"""The task's dataset: its splits (train, and evaluation when it has one), the text and label
columns, the labels as ids, and tokenization. Needs `datasets`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .columns import LABEL_COLUMNS, TEXT_COLUMNS, find_column, plan_labels
from .errors import DatasetError, ParamError
from .params import CLASSIFICATION

EVAL_SPLITS = ("validation", "valid", "dev")


@dataclass
class Splits:
    """Raw splits; `eval_source` says where the evaluation examples come from (for the log and card)."""

    train: Any
    eval: Any | None
    eval_source: str
    columns: list[str]


def load_splits(dataset_id: str, params: dict, token) -> Splits:
    """The training split and the evaluation split: `params.eval_split`, else the dataset's
    validation split, else none (the caller may hold out `val_fraction` of the training split).
    Raises DatasetError/ParamError naming `params.split`, `params.eval_split` or `params.dataset_config`."""
    import datasets

    config = params["dataset_config"]
    try:
        names = list(datasets.get_dataset_split_names(dataset_id, config, token=token))
    except ValueError as exc:
        if config is not None and "config" in str(exc).lower():
            raise ParamError(f"params.dataset_config {config!r} does not exist in dataset {dataset_id}: {exc}") from None
        raise
    split = params["split"]
    if split not in names:
        raise DatasetError(f"dataset {dataset_id} has no split {split!r} (params.split); its splits are: "
                           f"{', '.join(names) or 'none'}")
    asked = params["eval_split"]
    if asked is not None and asked.lower() == "none":
        eval_name = None
    elif asked is not None:
        if asked not in names:
            raise DatasetError(f"dataset {dataset_id} has no split {asked!r} (params.eval_split); its splits are: "
                               f"{', '.join(names)}")
        eval_name = asked
    else:
        eval_name = next((name for name in EVAL_SPLITS if name in names and name != split), None)
    try:
        train = datasets.load_dataset(dataset_id, config, split=split, token=token)
        evaluation = datasets.load_dataset(dataset_id, config, split=eval_name, token=token) if eval_name else None
    except datasets.exceptions.DatasetGenerationError as exc:  # a file that does not parse parses no better next time
        cause = exc.__cause__ or exc
        raise DatasetError(f"dataset {dataset_id} cannot be read: {type(cause).__name__}: {cause}") from None
    if evaluation is not None:
        missing = [c for c in train.column_names if c not in evaluation.column_names]
        if missing:
            raise DatasetError(f"split {eval_name!r} of dataset {dataset_id} lacks the columns {', '.join(missing)} "
                               f"of split {split!r} (params.eval_split)")
    return Splits(train, evaluation, f"split {eval_name!r}" if eval_name else "", list(train.column_names))


def text_and_label_columns(splits: Splits, params: dict, dataset_id: str) -> tuple[str, str | None]:
    text = find_column(splits.columns, params["text_column"], TEXT_COLUMNS, param="text_column",
                       dataset_id=dataset_id, purpose="text")
    label = find_column([c for c in splits.columns if c != text], params["label_column"], LABEL_COLUMNS,
                        param="label_column", dataset_id=dataset_id, purpose="label", required=False)
    return text, label


def prepare(splits: Splits, *, kind: str, text_column: str, label_column: str | None, params: dict,
            dataset_id: str, model_id: str, config_label2id: dict | None) -> tuple[Any, Any | None, list[str] | None]:
    """Rows with empty text dropped, labels turned into ids in a `labels` column (classification),
    and the evaluation split held out of the training split when the dataset has none.
    Returns (train, eval or None, label names or None)."""
    import datasets

    def has_text(row):
        value = row[text_column]
        return isinstance(value, str) and value.strip() != ""

    parts = [splits.train] + ([splits.eval] if splits.eval is not None else [])
    parts = [part.filter(has_text) for part in parts]
    if len(parts[0]) == 0:
        raise DatasetError(f"column {text_column!r} of dataset {dataset_id} has no non-empty text (params.text_column)")
    labels = None
    if kind == CLASSIFICATION:
        if label_column is None:
            raise DatasetError(f"dataset {dataset_id} has no label column (params.label_column, looked for "
                               f"{', '.join(LABEL_COLUMNS)}); its columns are: {', '.join(splits.columns)}")
        feature = parts[0].features[label_column]
        class_names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
        values = [v for part in parts for v in part[label_column]]
        labels, ids = plan_labels(values, class_names, config_label2id, column=label_column, dataset_id=dataset_id,
                                  model_id=model_id, relabel=params["relabel"])
        start = 0
        for i, part in enumerate(parts):
            part_ids = ids[start:start + len(part)]
            start += len(part)
            parts[i] = part.remove_columns([label_column]).add_column("labels", part_ids)
    train, evaluation = parts[0], parts[1] if len(parts) > 1 else None
    if evaluation is None and params["val_fraction"] > 0 and params["eval_split"] is None and len(train) >= 20:
        held = train.train_test_split(test_size=params["val_fraction"], seed=params["seed"])
        train, evaluation = held["train"], held["test"]
        splits.eval_source = f"{params['val_fraction']:g} of split {params['split']!r} (params.val_fraction)"
    return train, evaluation, labels


def tokenize(dataset, tokenizer, text_column: str, max_length: int, keep_labels: bool):
    """Token ids truncated to `max_length`; every other column dropped (but `labels`)."""
    if dataset is None:
        return None

    def encode(batch):
        return tokenizer(batch[text_column], truncation=True, max_length=max_length)

    keep = {"labels"} if keep_labels else set()
    return dataset.map(encode, batched=True, remove_columns=[c for c in dataset.column_names if c not in keep])
