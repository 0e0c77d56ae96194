"""Where a run of a task happens: one seam, three implementations, chosen by name.

- `space` (the default): a child process on the Space's own hardware, which the worker switches to
  the task's flavor first (the Space restarts onto it);
- `local`: a child process on this machine, whatever it is; the hardware never changes;
- `jobs`: a Hugging Face Job of the task's flavor; the Space stays on cpu-basic and several tasks
  run at once. A Job runs `python -m scheduler.executors run-task` in `image` (by default the
  Space's own, `hf.co/spaces/OWNER/NAME`), with the task in its environment and the token as a
  Job secret; its outcome comes back as the last line of its log, redacted.

An executor starts runs; a run is polled until it reports a `RunResult`, and can be asked to stop
and then killed. Everything else (claims, leases, cancel, timeout, outcome recording, redaction)
is the worker's one lifecycle (worker.py), the same for all three.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from .callbacks import (CallbackProcess, RunContext, TaskFiles, TaskLog, classify_exception, describe_exception,
                        load_callback)
from .errors import UserError
from .hub import describe
from .outcome import RunResult
from .redact import redact, register_secret
from .tasks import COLUMNS, Task

ENV_TASK = "SCHEDULER_TASK"
ENV_STOP_GRACE = "SCHEDULER_STOP_GRACE_S"
RESULT_MARK = "SCHEDULER_RESULT "
_JOB_BANNER = "===== Job started"
TASK_LABEL = "space-scheduler-task"
LEASE_LABEL = "space-scheduler-lease"
HOME_LABEL = "space-scheduler-home"


class Run(Protocol):
    """One run of one task under one lease."""

    task: Task
    lease_id: str
    log: TaskLog

    def poll(self) -> RunResult | None:
        """The run's result once it has ended, None while it runs. Cheap to call often."""

    def request_stop(self) -> None:
        """Ask the run to stop (the callback's `ctx.should_stop()` turns True; a Job is cancelled)."""

    def kill(self) -> None:
        """End the run for good: its whole process tree, or its Job."""

    def billed_seconds(self, wall_s: float) -> float:
        """Seconds of paid hardware this run used, given the worker's own wall-clock measure."""


class Executor(Protocol):
    name: str
    capacity: int  # runs at once
    manages_hardware: bool  # the worker switches the Space's own hardware to each task's flavor

    def start(self, task: Task, lease_id: str) -> Run: ...

    def price(self, flavor: str | None) -> float:
        """USD per hour of `flavor` on this executor."""

    def cost_usd(self, seconds: float, flavor: str | None) -> float:
        """What a run of `seconds` on `flavor` costs: its share of the Space's paid period, or the bill
        of its own Job (per started minute)."""

    def adopt(self, held: dict[str, Task]) -> list[Run]:
        """Runs still going for tasks this worker's home holds (`held`: task id -> task, with their
        lease ids), found again after a restart; anything else it finds of ours is stopped."""


# ---------------------------------------------------------------- child processes (space, local)


class ProcessRun:
    def __init__(self, process: CallbackProcess, task: Task, lease_id: str):
        self.process, self.task, self.lease_id = process, task, lease_id
        self.log = process.log
        self._result: RunResult | None = None

    def poll(self) -> RunResult | None:
        if self._result is None and not self.process.running():
            self._result = self.process.finish()
        return self._result

    def request_stop(self) -> None:
        self.process.request_stop()

    def kill(self) -> None:
        self.process.kill()

    def billed_seconds(self, wall_s: float) -> float:
        return wall_s


