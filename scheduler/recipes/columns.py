"""Which dataset columns hold the text and the labels, and the label names a classifier gets. Pure.

A column is detected from the usual names only when exactly one of them is present; otherwise the
error names the param to set and lists the dataset's columns.
"""

from __future__ import annotations

import re

from .errors import DatasetError

# The names datasets on the Hub use most, in order of preference.
TEXT_COLUMNS = ("text", "sentence", "content", "review", "document", "comment", "tweet", "body", "input")
LABEL_COLUMNS = ("label", "labels", "class", "target", "category", "sentiment", "intent")
_DEFAULT_LABEL = re.compile(r"^LABEL_\d+$")


def find_column(columns: list[str], asked: str | None, usual: tuple[str, ...], *, param: str,
                dataset_id: str, purpose: str, required: bool = True) -> str | None:
    """`asked` if the dataset has it, else the one usual name it has.

    Raises DatasetError when `asked` is missing, when several usual names are present, or (if
    `required`) when none is; returns None when none is present and the column is optional."""
    listing = ", ".join(columns) or "none"
    if asked is not None:
        if asked not in columns:
            raise DatasetError(f"dataset {dataset_id} has no column {asked!r} (params.{param}); its columns are: {listing}")
        return asked
    present = [name for name in usual if name in columns]
    if len(present) == 1:
        return present[0]
    if len(present) > 1:
        raise DatasetError(f"dataset {dataset_id} has several possible {purpose} columns ({', '.join(present)}): "
                           f"set params.{param}; its columns are: {listing}")
    if required:
        raise DatasetError(f"dataset {dataset_id} has no {purpose} column (params.{param}, looked for "
                           f"{', '.join(usual)}); its columns are: {listing}")
    return None


def plan_labels(values: list, class_names: list[str] | None, config_label2id: dict[str, int] | None,
                *, column: str, dataset_id: str, model_id: str, relabel: bool) -> tuple[list[str], list[int]]:
    """The label names the model will have, and each example's label id.

    A config whose labels were named by someone (not transformers' `LABEL_0, LABEL_1` defaults)
    is kept: every dataset label must be one of them, unless `params.relabel` asks for a new head.
    """
    if class_names is not None:  # a ClassLabel column stores ids; compare by name
        values = [class_names[v] if isinstance(v, int) and 0 <= v < len(class_names) else v for v in values]
    present = sorted({str(v) for v in values if v is not None and str(v).strip() != ""},
                     key=lambda s: (not s.lstrip("-").isdigit(), int(s) if s.lstrip("-").isdigit() else 0, s))
    missing = sum(1 for v in values if v is None or str(v).strip() == "")
    if missing:
        raise DatasetError(f"column {column!r} of dataset {dataset_id} has {missing} empty label(s)")
    named = config_label2id and not all(_DEFAULT_LABEL.match(str(k)) for k in config_label2id)
    if named and not relabel:
        known = {str(k): int(i) for k, i in config_label2id.items()}
        by_id = {str(i): int(i) for i in known.values()}
        unknown = [v for v in present if v not in known and v not in by_id]
        if unknown:
            raise DatasetError(
                f"column {column!r} of dataset {dataset_id} has labels not in {model_id}'s config: "
                f"{', '.join(map(repr, unknown[:10]))}{' ...' if len(unknown) > 10 else ''}; the config knows "
                f"{', '.join(map(repr, sorted(known, key=known.get)))} (set params.relabel to train a new head)")
        names = [name for name, _ in sorted(known.items(), key=lambda kv: kv[1])]
        ids = [known[str(v)] if str(v) in known else by_id[str(v)] for v in values]
        return names, ids
    names = list(class_names) if class_names is not None else present  # keep the dataset's own order
    if len(names) < 2:
        raise DatasetError(f"column {column!r} of dataset {dataset_id} has {len(names)} distinct label(s) "
                           f"({', '.join(names) or 'none'}): a classifier needs at least 2 (params.label_column)")
    index = {name: i for i, name in enumerate(names)}
    return names, [index[str(v)] for v in values]
