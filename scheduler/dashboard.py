"""What the Space app shows and accepts, as plain functions of tasks and worker status (no Gradio).

The app (space_app/app.py) only wires these to components; everything here is unit-testable and
nothing here returns a token: every string that leaves goes through `redact`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from .callbacks import read_progress, tail_log
from .errors import ValidationError
from .hardware import FALLBACK_PRICES, FLAVORS, IDLE_FLAVOR, is_paid
from .redact import redact, register_secret
from .schema import DASHBOARD_COLUMNS, label
from .tasks import DEFAULT_HARDWARE, Status, Task, format_time, utcnow

ALL = "ALL"
STATUS_CHOICES = [ALL, *(s.value for s in Status)]
# The schema's columns, with the run's duration (computed, not stored) before the last one.
TABLE_HEADERS = [*map(label, DASHBOARD_COLUMNS[:-1]), "duration", label(DASHBOARD_COLUMNS[-1])]
# Form field -> the Task.new argument (and ValidationError.field) it feeds.
FORM_FIELDS = ("model_id", "dataset_id", "hardware", "params", "priority", "max_attempts", "timeout_s")


# ---------------------------------------------------------------- configuration


@dataclass
class AppSettings:
    queue_url: str
    callback: str
    space_id: str | None = None
    endpoint: str | None = None
    token: str | None = field(default=None, repr=False)
    work_dir: str | None = None
    worker: bool = True
    # Worker settings the app fixes itself (a test's short polls); the Space's variables fill the rest.
    worker_options: dict = field(default_factory=dict)
    refresh_s: float = 2.0
    started: float = field(default_factory=time.time)

    @classmethod
    def from_env(cls, app_dir: Path, env=None) -> "AppSettings":
        env = os.environ if env is None else env
        queue = env.get("SCHEDULER_QUEUE")
        if not queue:
            space = env.get("SPACE_ID")
            # A Space's queue defaults to a dataset of the same owner, named after the Space.
            queue = f"hf://datasets/{space}-queue" if space else str(app_dir / "queue")
        callback = env.get("SCHEDULER_CALLBACK") or f"{app_dir / 'train.py'}:train"
        token = env.get("HF_TOKEN") or None
        register_secret(token)
        return cls(
            queue_url=queue, callback=callback, space_id=env.get("SPACE_ID") or None,
            endpoint=env.get("HF_ENDPOINT") or None, token=token,
            work_dir=env.get("SCHEDULER_WORK_DIR") or None,
            worker=(env.get("SCHEDULER_WORKER") or "on").lower() not in ("0", "off", "false", "no"),
            refresh_s=float(env.get("SCHEDULER_REFRESH_S") or 2.0),
        )


def build_worker(settings: AppSettings, say=None):
    """The worker `space-scheduler worker` would build here: the app's settings, then the Space's
    `SCHEDULER_*` variables (settings.WorkerSettings.from_env)."""
    from .settings import WorkerSettings, build_worker as build

    worker_settings = WorkerSettings.from_env(
        queue=settings.queue_url, callback=settings.callback, space=settings.space_id,
        executor=None if settings.space_id else "local", work_dir=settings.work_dir,
        endpoint=settings.endpoint, token=settings.token, **settings.worker_options)
    from .commands.worker_cmd import _say

    return build(worker_settings, say=say or _say)


# ---------------------------------------------------------------- the submit form


def hardware_choices(prices: dict[str, float] | None = None) -> list[tuple[str, str]]:
    """(label, flavor) pairs, paid flavors first by price; the idle flavor is not a training target."""
    prices = prices or FALLBACK_PRICES
    flavors = [f for f in FLAVORS if f != IDLE_FLAVOR]
    flavors.sort(key=lambda f: (prices.get(f) is None, prices.get(f, 0.0), f))
    return [(f"{f} (${prices[f]:.2f}/h)" if f in prices else f, f) for f in flavors]


def parse_params(text: str | dict | None) -> dict:
    if isinstance(text, dict):
        return text
    text = (text or "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValidationError("params", f"is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(value, dict):
        raise ValidationError("params", 'must be a JSON object, like {"epochs": 3}')
    return value


def _number(value: Any, name: str) -> Any:
    # Number inputs arrive as floats (or None when emptied); the validators want integers.
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValidationError(name, "is required")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def new_task(*, model_id: str, dataset_id: str, hardware: str | None, params: Any, priority: Any,
             max_attempts: Any, timeout_s: Any, submitted_by: str) -> Task:
    """A validated task from the form's values. Raises ValidationError naming the first bad field."""
    return Task.new(
        model_id, dataset_id, hardware or DEFAULT_HARDWARE, params=parse_params(params),
        priority=_number(priority, "priority"), max_attempts=_number(max_attempts, "max_attempts"),
        timeout_s=_number(timeout_s, "timeout_s"), submitted_by=submitted_by,
    )


# ---------------------------------------------------------------- the queue


class CachedQueue:
    """One queue read shared by every open page for `ttl_s` (each browser refreshes on a timer)."""

    def __init__(self, queue, ttl_s: float = 1.0):
        self.queue = queue
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._at = 0.0
        self._tasks: list[Task] = []

    def tasks(self, fresh: bool = False) -> list[Task]:
        with self._lock:
            if fresh or time.monotonic() - self._at > self.ttl_s:
                self._tasks = self.queue.list()
                self._at = time.monotonic()
            return list(self._tasks)

    def invalidate(self) -> None:
        with self._lock:
            self._at = 0.0


