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

from . import billing
from .callbacks import read_progress, tail_log
from .errors import ValidationError
from .hardware import IDLE_FLAVOR, is_paid
from .lease import run_may_continue
from .redact import redact, register_secret
from .schema import label
from .tasks import DEFAULT_HARDWARE, Status, Task, format_time, parse_time, utcnow

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


def status_label(status: Status, stopping: bool = False) -> str:
    """The status as a coloured label (HTML; the colours are the app's `.status-*` CSS). `stopping`:
    a cancelled task whose run has not reported its stop yet (see `is_stopping`)."""
    if stopping:
        return '<span class="status-label status-stopping">stopping…</span>'
    return f'<span class="status-label status-{status.value.lower()}">{status.value}</span>'


def is_stopping(task: Task, now: datetime) -> bool:
    """Cancelled, but its run may still be going: the worker has not recorded that it stopped (its
    lease is kept until then; lease.run_may_continue)."""
    return task.status is Status.CANCELLED and run_may_continue(task, now)


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
    return [[t.id, status_label(t.status, is_stopping(t, now)), t.model_id, t.dataset_id, t.hardware, t.submitted_by,
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
        if is_stopping(task, now):
            return (f"Stopping ({error or 'cancelled'}): the run gets a few seconds to end, then every process "
                    f"it started is killed; this says Cancelled once it has stopped.")
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
             f'<div class="task-head"><code>{escape(task.id)}</code> {status_label(task.status, is_stopping(task, now))}</div>',
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


def bill_html(bill: billing.Bill, costs: dict) -> str:
    """The cost panel's totals: what the Hub bills for the Space's paid periods (billing.bill), the
    tasks' shares and the overhead; `costs` is cost_summary()'s. Amounts in USD."""
    shares = f"{format_usd(costs['cost_usd']) or '$0'} over {len(costs['tasks'])} task(s)"
    if not bill.periods:
        return (f'<p class="bill"><b>Tasks</b> {shares}. No paid hardware recorded for this Space: it has stayed on '
                f"free CPU, or its tasks ran as Jobs (each billed on its own, per started minute).</p>")
    return (f'<p class="bill"><b>Billed</b> <span id="billed-usd">{format_usd(bill.billed_usd)}</span> for '
            f"{bill.periods} paid period(s), {format_seconds(bill.paid_seconds)} on paid hardware, per started minute"
            f" · <b>tasks</b> {shares} · <b>overhead</b> {format_usd(bill.overhead_usd)} (boots, switches, "
            f"waits on paid hardware, rounding up to whole minutes)</p>")


def billing_timeline_html(periods: Iterable[billing.Period], tasks: Iterable[Task], prices: Mapping[str, float],
                          now: datetime | None = None) -> str:
    """The paid periods as a timeline (inline SVG): a bar per replica on paid hardware, from its
    start to its end (or now), the runs of tasks on its flavor drawn darker inside it; the rest of a
    bar is overhead. Each bar's label gives its flavor and its bill (USD, per started minute)."""
    now = now or utcnow()
    periods = sorted(periods, key=lambda p: p.start)
    if not periods:
        return '<div class="timeline empty">No paid hardware yet: the Space has stayed on free CPU.</div>'
    begin = periods[0].start
    end = max((p.end or now) for p in periods)
    span = max(1.0, (end - begin).total_seconds())
    width, label_w, row_h = 1000, 230, 26

    def x(when: datetime) -> float:
        return label_w + (width - label_w - 10) * max(0.0, min(1.0, (when - begin).total_seconds() / span))

    runs = [t for t in tasks if t.started_at and t.gpu_seconds]
    rows = []
    for i, period in enumerate(periods):
        y = 8 + i * row_h
        stop = period.end or now
        usd = period.billed_usd(prices.get(period.flavor, 0.0), now)
        title = (f"{period.flavor} {format_time(period.start)} to {format_time(period.end) or 'now'}: "
                 f"{period.billed_minutes(now)} min billed, {format_usd(usd)}")
        rows.append(f'<text x="0" y="{y + 15}" font-size="12">{escape(period.flavor)} · {format_usd(usd)}'
                    f'{"" if period.end else " (running)"}</text>'
                    f'<rect class="period" x="{x(period.start):.1f}" y="{y}" width="{max(2.0, x(stop) - x(period.start)):.1f}" '
                    f'height="{row_h - 8}" fill="#fde68a"><title>{escape(title)}</title></rect>')
        for task in runs:
            started = max(task.started_at, period.start)
            finished = min(task.finished_at or now, stop)
            if task.hardware != period.flavor or finished <= started:
                continue
            rows.append(f'<rect class="run" x="{x(started):.1f}" y="{y + 3}" width="{max(2.0, x(finished) - x(started)):.1f}" '
                        f'height="{row_h - 14}" fill="#2563eb"><title>{escape(task.id)}: '
                        f'{format_seconds(task.gpu_seconds)}, {format_usd(task.cost_usd or 0.0)}</title></rect>')
    height = 8 + len(periods) * row_h + 18
    axis = (f'<text x="{label_w}" y="{height - 4}" font-size="11">{begin:%Y-%m-%d %H:%M} UTC</text>'
            f'<text x="{width - 10}" y="{height - 4}" font-size="11" text-anchor="end">{end:%H:%M} UTC</text>')
    legend = ('<div class="timeline-legend"><span style="background:#fde68a"></span> paid, no task '
              '(boot, switch, wait) <span style="background:#2563eb"></span> a task running</div>')
    return (f'<div class="timeline"><svg viewBox="0 0 {width} {height}" width="100%" role="img" '
            f'aria-label="paid periods">{"".join(rows)}{axis}</svg>{legend}</div>')


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
    """The worker's status (Worker.status()) as the page and the `/status` API show it: stage,
    hardware, the last decision and its reason, the runs going (task, flavor, seconds, stopping),
    a wait (what, until), the time this process has been on paid hardware (seconds)."""
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
        "executor": status.get("executor") or "",
        "worker_state": status.get("state") or "off",
        "target": status.get("target") or "",
        "action": status.get("action") or "",
        "reason": redact(status.get("reason") or ""),
        "decided_at": status.get("decided_at") or "",
        "waiting": status.get("waiting"),
        "stop_reason": status.get("stop_reason") or "",
        "gpu_seconds_so_far": on_gpu,
        "running_task": status.get("task") or "",
        "runs": status.get("runs") or [],
        "progress": status.get("progress"),
        "done": status.get("done", 0),
        "failed": status.get("failed", 0),
        "last_error": redact(status.get("last_error") or ""),
    }


RESTART_NOTE = "the Space restarts, usually 1-3 min; this page reconnects by itself"


def runtime_lines(summary: dict, prices: Mapping[str, float]) -> list[str]:
    """The runtime panel in plain words, a sentence per line: what the worker does, what a run has
    cost so far (USD at `prices`, USD per hour by flavor), what it waits for. No stage or class
    names: `summary` is runtime_summary()'s."""
    state = summary["worker_state"]
    if state == "off":
        return ["No worker runs in this app: tasks wait for a worker started elsewhere."]
    local = summary["executor"] == "local" or summary["hardware"] == "local"
    lines = []
    if state == "stopped":
        lines.append(f"The worker has stopped ({summary['stop_reason'] or 'stopped'}): tasks wait until it starts again.")
    waiting = summary["waiting"] or {}
    if waiting:
        until = parse_time(waiting.get("until"), "until")
        when = f"until {until:%H:%M} UTC" if until else "a while"
        what = str(waiting.get("what") or "")
        if "commit quota" in what:
            lines.append(f"Waiting for the commit quota {when}: the Hub takes 128 commits an hour per repository. "
                         "Finished tasks are kept by the worker and recorded then; nothing is lost.")
        else:
            lines.append(f"Waiting for {what} {when}.")
    for run in summary["runs"]:
        flavor = run.get("flavor") or "?"
        where = "this machine" if local else flavor
        if run.get("stopping"):
            lines.append(f"Stopping {run['task']} on {where} ({run['stopping']}): it gets a few seconds to end, "
                         "then every process it started is killed.")
            continue
        seconds = float(run.get("seconds") or 0.0)
        cost = "" if local else f", {format_usd(seconds / 3600 * prices.get(flavor, 0.0))} so far"
        lines.append(f"Training {run['task']} on {where}: {format_seconds(seconds)}{cost}.")
    if not summary["runs"] and state != "stopped":
        hardware = summary["hardware"]
        target = summary["target"] if state == "switching" else summary["requested_hardware"]
        if local:
            lines.append("Idle on this machine: waiting for tasks.")
        elif summary["executor"] == "jobs":
            lines.append(f"Idle on {hardware or IDLE_FLAVOR} (free): each task runs as a Hugging Face Job of its flavor.")
        elif target and hardware and target != hardware:
            if prices.get(target, 0.0) > 0:
                lines.append(f"Switching to {target}: {RESTART_NOTE}.")
            else:
                lines.append(f"Giving back {hardware}: switching to {target} (free); {RESTART_NOTE}.")
        elif hardware and prices.get(hardware, 0.0) > 0:
            lines.append(f"On {hardware} ({format_usd(prices[hardware])}/h) between tasks: given back when "
                         "nothing is left to run.")
        elif hardware:
            lines.append(f"Idle on {hardware} (free).")
        else:
            lines.append("Starting: reading the Space's hardware.")
    if summary["last_error"].strip():
        first = summary["last_error"].strip().splitlines()[0]
        lines.append(f"Last problem: {first if len(first) <= 160 else first[:159] + '…'}")
    return lines


def runtime_html(summary: dict, prices: Mapping[str, float]) -> str:
    """runtime_lines() as the page's panel: a paragraph each, escaped."""
    return '<div class="runtime">' + "".join(f"<p>{escape(line)}</p>" for line in runtime_lines(summary, prices)) + "</div>"


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