class ProcessExecutor:
    """The callback in a child process of this worker, on whatever hardware this machine has."""

    capacity = 1

    def __init__(self, name: str, callback: str, work_dir: Path, *, token: str | None, endpoint: str | None,
                 prices: Callable[[], dict[str, float]] = dict, manages_hardware: bool = True):
        self.name = name
        self.callback = callback
        self.work_dir = work_dir
        self.token = token
        self.endpoint = endpoint
        self.manages_hardware = manages_hardware
        self._prices = prices

    def start(self, task: Task, lease_id: str) -> Run:
        process = CallbackProcess(self.callback, task, self.work_dir, token=self.token, endpoint=self.endpoint,
                                  marker=f"{task.id}.{lease_id}")
        return ProcessRun(process, task, lease_id)

    def price(self, flavor: str | None) -> float:
        return self._prices().get(flavor or "", 0.0)

    def cost_usd(self, seconds: float, flavor: str | None) -> float:
        # The run's share of its replica's period; the period itself is billed per started minute.
        return seconds / 3600 * self.price(flavor)

    def adopt(self, held: dict[str, Task]) -> list[Run]:
        return []  # a child process does not outlive the worker that started it (its watchdog)


# ---------------------------------------------------------------- Hugging Face Jobs


@dataclass(frozen=True)
class JobsOptions:
    """What only the Jobs executor needs. `image`: default the Space's own; `namespace`: default the
    Space's owner; `env`/`secrets`: extra for every Job; `poll_s`: seconds between inspections of a
    running Job (each is an API request, counted in the account's request quota)."""

    max_concurrent_jobs: int = 3
    image: str | None = None
    namespace: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    poll_s: float = 10.0
    logs_every_s: float = 30.0
    stop_grace_s: float = 5.0  # inside the Job: how long a cancelled callback gets to return


class JobRun:
    def __init__(self, executor: "JobsExecutor", task: Task, lease_id: str, job_id: str, log: TaskLog):
        self.executor, self.task, self.lease_id, self.job_id, self.log = executor, task, lease_id, job_id, log
        self._lines_seen = 0
        self._next_poll = 0.0
        self._next_logs = 0.0
        self._result: RunResult | None = None
        self._seconds: float | None = None
        self._cancel_sent = False

    def _lines(self) -> list[str]:
        ex = self.executor
        try:
            lines = [ln for ln in ex.api.fetch_job_logs(job_id=self.job_id, namespace=ex.namespace)
                     if not ln.startswith(_JOB_BANNER)]
        except Exception:
            return []
        for line in lines[self._lines_seen:]:
            if not line.startswith(RESULT_MARK):
                self.log.write(line)
        self._lines_seen = max(self._lines_seen, len(lines))
        return lines

    def poll(self) -> RunResult | None:
        if self._result is not None:
            return self._result
        now = time.monotonic()
        if now < self._next_poll:
            return None
        self._next_poll = now + self.executor.options.poll_s
        ex = self.executor
        try:
            info = ex.api.inspect_job(job_id=self.job_id, namespace=ex.namespace)
        except Exception as exc:
            self.log.write(f"could not inspect Job {self.job_id}: {describe(exc)}")
            return None
        stage = str(info.status.stage)
        if stage not in TERMINAL_JOB_STAGES:
            if now >= self._next_logs:
                self._next_logs = now + ex.options.logs_every_s
                self._lines()
            return None
        lines = self._lines()
        self._seconds = _job_seconds(info)
        outcome: dict[str, Any] | None = None
        for line in reversed(lines):
            if line.startswith(RESULT_MARK):
                try:
                    outcome = json.loads(line[len(RESULT_MARK):])
                except ValueError:
                    outcome = None
                break
        if stage == "COMPLETED" and outcome is not None and "error" not in outcome:
            self._result = RunResult(ok=True, result=outcome.get("result"))
        elif outcome is not None and outcome.get("error"):
            self._result = RunResult(ok=False, error=redact(outcome["error"]), retry=bool(outcome.get("retry", True)))
        else:
            message = info.status.message or f"the Job ended {stage}"
            self._result = RunResult(ok=False, error=redact(f"Job {self.job_id}: {message}"))
        return self._result

    def request_stop(self) -> None:
        # A Job has no soft stop: cancelling it is the request; the worker kills after its grace.
        if not self._cancel_sent:
            self._cancel_sent = True
            self.kill()

    def kill(self) -> None:
        ex = self.executor
        try:
            ex.api.cancel_job(job_id=self.job_id, namespace=ex.namespace)
        except Exception as exc:
            self.log.write(f"could not cancel Job {self.job_id}: {describe(exc)}")
        self._next_poll = 0.0

    def billed_seconds(self, wall_s: float) -> float:
        return self._seconds if self._seconds is not None else wall_s


