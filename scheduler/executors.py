"""Where a task runs: on the Space itself (`space`, the default: the Space switches to the task's
GPU) or as a Hugging Face Job of the task's flavor (`jobs`: the Space stays on cpu-basic).

With Jobs nothing restarts the Space, several tasks can run at once (`max_concurrent_jobs`) and
each is billed only while its Job runs. A Job runs `python -m scheduler.executors run-task` in
`image`, which must contain this package and the callback; by default that is the Space's own
image (`hf.co/spaces/OWNER/NAME`), which the deploy step gives both. The task travels in the Job's
environment, the token as a Job secret; the callback's result comes back as the last log line.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .background import BackgroundLoop
from .callbacks import RunContext, TaskFiles, TaskLog, default_work_dir, describe_exception, load_callback
from .errors import LeaseLost, UserError
from .hub import describe
from .queue import TaskCancelled, TaskQueue
from .redact import redact, register_secret
from .tasks import COLUMNS, Task

EXECUTORS = ("space", "jobs")
ENV_EXECUTOR = "SCHEDULER_EXECUTOR"
ENV_TASK = "SCHEDULER_TASK"
RESULT_MARK = "SCHEDULER_RESULT "
TERMINAL_STAGES = frozenset({"COMPLETED", "CANCELED", "ERROR", "DELETED"})
_JOB_BANNER = "===== Job started"


@dataclass(frozen=True)
class JobsConfig:
    max_concurrent_jobs: int = 3
    image: str | None = None  # default: the Space's own image
    namespace: str | None = None  # default: the Space's owner
    env: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    lease_s: float = 600.0
    poll_s: float = 2.0
    idle_poll_s: float = 15.0
    max_timeout_s: float = 6 * 3600.0
    retry_delay_s: float | None = None  # None: the queue's backoff


@dataclass
class RunningJob:
    task: Task
    worker: str
    job_id: str
    log: TaskLog
    started: float
    deadline: float
    lines_seen: int = 0
    last_beat: float = 0.0
    stop_reason: str | None = None


class JobsWorker(BackgroundLoop):
    """Claims tasks and runs each as a Hub Job, up to `max_concurrent_jobs` at once.

    Same surface as `Worker` (run, start_thread, stop, wake, status) so an app can hold either.
    Claims are compare-and-swap writes, so several JobsWorkers can share one queue."""

    thread_name = "space-scheduler-jobs"

    def __init__(self, queue: TaskQueue, callback: str, *, api=None, token: str | None = None,
                 endpoint: str | None = None, space_id: str | None = None, controller=None,
                 config: JobsConfig = JobsConfig(), work_dir: str | os.PathLike | None = None,
                 name: str | None = None, say: Callable[[str], None] | None = None,
                 on_finish: Callable[[Task], None] | None = None):
        from huggingface_hub import HfApi

        from . import hub
        from .worker import worker_id

        if config.max_concurrent_jobs < 1:
            raise UserError("max_concurrent_jobs must be at least 1")
        hub.ensure_http_timeout()
        self.queue = queue
        self.callback = callback
        self.token = token
        register_secret(token)
        self.endpoint = endpoint
        self.api = api or HfApi(token=token, endpoint=endpoint)
        self.controller = controller
        self.space_id = space_id or getattr(controller, "space_id", None)
        self.namespace = config.namespace or (self.space_id.split("/")[0] if self.space_id else None)
        self.image = config.image or (f"hf.co/spaces/{self.space_id}" if self.space_id else None)
        if not self.image:
            raise UserError("the jobs executor needs an image (JobsConfig.image) or the Space whose image to use")
        self.config = config
        self.work_dir = Path(work_dir) if work_dir else default_work_dir()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.id = name or worker_id(self.space_id)
        self.on_finish = on_finish
        self._running: dict[str, RunningJob] = {}
        self._prices: dict[str, float] | None = None
        self._init_loop({"worker": self.id, "space": self.space_id, "executor": "jobs", "state": "starting",
                         "done": 0, "failed": 0, "last_error": None}, say)

    def _status_extras(self, status: dict) -> dict:
        status["jobs"] = {r.task.id: r.job_id for r in list(self._running.values())}
        return status

    # ------------------------------------------------------------ the loop

    def run(self, *, until_idle: bool = False) -> None:
        """Start Jobs for claimable tasks and follow them; with `until_idle`, return once nothing is
        running and nothing is claimable. Stopping cancels the Jobs still running (their tasks are
        retried), so no GPU is left billing for a worker that is gone."""
        self._stay_idle()
        try:
            while not self._stop.is_set():
                self._follow()
                started = self._fill()
                if until_idle and not self._running and not started:
                    break
                self._set(state="running" if self._running else "serving")
                self._wake.wait(self.config.poll_s if self._running else self.config.idle_poll_s)
                self._wake.clear()
        finally:
            for run in list(self._running.values()):
                run.stop_reason = f"interrupted: the worker was stopped ({self._stop_reason})"
                self._cancel(run)
            deadline = time.monotonic() + 30
            while self._running and time.monotonic() < deadline:
                self._follow()
                time.sleep(0.1)
            self._set(state="stopped")

    def _stay_idle(self) -> None:
        """The Space runs no task itself here; paid hardware left over from the other executor goes."""
        from .hardware import is_paid

        if self.controller is None or getattr(self.controller, "local", True):
            return
        try:
            runtime = self.controller.runtime()
            if is_paid(runtime.requested_hardware or runtime.hardware, self.controller.idle_flavor):
                self.controller.downgrade()
        except Exception as exc:
            self._set(last_error=f"could not check the Space's hardware: {describe(exc)}")

    def _fill(self) -> int:
        started = 0
        while len(self._running) < self.config.max_concurrent_jobs and not self._stop.is_set():
            # One lease owner per slot: a claim by an owner that already holds a task returns that
            # task again (how a lost claim answer is recovered), so slots must not share an owner.
            busy = {run.worker for run in self._running.values()}
            slot = next(f"{self.id}#{i}" for i in range(self.config.max_concurrent_jobs) if f"{self.id}#{i}" not in busy)
            task = self.queue.claim(slot, self.config.lease_s)
            if task is None:
                break
            self._start(task, slot)
            started += 1
        return started

    def _start(self, task: Task, slot: str) -> None:
        log = TaskLog(TaskFiles(self.work_dir, task.id).log)
        limit = int(min(float(task.timeout_s), self.config.max_timeout_s))
        env = {**self.config.env, ENV_TASK: json.dumps(dict(zip(COLUMNS, task.to_cells()))),
               "SCHEDULER_CALLBACK": self.callback}
        secrets = {**self.config.secrets}
        if self.token:
            secrets["HF_TOKEN"] = self.token
        try:
            job = self.api.run_job(image=self.image, command=["python", "-m", "scheduler.executors", "run-task"],
                                   env=env, secrets=secrets or None, flavor=task.hardware, timeout=limit,
                                   labels={"space-scheduler-task": task.id}, namespace=self.namespace)
        except Exception as exc:
            log.write(f"could not start a Job: {describe(exc)}")
            self._fail(task, slot, f"could not start a {task.hardware} Job: {describe(exc)}", retry=True, seconds=None)
            return
        log.write(f"attempt {task.attempts}/{task.max_attempts} as Job {job.id} on {task.hardware} by {slot}")
        self._say(f"task {task.id}: Job {job.id} on {task.hardware}")
        now = time.monotonic()
        self._running[task.id] = RunningJob(task, slot, job.id, log, now, now + limit + 60, last_beat=now)

    def _follow(self) -> None:
        for run in list(self._running.values()):
            try:
                info = self.api.inspect_job(job_id=run.job_id, namespace=self.namespace)
            except Exception as exc:
                self._set(last_error=redact(f"{run.task.id}: inspect {run.job_id}: {describe(exc)}"))
                continue
            self._stream_logs(run)
            stage = str(info.status.stage)
            if stage in TERMINAL_STAGES:
                self._finish(run, info, stage)
                continue
            self._heartbeat(run)
            if run.stop_reason is None and time.monotonic() > run.deadline:
                run.stop_reason = f"timed out after {run.task.timeout_s}s (timeout_s={run.task.timeout_s})"
                self._cancel(run)

    def _stream_logs(self, run: RunningJob) -> list[str]:
        try:
            lines = [ln for ln in self.api.fetch_job_logs(job_id=run.job_id, namespace=self.namespace)
                     if not ln.startswith(_JOB_BANNER)]
        except Exception:
            return []
        for line in lines[run.lines_seen:]:
            run.log.write(line)
        run.lines_seen = max(run.lines_seen, len(lines))
        return lines

    def _heartbeat(self, run: RunningJob) -> None:
        # Commits are rate-limited: one heartbeat per third of the lease, per running task.
        if time.monotonic() - run.last_beat < self.config.lease_s / 3:
            return
        try:
            self.queue.heartbeat(run.task.id, run.worker, self.config.lease_s)
            run.last_beat = time.monotonic()
        except TaskCancelled:
            run.stop_reason = "cancelled"
            self._cancel(run)
        except LeaseLost as exc:
            run.stop_reason = f"lease lost: {exc}"
            self._cancel(run)
        except Exception as exc:
            self._set(last_error=redact(f"{run.task.id}: heartbeat: {describe(exc)}"))

    def _cancel(self, run: RunningJob) -> None:
        run.log.write(f"stopping: {run.stop_reason}")
        try:
            self.api.cancel_job(job_id=run.job_id, namespace=self.namespace)
        except Exception as exc:
            run.log.write(f"could not cancel Job {run.job_id}: {describe(exc)}")

    def _finish(self, run: RunningJob, info, stage: str) -> None:
        self._running.pop(run.task.id, None)
        lines = self._stream_logs(run)
        seconds = _job_seconds(info, run)
        task = run.task
        result, error = None, None
        for line in reversed(lines):
            if line.startswith(RESULT_MARK):
                outcome = json.loads(line[len(RESULT_MARK):])
                result, error = outcome.get("result"), outcome.get("error")
                break
        cost = round(seconds / 3600 * self._price(task.hardware), 6)
        costs = dict(gpu_seconds=round(seconds, 3), cost_usd=cost)
        try:
            if run.stop_reason in ("cancelled",) or (run.stop_reason or "").startswith("lease lost"):
                run.log.write(f"not recorded: {run.stop_reason}")
            elif stage == "COMPLETED" and run.stop_reason is None and error is None:
                self._finished(self.queue.complete(task.id, run.worker, result or None, **costs))
                run.log.write(f"done in {seconds:.1f}s (Job {run.job_id})")
                self._set(done=self._status["done"] + 1)
            else:
                message = run.stop_reason or error or info.status.message or f"the Job ended {stage}"
                timed_out = message.startswith("timed out") or "timed out" in (info.status.message or "")
                interrupted = message.startswith("interrupted")
                self._fail(task, run.worker, message, retry=not timed_out, seconds=costs, delay=0.0 if interrupted else self.config.retry_delay_s)
                run.log.write(f"failed: {message}")
        except LeaseLost as exc:
            run.log.write(f"not recorded: {exc}")
        except Exception as exc:
            run.log.write(f"could not record the outcome: {describe(exc)}")
            self._set(last_error=redact(f"{task.id}: could not record the outcome: {describe(exc)}"))

    def _fail(self, task: Task, worker: str, error: str, *, retry: bool, seconds: dict | None,
              delay: float | None = None) -> None:
        self._finished(self.queue.fail(task.id, worker, redact(error), retry=retry, retry_delay_s=delay,
                                       **(seconds or {})))
        self._set(failed=self._status["failed"] + 1, last_error=redact(f"{task.id}: {error}"))

    def _finished(self, task: Task) -> None:
        if self.on_finish is None or not task.is_terminal:
            return
        try:
            self.on_finish(task)
        except Exception as exc:  # a notification must never change what was recorded
            self._set(last_error=redact(f"{task.id}: on_finish: {describe(exc)}"))

    def _price(self, flavor: str) -> float:
        from .hardware import hourly_prices

        if self._prices is None:
            self._prices = hourly_prices(self.api)
        return self._prices.get(flavor, 0.0)


def _job_seconds(info, run: RunningJob) -> float:
    started, finished = getattr(info, "started_at", None), getattr(info, "finished_at", None)
    if started and finished:
        return max(0.0, (finished - started).total_seconds())
    return time.monotonic() - run.started


# ---------------------------------------------------------------- inside the Job


def run_task_in_job() -> int:
    """The Job's entry point: run the callback on the task from the environment, print the outcome."""
    task = Task.from_cells(json.loads(os.environ[ENV_TASK]))
    register_secret(os.environ.get("HF_TOKEN"))
    work_dir = Path(os.environ.get("SCHEDULER_WORK_DIR") or tempfile.mkdtemp(prefix="space-scheduler-job-"))
    files = TaskFiles(work_dir, task.id)

    def emit(line: str) -> None:
        print(redact(line.rstrip("\n")), flush=True)

    try:
        callback = load_callback(os.environ["SCHEDULER_CALLBACK"])
        ctx = RunContext(task, files, emit=emit, should_stop=lambda: False,
                         token=os.environ.get("HF_TOKEN") or None, endpoint=os.environ.get("HF_ENDPOINT"))
        result = callback(task, ctx)
        if result is not None and not isinstance(result, dict):
            raise TypeError(f"the callback returned {type(result).__name__}; expected a dict or None")
        outcome: dict[str, Any] = {"result": json.loads(json.dumps(result or {}, default=str))}
        code = 0
    except BaseException as exc:  # noqa: BLE001 - the Job must report every failure
        outcome = {"error": describe_exception(exc)}
        emit(outcome["error"])
        code = 1
    print(RESULT_MARK + json.dumps(outcome), flush=True)
    return code


def make_worker(queue: TaskQueue, controller, callback: str, *, executor: str | None = None,
                jobs: JobsConfig | None = None, **options: Any):
    """`Worker` for the `space` executor (the default), `JobsWorker` for `jobs` ($SCHEDULER_EXECUTOR)."""
    from .worker import Worker

    executor = executor or os.environ.get(ENV_EXECUTOR) or "space"
    if executor not in EXECUTORS:
        raise UserError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if executor == "space":
        return Worker(queue, controller, callback, **options)
    allowed = {k: options[k] for k in ("token", "endpoint", "work_dir", "name", "say", "on_finish") if k in options}
    return JobsWorker(queue, callback, controller=controller, config=jobs or JobsConfig(), **allowed)


if __name__ == "__main__":
    if sys.argv[1:] == ["run-task"]:
        sys.exit(run_task_in_job())
    sys.exit(f"usage: python -m scheduler.executors run-task (got {sys.argv[1:]})")