def _duration(task: Task, now: datetime) -> float | None:
    if task.started_at is None:
        return None
    end = task.finished_at if task.finished_at and task.status is not Status.RUNNING else now
    return max(0.0, (end - task.started_at).total_seconds())


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def filter_tasks(tasks: Iterable[Task], status: str | None) -> list[Task]:
    tasks = list(tasks)
    if status and status != ALL:
        tasks = [t for t in tasks if t.status.value == status]
    # Newest first: the task just submitted is at the top.
    return sorted(tasks, key=lambda t: (t.submitted_at or datetime.min.replace(tzinfo=timezone.utc), t.id),
                  reverse=True)


def table_rows(tasks: Iterable[Task], now: datetime | None = None) -> list[list]:
    now = now or utcnow()
    return [[t.id, t.status.value, t.model_id, t.dataset_id, t.hardware, t.submitted_by, t.attempts,
             format_time(t.started_at), format_seconds(_duration(t, now)),
             "" if t.cost_usd is None else round(t.cost_usd, 6)] for t in tasks]


def task_record(task: Task) -> dict:
    """A task as the API returns it: JSON-friendly, redacted."""
    record = task.to_dict()
    record["error"] = redact(record.get("error") or "")
    return record


# ---------------------------------------------------------------- costs


def cost_summary(tasks: Iterable[Task]) -> dict:
    rows = [t for t in tasks if t.gpu_seconds]
    return {
        "tasks": [{"id": t.id, "hardware": t.hardware, "gpu_seconds": round(t.gpu_seconds, 1),
                   "cost_usd": round(t.cost_usd or 0.0, 6)} for t in rows],
        "gpu_seconds": round(sum(t.gpu_seconds for t in rows), 1),
        "cost_usd": round(sum(t.cost_usd or 0.0 for t in rows), 6),
    }


def gpu_hours_per_day(tasks: Iterable[Task]):
    """GPU hours by finish day (UTC) and flavor, for a bar plot."""
    import pandas as pd

    totals: dict[tuple[str, str], float] = {}
    for t in tasks:
        if not t.gpu_seconds:
            continue
        when = t.finished_at or t.started_at or t.submitted_at
        day = when.strftime("%Y-%m-%d") if when else "unknown"
        totals[(day, t.hardware)] = totals.get((day, t.hardware), 0.0) + t.gpu_seconds / 3600
    frame = pd.DataFrame([{"day": d, "hardware": h, "gpu_hours": round(v, 5)} for (d, h), v in sorted(totals.items())],
                         columns=["day", "hardware", "gpu_hours"])
    return frame


# ---------------------------------------------------------------- runtime and the running task


def runtime_summary(status: dict | None, started: float, now: float | None = None) -> dict:
    """Stage, hardware, the worker's last decision and its reason, time on paid hardware so far."""
    now = time.time() if now is None else now
    status = status or {}
    runtime = status.get("runtime") or {}
    hardware = runtime.get("hardware")
    # On a Space the app restarts with every hardware change, so this process's age is the GPU's.
    on_gpu = round(now - started, 1) if is_paid(hardware) and not runtime.get("hardware") == "local" else 0.0
    return {
        "stage": runtime.get("stage") or "",
        "hardware": hardware or "",
        "requested_hardware": runtime.get("requested_hardware") or "",
        "worker_state": status.get("state") or "off",
        "action": status.get("action") or "",
        "reason": redact(status.get("reason") or ""),
        "decided_at": status.get("decided_at") or "",
        "gpu_seconds_so_far": on_gpu,
        "running_task": status.get("task") or "",
        "progress": status.get("progress"),
        "done": status.get("done", 0),
        "failed": status.get("failed", 0),
        "last_error": redact(status.get("last_error") or ""),
    }


def runtime_markdown(summary: dict) -> str:
    lines = [
        f"**Stage** {summary['stage'] or '?'} · **hardware** {summary['hardware'] or '?'}"
        f" · **requested** {summary['requested_hardware'] or '?'}",
        f"**Worker** {summary['worker_state']}: {summary['action'] or '-'}"
        + (f" — {summary['reason']}" if summary["reason"] else ""),
    ]
    if summary["gpu_seconds_so_far"]:
        lines.append(f"**On paid hardware for** {format_seconds(summary['gpu_seconds_so_far'])}")
    if summary["last_error"]:
        lines.append(f"**Last error** {summary['last_error']}")
    return "  \n".join(lines)


def running_view(task_id: str | None, work_dir: str | os.PathLike | None, lines: int = 30) -> tuple[float, str, str]:
    """(fraction done, progress message, log tail) of the running task."""
    if not task_id:
        return 0.0, "No task is running.", ""
    progress = read_progress(task_id, work_dir) or {}
    fraction = float(progress.get("fraction") or progress.get("progress") or 0.0)
    message = str(progress.get("message") or "")
    log = "\n".join(tail_log(task_id, lines, work_dir))
    return max(0.0, min(1.0, fraction)), redact(f"{task_id}: {fraction:.0%} {message}".strip()), redact(log)


def progress_html(fraction: float, label: str) -> str:
    from html import escape

    pct = round(fraction * 100)
    return (f'<div class="sched-progress" data-progress="{pct}">'
            f'<div class="sched-bar"><div class="sched-fill" style="width:{pct}%"></div></div>'
            f'<div class="sched-label">{escape(label)}</div></div>')