TERMINAL_JOB_STAGES = frozenset({"COMPLETED", "CANCELED", "ERROR", "DELETED"})


def _job_seconds(info) -> float | None:
    started, finished = getattr(info, "started_at", None), getattr(info, "finished_at", None)
    if started and finished:
        return max(0.0, (finished - started).total_seconds())
    return None


class JobsExecutor:
    """Each run is a Hub Job labelled with its task, lease and the worker's home, so a run whose
    `run_job` answer was lost, or one started by a predecessor of this worker, is found again by label
    (`adopt`, `find`) instead of being started twice."""

    name = "jobs"
    manages_hardware = False

    def __init__(self, api, callback: str, *, home: str, image: str, namespace: str, token: str | None,
                 max_timeout_s: float, work_dir: Path, options: JobsOptions = JobsOptions()):
        if options.max_concurrent_jobs < 1:
            raise UserError(f"max_concurrent_jobs must be at least 1, got {options.max_concurrent_jobs}")
        self.api = api
        self.callback = callback
        self.home_label = _label_value(home)
        self.image = image
        self.namespace = namespace
        self.token = token
        register_secret(token)
        self.max_timeout_s = max_timeout_s
        self.work_dir = work_dir
        self.options = options
        self.capacity = options.max_concurrent_jobs
        self._prices: dict[str, float] | None = None

    def _log(self, task: Task) -> TaskLog:
        return TaskLog(TaskFiles(self.work_dir, task.id).log)

    def find(self, lease_id: str) -> str | None:
        """The id of a Job started for this lease, if any (after a `run_job` whose answer was lost)."""
        found = next(iter(self.api.list_jobs(labels={LEASE_LABEL: lease_id}, namespace=self.namespace)), None)
        return found.id if found is not None else None

    def start(self, task: Task, lease_id: str) -> Run:
        log = self._log(task)
        limit = int(min(float(task.timeout_s), self.max_timeout_s))
        env = {**self.options.env, ENV_TASK: json.dumps(dict(zip(COLUMNS, task.to_cells()))),
               "SCHEDULER_CALLBACK": self.callback, ENV_STOP_GRACE: str(self.options.stop_grace_s)}
        secrets = {**self.options.secrets}
        if self.token:
            secrets["HF_TOKEN"] = self.token
        labels = {TASK_LABEL: task.id, LEASE_LABEL: lease_id, HOME_LABEL: self.home_label}
        try:
            job_id = self.api.run_job(image=self.image, command=["python", "-m", "scheduler.executors", "run-task"],
                                      env=env, secrets=secrets or None, flavor=task.hardware, timeout=limit,
                                      labels=labels, namespace=self.namespace).id
        except Exception as exc:
            # The Job may exist although the answer was lost: look for it before anyone starts another.
            try:
                job_id = self.find(lease_id)
            except Exception as lookup:
                log.write(f"run_job failed ({describe(exc)}) and the Job could not be looked up: {describe(lookup)}")
                raise exc from None
            if job_id is None:
                log.write(f"run_job failed ({describe(exc)}) and no Job exists for this lease")
                raise
            log.write(f"run_job failed ({describe(exc)}) but Job {job_id} exists for this lease: following it")
        log.write(f"attempt {task.attempts}/{task.max_attempts} as Job {job_id} on {task.hardware}")
        return JobRun(self, task, lease_id, job_id, log)

    def adopt(self, held: dict[str, Task]) -> list[Run]:
        by_lease = {t.lease_id: t for t in held.values() if t.lease_id}
        runs: list[Run] = []
        for job in self.api.list_jobs(labels={HOME_LABEL: self.home_label}, namespace=self.namespace):
            if str(job.status.stage) in TERMINAL_JOB_STAGES:
                continue
            labels = job.labels or {}
            task = by_lease.get(labels.get(LEASE_LABEL, ""))
            if task is not None:
                log = self._log(task)
                log.write(f"following Job {job.id} again after a restart of the worker")
                runs.append(JobRun(self, task, task.lease_id, job.id, log))
            else:
                # Its task was cancelled, requeued or taken by another worker: the Job bills for nothing.
                try:
                    self.api.cancel_job(job_id=job.id, namespace=self.namespace)
                except Exception:
                    pass
        return runs

    def price(self, flavor: str | None) -> float:
        if self._prices is None:
            from .hardware import job_prices

            self._prices = job_prices(self.api)
        return self._prices.get(flavor or "", 0.0)

    def cost_usd(self, seconds: float, flavor: str | None) -> float:
        # A Job is its own paid period: billed per started minute (hub-facts §11).
        return math.ceil(seconds / 60) * self.price(flavor) / 60 if seconds > 0 else 0.0


