"""The queue dataset's card (README.md), so the Hub shows the queue as a dataset.

Its `configs:` front matter makes the dataset viewer show `tasks.csv` and the monthly archive files as
two splits, `queue` and `archive`, read with every column as text: the Hub's CSV loader would otherwise
guess a type per file (an all-empty column becomes a float in one file and text in another, and the
viewer refuses the dataset). A split must match at least one file, so a new queue gets an empty
archive file for the current month, which the archive fills later. The card's body describes the
columns from scheduler.schema.

A README.md someone else wrote is never replaced; ours (recognised by `MARKER`) is rewritten when a
release changes it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from . import schema
from .errors import Conflict
from .stores import HubStore

CARD_PATH = "README.md"
MARKER = "<!-- space-scheduler queue card -->"

_BODY = """{marker}
# {title}

The task queue of a space-scheduler Space: an on-demand GPU job scheduler that idles on free
`cpu-basic` hardware and switches itself to a task's GPU only while there is work for it.

- `{queue_path}` (split `queue`): the tasks waiting, running and recently finished, one row each.
- `{archive_glob}` (split `archive`): finished tasks moved out of the queue, one file per month of
  finish. The split is empty until the first tasks are archived.

Every change to `{queue_path}` is a commit that replaced the whole file after checking nobody else
committed in between. You may edit it (the Hub's editor, pandas, a spreadsheet): `space-scheduler
check --queue hf://datasets/{repo_id}` says whether the file still reads and what the next write will
normalise; a file that does not read is never overwritten.

| column | type | default | since | meaning |
|---|---|---|---|---|
{rows}
"""


def card_text(repo_id: str, queue_path: str = "tasks.csv", archive_dir: str = "archive") -> str:
    """The whole README.md of a queue dataset (front matter and body)."""
    from huggingface_hub import DatasetCardData

    archive_glob = f"{archive_dir}/*.csv"
    data = DatasetCardData(
        pretty_name=f"{repo_id.split('/')[-1]} (task queue)",
        configs=[{
            "config_name": "default",
            "data_files": [{"split": "queue", "path": queue_path}, {"split": "archive", "path": archive_glob}],
            # Cells are text as stored: an empty cell is "", not a missing float.
            "keep_default_na": False,
            "features": [{"name": name, "dtype": "string"} for name in schema.NAMES],
        }],
        tags=["space-scheduler", "task-queue"],
    )
    rows = "\n".join(
        f"| `{c.name}` | {c.kind.describe()} | {_default(c)} | {c.since} | {c.doc} |" for c in schema.COLUMNS
    )
    body = _BODY.format(marker=MARKER, title=f"Task queue {repo_id}", queue_path=queue_path,
                        archive_glob=archive_glob, repo_id=repo_id, rows=rows)
    return f"---\n{data.to_yaml()}\n---\n\n{body}"


def _default(column: schema.Column) -> str:
    if column.required:
        return "required"
    return f"`{column.default_cell}`" if column.default_cell else "empty"


def wanted_card(existing: bytes | None, text: str) -> bytes | None:
    """The README.md to write: ours when there is none or ours is out of date; None to leave it as it is."""
    new = text.encode("utf-8")
    if existing is None:
        return new
    if MARKER.encode() not in existing or existing == new:
        return None
    return new


def empty_archive_path(archive_dir: str = "archive", now: datetime | None = None) -> str:
    """Where the empty archive of a new queue goes: the current month's file, which the archive extends."""
    now = now or datetime.now(timezone.utc)
    return f"{archive_dir}/tasks-{now:%Y-%m}.csv"


def applies_to(store: Any) -> bool:
    """Only a queue in a Hub dataset has a viewer to feed."""
    return isinstance(store, HubStore) and store.repo_type == "dataset"


def new_queue_files(store: Any, empty_queue: bytes, archive_dir: str = "archive") -> dict[str, bytes]:
    """The files a new queue's first commit adds next to tasks.csv: the card and an empty archive."""
    if not applies_to(store):
        return {}
    return {CARD_PATH: card_text(store.repo_id, store.path, archive_dir).encode("utf-8"),
            empty_archive_path(archive_dir): empty_queue}


def ensure_card(store: Any, empty_queue: bytes, archive_dir: str = "archive", tries: int = 5) -> None:
    """Give an existing queue dataset its card (and an empty archive when it has no archive file yet), in one
    commit that leaves tasks.csv untouched; nothing when its card is up to date or its README is not ours."""
    if not applies_to(store):
        return
    text = card_text(store.repo_id, store.path, archive_dir)
    for _ in range(tries):
        with store.lock():
            version = store.read().version
            card = wanted_card(store.read_at(CARD_PATH, version), text)
            if card is None:
                return
            files = {CARD_PATH: card}
            info = store.api.repo_info(store.repo_id, repo_type=store.repo_type, revision=version)
            if not any(s.rfilename.startswith(f"{archive_dir}/") for s in info.siblings or []):
                files[empty_archive_path(archive_dir)] = empty_queue
            try:
                store.write(files, expected=version, message="Dataset card: the queue and archive splits")
                return
            except Conflict:
                continue
    # A queue this busy gets its card from the next init or deploy; its tasks matter more.
