"""Telling people a task finished: a discussion on the model the task produced, or on the Space.

The Hub notifies a repo's watchers of new discussions (e-mail, the bell), so the submitter hears
of the outcome without watching the queue. A notification never changes a task's outcome: the
caller ignores its failures (see `safe`).
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

from .hub import describe
from .redact import redact
from .tasks import Status, Task

ENV_NOTIFY = "SCHEDULER_NOTIFY"
TARGETS = ("model", "space")
NOTIFIED = (Status.DONE, Status.FAILED)


class DiscussionNotifier:
    """`target="model"`: on the output model repo (the callback's result `repo_id`), else the Space;
    `target="space"`: always on the Space."""

    def __init__(self, api, *, space_id: str | None = None, target: str = "model"):
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        self.api = api
        self.space_id = space_id
        self.target = target
        self.last_error: str | None = None

    def where(self, task: Task) -> tuple[str, str] | None:
        repo = (task.result or {}).get("repo_id") if self.target == "model" else None
        if isinstance(repo, str) and repo.count("/") == 1:
            return repo, "model"
        return (self.space_id, "space") if self.space_id else None

    def __call__(self, task: Task):
        if task.status not in NOTIFIED:
            return None
        where = self.where(task)
        if where is None:
            return None
        repo_id, repo_type = where
        return self.api.create_discussion(repo_id, title(task), description=body(task), repo_type=repo_type)


def title(task: Task) -> str:
    return f"Task {task.id} {task.status.value}: {task.model_id} on {task.dataset_id}"


def body(task: Task) -> str:
    rows = [("status", task.status.value), ("hardware", task.hardware), ("attempts", f"{task.attempts}/{task.max_attempts}"),
            ("submitted by", task.submitted_by or "-"), ("GPU seconds", _num(task.gpu_seconds)),
            ("cost (USD)", _num(task.cost_usd))]
    lines = ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    if task.result:
        lines += ["", "Result:", "```json", json.dumps(task.result, indent=2, sort_keys=True), "```"]
    if task.error:
        lines += ["", "Error:", "```", task.error, "```"]
    return redact("\n".join(lines))


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def from_env(api, space_id: str | None) -> DiscussionNotifier | None:
    """$SCHEDULER_NOTIFY = model | space (unset or anything else: no notifications)."""
    target = (os.environ.get(ENV_NOTIFY) or "").strip().lower()
    return DiscussionNotifier(api, space_id=space_id, target=target) if target in TARGETS else None


def safe(notify: Callable[[Task], Any] | None, on_error: Callable[[str], None] | None = None) -> Callable[[Task], None]:
    """Wrap a notifier so that its failure is reported, never raised into the worker."""
    def call(task: Task) -> None:
        if notify is None:
            return
        try:
            notify(task)
        except Exception as exc:
            if on_error is not None:
                on_error(redact(f"could not notify about {task.id}: {describe(exc)}"))

    return call
