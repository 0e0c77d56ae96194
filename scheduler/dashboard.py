"""What the Space app shows and accepts, as plain functions of tasks and worker status (no Gradio).

The app (space_app/app.py) only wires these to components; everything here is unit-testable and
nothing here returns a token: every string that leaves goes through `redact`.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any, Iterable, Mapping

from .callbacks import read_progress, tail_log
from .errors import ValidationError
from .hardware import IDLE_FLAVOR, is_paid
from .redact import redact, register_secret
from .schema import label
from .tasks import DEFAULT_HARDWARE, Status, Task, format_time, utcnow

ALL = "ALL"
STATUS_CHOICES = [ALL, *(s.value for s in Status)]
# The queue table: (tasks.csv column, or `duration`, computed; width; Gradio datatype); headers are
# the schema's labels. Widths fit every header on one line from 1280 to 1920 px
# (tests/app/test_table_in_browser.py).
TABLE_COLUMNS = (("id", "18%", "str"), ("status", "8%", "html"), ("model_id", "12.5%", "str"),
                 ("dataset_id", "11%", "str"), ("hardware", "8.5%", "str"), ("submitted_by", "9.5%", "str"),
                 ("attempts", "7%", "str"), ("duration", "7%", "str"), ("cost_usd", "8%", "str"),
                 ("error", "10.5%", "str"))
TABLE_HEADERS = ["duration" if name == "duration" else label(name) for name, _, _ in TABLE_COLUMNS]
TABLE_WIDTHS = [width for _, width, _ in TABLE_COLUMNS]
TABLE_DATATYPES = [kind for _, _, kind in TABLE_COLUMNS]
TABLE_ERROR_CHARS = 72
LOG_LINES = 200
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
        from .commands.common import resolve_queue

        env = os.environ if env is None else env
        queue = env.get("SCHEDULER_QUEUE")
        if queue:
            queue = resolve_queue(queue)  # OWNER/NAME, ./folder, hf://..., as on the command line
        else:
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


def hardware_choices(catalog) -> list[tuple[str, str]]:
    """(label, flavor) pairs for the form's dropdown: the flavors a task may name (`catalog`, a
    flavors.Catalog) cheapest first with their hourly price in USD; the free idle flavor is no
    training target and is left out."""
    prices = catalog.prices()
    return [(f"{f} (${prices[f]:.2f}/h)" if prices.get(f) else f, f) for f in catalog.trainable() if f != IDLE_FLAVOR]


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
             max_attempts: Any, timeout_s: Any, submitted_by: str, task_id: str | None = None) -> Task:
    """A validated task from the form's values. `task_id`: the client's key (a retried submit with
    the same one adds nothing); empty for a new id. Raises ValidationError naming the first bad field."""
    return Task.new(
        model_id, dataset_id, hardware or DEFAULT_HARDWARE, params=parse_params(params),
        priority=_number(priority, "priority"), max_attempts=_number(max_attempts, "max_attempts"),
        timeout_s=_number(timeout_s, "timeout_s"), submitted_by=submitted_by,
        id=(task_id or "").strip() or None,
    )


# ---------------------------------------------------------------- the queue


class CachedQueue:
    """The queue's tasks as every open page and API client reads them, with one read at a time.

    A page's timer gets a copy at most `ttl_s` old, or the last one while a fresher read is under
    way, but never one older than the last `invalidate()` (a write made here shows at once);
    `fresh=True` (the API) waits for a read that started after the call, so a client sees its own
    changes. No lock is ever held across a read: `invalidate()` after a write returns at once,
    however many readers wait on a slow Hub (a submit's answer never queues behind them)."""

    def __init__(self, queue, ttl_s: float = 1.0, clock=time.monotonic):
        self.queue = queue
        self.ttl_s = ttl_s
        self._clock = clock
        self._cond = threading.Condition()
        self._generation = 0  # bumped by invalidate(): copies read before are stale
        self._copy: list[Task] | None = None
        self._copy_started = float("-inf")
        self._copy_generation = -1
        self._reading = False

    def tasks(self, fresh: bool = False) -> list[Task]:
        with self._cond:
            called, generation = self._clock(), self._generation
            while True:
                if self._usable(called, generation, fresh):
                    return list(self._copy)
                if not self._reading:
                    break
                if not fresh and self._copy is not None and self._copy_generation >= generation:
                    return list(self._copy)  # only older than ttl_s: it will do for a page meanwhile
                self._cond.wait()
            self._reading = True
            started, generation = self._clock(), self._generation
        try:
            tasks = self.queue.list()
        except BaseException:
            with self._cond:
                self._reading = False
                self._cond.notify_all()
            raise
        with self._cond:
            self._copy, self._copy_started, self._copy_generation = tasks, started, generation
            self._reading = False
            self._cond.notify_all()
        return list(tasks)

    def last_copy(self) -> list[Task]:
        """The tasks of the last read, whatever its age ([] before the first); never reads."""
        with self._cond:
            return list(self._copy or [])

    def _usable(self, called: float, generation: int, fresh: bool) -> bool:
        if self._copy is None or self._copy_generation < generation:
            return False
        return self._copy_started >= called if fresh else called - self._copy_started <= self.ttl_s

    def invalidate(self) -> None:
        """After a write: later calls get a copy read after it. Never waits for a read."""
        with self._cond:  # held for a counter increment only, never across I/O
            self._generation += 1


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


def format_usd(value: float | None) -> str:
    if value is None:
        return ""
    return f"${value:.4f}" if value < 10 else f"${value:,.2f}"


def status_label(status: Status) -> str:
    """The status as a coloured label (HTML; the colours are the app's `.status-*` CSS)."""
    return f'<span class="status-label status-{status.value.lower()}">{status.value}</span>'


_ATTEMPT_PREFIX = re.compile(r"^attempt (\d+): ")


def _split_error(task: Task) -> tuple[int | None, str]:
    """(the attempt an error is about, its text): the queue stores "attempt N: <error>"."""
    text = redact(task.error or "").strip()
    found = _ATTEMPT_PREFIX.match(text)
    return (int(found.group(1)), text[found.end():]) if found else (None, text)


def short_error(task: Task, limit: int = TABLE_ERROR_CHARS) -> str:
    """The error's first line, without the attempt prefix (the table has a column for it), clipped."""
    _, text = _split_error(task)
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def table_rows(tasks: Iterable[Task], now: datetime | None = None) -> list[list]:
    """Rows of the queue table, in TABLE_COLUMNS order."""
    now = now or utcnow()
    return [[t.id, status_label(t.status), t.model_id, t.dataset_id, t.hardware, t.submitted_by,
             f"{t.attempts}/{t.max_attempts}", format_seconds(_duration(t, now)),
             "" if t.cost_usd is None else f"{t.cost_usd:.4f}", short_error(t)] for t in tasks]


def find_task(tasks: Iterable[Task], task_id: str | None) -> Task | None:
    task_id = (task_id or "").strip()
    return next((t for t in tasks if t.id == task_id), None) if task_id else None


def _clock_time(value: datetime | None) -> str:
    return value.strftime("%H:%M:%S UTC") if value else ""


def _full_stop(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else text + "."


def status_sentence(task: Task, now: datetime | None = None) -> str:
    """Where the task stands, in a sentence a person reads without knowing the queue's columns."""
    now = now or utcnow()
    attempt, error = _split_error(task)
    attempt = attempt or task.attempts  # the attempt the error is about; a running one may be the next
    took = format_seconds(_duration(task, now))
    if task.status is Status.DONE:
        return f"Done in {took} on {task.hardware}." if took else f"Done on {task.hardware}."
    if task.status is Status.FAILED:
        tried = f"attempt {attempt} of {task.max_attempts}"
        return f"Failed on {tried}: {error}" if error else f"Failed on {tried}."
    if task.status is Status.CANCELLED:
        return f"Cancelled: {error}" if error else "Cancelled."
    if task.status is Status.RUNNING:
        tried = f"attempt {task.attempts} of {task.max_attempts}"
        sentence = f"Running on {task.hardware} for {took} ({tried})" if took else f"Running on {task.hardware}"
        if task.worker:
            sentence += f", worker {task.worker}"
        return sentence + (f". The previous attempt failed: {_full_stop(error)}" if error else ".")
    if error:
        when = f"after {_clock_time(task.not_before)}" if task.not_before and task.not_before > now else "next"
        return f"Attempt {attempt} of {task.max_attempts} failed: {_full_stop(error)} It runs again {when}."
    if task.not_before and task.not_before > now:
        return f"Waiting until {_clock_time(task.not_before)}, then for {task.hardware}."
    return f"Waiting for {task.hardware}: the Space switches to it when this task's turn comes."


def task_detail_html(task: Task | None, now: datetime | None = None) -> str:
    """The selected task: where it stands, its fields, history, cost, params, result and full error.
    Every value is escaped and redacted."""
    if task is None:
        return '<div class="task-detail empty">Select a task in the table to see its details and log.</div>'
    now = now or utcnow()

    def row(name: str, value: Any) -> str:
        return f"<tr><th>{name}</th><td>{escape(redact(str(value)))}</td></tr>" if value not in (None, "") else ""

    def block(title: str, value: Any) -> str:
        text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True) if isinstance(value, Mapping) else value
        return f"<h4>{title}</h4><pre>{escape(redact(str(text)))}</pre>"

    submitted = " ".join(filter(None, [format_time(task.submitted_at), f"by {task.submitted_by}" if task.submitted_by else ""]))
    gpu = format_seconds(task.gpu_seconds)
    cost = f"{format_usd(task.cost_usd) or '$0'} for {gpu} of {task.hardware}" if gpu else "no GPU time recorded"
    fields = "".join([
        row("model", task.model_id), row("dataset", task.dataset_id), row("hardware", task.hardware),
        row("priority", task.priority), row("submitted", submitted),
        row("attempts", f"{task.attempts} of {task.max_attempts}, timeout {format_seconds(task.timeout_s)} each"),
        row("worker", task.worker), row("started", format_time(task.started_at)),
        row("finished", format_time(task.finished_at)), row("duration", format_seconds(_duration(task, now))),
        row("lease until", format_time(task.lease_until) if task.status is Status.RUNNING else ""),
        row("not before", format_time(task.not_before)), row("cost", cost),
    ])
    parts = [f'<div class="task-detail" data-task="{escape(task.id)}" data-status="{task.status.value}">',
             f'<div class="task-head"><code>{escape(task.id)}</code> {status_label(task.status)}</div>',
             f'<p class="task-sentence">{escape(status_sentence(task, now))}</p>',
             f'<table class="task-fields">{fields}</table>',
             block("params", task.params or {})]
    if task.result:
        parts.append(block("result", task.result))
    if task.error:
        parts.append(block("error", _split_error(task)[1]))
    parts.append("</div>")
    return "".join(parts)


def task_log(task: Task | None, work_dir: str | os.PathLike | None, lines: int = LOG_LINES) -> tuple[str, str]:
    """(where the log comes from, its text). A running task's is the live tail in the work dir;
    a finished one's is the tail stored in its `log` column with its outcome."""
    if task is None:
        return "Log", ""
    if task.status is Status.RUNNING:
        live = "\n".join(tail_log(task.id, lines, work_dir))
        return "Log (live, this attempt)", redact(live)
    stored = "\n".join((task.log or "").splitlines()[-lines:])
    if stored:
        return "Log (stored with the outcome)", redact(stored)
    return "Log (none stored for this task)", ""


def task_record(task: Task) -> dict:
    """A task as the API returns it: JSON-friendly, redacted."""
    record = task.to_dict()
    for name in ("error", "log"):
        record[name] = redact(record.get(name) or "")
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
    pct = round(fraction * 100)
    return (f'<div class="sched-progress" data-progress="{pct}">'
            f'<div class="sched-bar"><div class="sched-fill" style="width:{pct}%"></div></div>'
            f'<div class="sched-label">{escape(label)}</div></div>')