def _label_value(value: str) -> str:
    # Label values are short tokens; a Space id has a slash.
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in value)[:63]


# ---------------------------------------------------------------- inside the Job


def run_task_in_job() -> int:
    """The Job's entry point: run the callback on the task from the environment, print the outcome.
    Everything printed is redacted: the Hub keeps a Job's log and shows it to its owner's org.

    A cancelled Job receives SIGTERM: `ctx.should_stop()` turns True and the callback has
    `$SCHEDULER_STOP_GRACE_S` seconds to return before the Job ends itself."""
    task = Task.from_cells(json.loads(os.environ[ENV_TASK]))
    register_secret(os.environ.get("HF_TOKEN"))
    work_dir = Path(os.environ.get("SCHEDULER_WORK_DIR") or tempfile.mkdtemp(prefix="space-scheduler-job-"))
    files = TaskFiles(work_dir, task.id)
    stopping = threading.Event()
    grace = float(os.environ.get(ENV_STOP_GRACE) or 5.0)

    def emit(line: str) -> None:
        print(redact(line.rstrip("\n")), flush=True)

    def report(outcome: dict[str, Any]) -> None:
        print(RESULT_MARK + redact(json.dumps(outcome, ensure_ascii=False, allow_nan=False)), flush=True)

    def on_term(signum, frame) -> None:
        stopping.set()

        def give_up() -> None:
            time.sleep(grace)
            emit(f"the callback did not return within {grace:g}s of the cancel")
            report({"error": "stopped: the Job was cancelled", "retry": False})
            os._exit(143)

        threading.Thread(target=give_up, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    try:
        callback = load_callback(os.environ["SCHEDULER_CALLBACK"])
        ctx = RunContext(task, files, emit=emit, should_stop=stopping.is_set,
                         token=os.environ.get("HF_TOKEN") or None, endpoint=os.environ.get("HF_ENDPOINT"))
        result = callback(task, ctx)
        if result is not None and not isinstance(result, dict):
            raise TypeError(f"the callback returned {type(result).__name__}; expected a dict or None")
        from .outcome import storable

        outcome: dict[str, Any] = {"result": storable(result or {})}
        code = 0
    except BaseException as exc:  # noqa: BLE001 - the Job must report every failure
        outcome = {"error": describe_exception(exc), "retry": classify_exception(exc)}
        emit(outcome["error"])
        code = 1
    report(outcome)
    return code


# ---------------------------------------------------------------- the registry

EXECUTORS = ("space", "local", "jobs")
ENV_EXECUTOR = "SCHEDULER_EXECUTOR"


if __name__ == "__main__":
    if sys.argv[1:] == ["run-task"]:
        sys.exit(run_task_in_job())
    sys.exit(f"usage: python -m scheduler.executors run-task (got {sys.argv[1:]})")
