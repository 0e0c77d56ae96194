"""The worker: one task-run lifecycle for every executor, and the Space's hardware around it.

A run's lifecycle: claim (a fresh lease id, the fencing token) -> start on the executor -> watch
(cancel, timeout, lease, worker stop) -> outcome, written to the journal -> recorded in the queue.
Recording the outcome of task N and claiming task N+1 is one commit. Redaction, storable results,
stop reasons and outcome recording exist once, here and in outcome.py, whatever runs the task.

Threads: the loop (`run()`) makes every commit (claims, records, heartbeats) and every hardware
request; the watcher enforces stops (cancel, timeout, a lease about to run out, the worker stopping)
without ever waiting on a commit; the row watcher notices cancels and lost leases by polling the
queue's head (one cheap read every `watch_s`) and reading the table only when it moved.

The loop cannot die: a failing step backs off and goes on; paid hardware is given back in a
`finally`, retried until the Hub takes the request (a worker inside its own Space leaves that to the
restart its own request causes). Crash-loop guard: boots on paid hardware are counted in
`state.json` in the work dir and reset when a task finishes; after `crash_loop_boots` boots without
a finished task the next task for that flavor is failed without retry.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

from filelock import FileLock, Timeout
from huggingface_hub.errors import HfHubHTTPError

from . import billing
from . import decide as rules
from .background import BackgroundLoop
from .callbacks import TaskFiles, TaskLog, classify_exception, read_progress, tail_log, write_json_atomic
from .decide import Action, Downgrade, GiveUp, Policy, RequestHardware, RunTask, Serve, Wait
from .errors import LeaseLost, SchedulerError, UserError
from .executors import Executor, Run
from .flavors import Accelerators, Catalog, catalog, catalog_for, probe_accelerators
from .hardware import ERROR_STAGES, Runtime, is_paid
from .hub import RETRY_STATUSES, describe, status_of
from .journal import Journal
from .lease import (DEFAULT_HEARTBEAT_S, SPACE_LEASE_MARGIN_S, Holder, heartbeat_lease_s, is_predecessor,
                    new_boot_id, new_lease_id)
from .outcome import Outcome, RunResult, StopReason, decide_outcome
from .proctree import process_started_at
from .queue import ClaimSpec, Interrupted, TaskCancelled, TaskQueue
from .redact import redact, register_secret
from .schema import MAX_LOG_CHARS
from .settings import WorkerSettings
from .tasks import ACTIVE_STATUSES, Status, Task, format_time

TICK_S = 0.2
# The Space secret that carries unrecorded outcomes across a restart the commit quota forced.
SPILL_SECRET = "SCHEDULER_PENDING_OUTCOMES"
# Added to the work planned on paid hardware when its sleep time is set: a boot, a slow record.
SLEEP_MARGIN_S = 600


@dataclass
class ActiveRun:
    """A run this worker watches. Monotonic times, in seconds."""

    task: Task
    lease_id: str
    run: Run
    flavor: str
    started: float
    deadline: float  # the task's timeout
    lease_deadline: float  # when our lease may have run out, unless renewed
    stop: StopReason | None = None
    stop_at: float | None = None
    killed: bool = False
    flag: StopReason | None = None  # set by the row watcher or a heartbeat: cancelled, lease lost


class Worker(BackgroundLoop):
    """Runs the queue's tasks through one executor; with the `space` executor, switches the Space's
    hardware to each burst's flavor and back. Built by `settings.build_worker`."""

    thread_name = "space-scheduler-worker"

    def __init__(self, queue: TaskQueue, executor: Executor, *, controller, settings: WorkerSettings, home: str,
                 work_dir: str | os.PathLike, say: Callable[[str], None] | None = None,
                 on_finish: Callable[[Task], None] | None = None):
        self.queue = queue
        self.executor = executor
        self.controller = controller
        self.settings = settings
        self.token = settings.token
        register_secret(settings.token)
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(self.work_dir)
        # Called with each task this worker finished (DONE or FAILED), e.g. to notify its submitter.
        self.on_finish = on_finish
        self.holder = Holder(home, new_boot_id())
        self.id = str(self.holder)
        space = getattr(controller, "space_id", None)
        self.inside_space = bool(space) and os.environ.get("SPACE_ID") == space
        self.manages_hardware = executor.manages_hardware and not controller.local
        self.policy = Policy(idle_flavor=controller.idle_flavor, max_gpu_wait_s=settings.max_gpu_wait_s,
                             request_deadline_s=settings.request_deadline_s)
        self.heartbeat_s, self._lease = self._lease_rules()
        self.runs: dict[str, ActiveRun] = {}
        self._runs_lock = threading.Lock()
        self._run_ended = threading.Event()
        self._rows_now = threading.Event()
        self._claim: ClaimSpec | None = None  # a claim whose answer has not arrived yet
        self._last_beat = time.monotonic()
        self._handing_over: str | None = None
        self._retired_until = 0.0  # monotonic; see _retire
        self._forced: Action | None = None
        self._booted_at = time.monotonic()
        self._started = False
        self._active = threading.Event()  # run() is going: the watchers stay up between runs
        self._home_lock: FileLock | None = None
        self._accelerators: Accelerators | None = None  # this machine's GPUs, read once
        self._sleep_time_set: int | None = None  # the sleep time this worker last set
        self._spilled = False  # outcomes came from the Space secret SPILL_SECRET
        # Repo files to update with the next commit the worker makes anyway (billing.opened).
        self._pending_files: dict = {}
        self._period: billing.Period | None = None  # this replica's paid period, if it is on paid hardware
        self._watchers: list[threading.Thread] = []
        queue.on_wait = self._waiting
        self._init_loop({"worker": self.id, "space": space, "executor": executor.name, "state": "starting",
                         "done": 0, "failed": 0, "last_error": None, "heartbeat_s": self.heartbeat_s}, say)

    # ------------------------------------------------------------ leases

    def _lease_rules(self) -> tuple[float, Callable[[Task], float]]:
        """(heartbeat period, 0 = none; lease span per task). See WorkerSettings for the rules."""
        s = self.settings
        cap = s.max_timeout_s

        def whole_run(task: Task) -> float:
            return min(float(task.timeout_s), cap) + SPACE_LEASE_MARGIN_S

        if s.heartbeat_s is not None:
            beat = s.heartbeat_s
            span = s.lease_s or (heartbeat_lease_s(beat) if beat else None)
        elif s.lease_s is not None:
            beat, span = s.lease_s / 3, s.lease_s
        elif self.inside_space:
            beat, span = 0.0, None
        else:
            beat = DEFAULT_HEARTBEAT_S
            span = heartbeat_lease_s(beat)
        if span is None:
            return 0.0, whole_run
        return beat, (lambda task, span=span: span)

    def lease_span(self, task: Task) -> float:
        return self._lease(task)

    def _safe_until(self, sent: float, task: Task) -> float:
        """Monotonic time until which a lease written at or after `sent` is surely still ours."""
        span = self._lease(task)
        return sent + span - min(30.0, span / 10)

    # ------------------------------------------------------------ status

    def _status_extras(self, status: dict) -> dict:
        with self._runs_lock:
            runs = list(self.runs.values())
        if runs:
            status["task"] = runs[0].task.id
            status["progress"] = read_progress(runs[0].task.id, self.work_dir)
            status["runs"] = [{"task": r.task.id, "flavor": r.flavor, "seconds": round(time.monotonic() - r.started, 1),
                               "stopping": str(r.stop) if r.stop else None,
                               "job": getattr(r.run, "job_id", None)} for r in runs]
        else:
            status["task"] = None
        return status

    def _waiting(self, what: str, until: datetime) -> None:
        line = f"waiting for {what} until {until:%H:%M:%S} UTC"
        self._set(waiting={"what": redact(what), "until": format_time(until)})
        self._say(line)
        self._spill_and_release()

    def _spill_and_release(self) -> None:
        """While the commit quota keeps outcomes from being recorded, paid hardware with nothing to run
        is given back (a hardware request is no commit). Inside its own Space the restart that follows
        would lose the journal with the disk, so the unrecorded outcomes go first into a Space secret,
        which the next boot finds in its environment and records (secrets survive restarts; they are not
        commits, and they cannot be read back through the API)."""
        if not (self.manages_hardware and not self.runs and self.journal.pending() and not self._stop.is_set()
                and self._handing_over != self.policy.idle_flavor and not self._retired()):
            return
        try:
            runtime = self.controller.runtime()
            if not is_paid(runtime.requested_hardware or runtime.hardware, self.policy.idle_flavor):
                return
            if self.inside_space:
                spilled = [dict(o.to_json(), log=o.log[-500:]) for o in self.journal.pending() if o.recordable]
                self.controller.api.add_space_secret(self.controller.space_id, SPILL_SECRET, json.dumps(spilled))
                self._say(f"{len(spilled)} unrecorded outcome(s) kept in the Space secret {SPILL_SECRET}")
            self._handing_over = self.policy.idle_flavor
            self.controller.downgrade()
            self._retire()
            self._say(f"released {runtime.hardware} while waiting for the commit quota")
        except Exception as exc:
            self._set(last_error=redact(f"could not release the hardware while waiting: {describe(exc)}"))

    def _unspill(self) -> None:
        """Outcomes a predecessor kept in the Space secret: into this boot's journal."""
        raw = os.environ.get(SPILL_SECRET)
        if not raw or not self.inside_space:
            return
        try:
            for item in json.loads(raw):
                self.journal.put(Outcome.from_json(item))
        except (ValueError, KeyError, TypeError) as exc:
            self._set(last_error=redact(f"could not read {SPILL_SECRET}: {exc}"))
        self._spilled = True

    def _forget_spill(self) -> None:
        if not self._spilled or self.journal.pending():
            return
        try:
            # Deleting it restarts the Space, which is idle now: nothing is lost.
            self.controller.api.delete_space_secret(self.controller.space_id, SPILL_SECRET)
            self._spilled = False
        except Exception as exc:
            self._set(last_error=redact(f"could not delete {SPILL_SECRET}: {describe(exc)}"))

    # ------------------------------------------------------------ the loop

    def run(self, *, once: bool = False, until_idle: bool = False) -> Action | None:
        """Decide and act until stopped (or after one step, or once there is nothing left to do).
        Never ends on an error: it backs off and tries again (with `once`, the error is raised)."""
        action: Action | None = None
        errors = 0
        stepped = False
        if not self._stop.is_set():
            self.queue.interrupt.clear()
        self._active.set()
        try:
            while not self._stop.is_set():
                try:
                    action = self.step()
                    errors = 0
                    stepped = True
                except Interrupted:
                    break
                except Exception as exc:
                    errors += 1
                    self._set(state="error", last_error=redact(describe(exc)))
                    self._say(f"step failed ({errors} in a row): {describe(exc)}")
                    # A mistake in the setup (no such Space, a token without access) is reported at once;
                    # once the worker has worked, every failure is waited out.
                    if once or isinstance(exc, UserError) or (not stepped and _permanent(exc)):
                        raise
                    if errors >= 3:
                        self._release_quietly()
                    self._wake.wait(min(60.0, self.settings.poll_s, 0.5 * 2**errors))
                    self._wake.clear()
                    continue
                if once or (until_idle and isinstance(action, Serve) and not self.runs
                            and not self.journal.pending()):
                    break
                self._pause(action)
        finally:
            self._shutdown()
        return action

    def step(self) -> Action:
        if not self._started:
            self._startup()
        if self.journal.pending() and not self.runs:
            self._settle(None)
        # Tasks that run elsewhere need nothing of the Space's runtime (one API request saved per poll).
        runtime = self.controller.runtime() if self.manages_hardware or self.controller.local else _ELSEWHERE
        tasks = self.queue.list(ACTIVE_STATUSES)
        now = self.queue.clock()
        action = self._forced
        self._forced = None
        takeover, takeover_after = self._takeover(tasks, now)
        if action is None:
            action = rules.decide(runtime, tasks, now, holder=self.holder, takeover=takeover,
                                  takeover_after=takeover_after, switch_age_s=self._switch_age(runtime),
                                  policy=self.policy, manages_hardware=self.manages_hardware,
                                  replica_ready=self._replica_ready(runtime),
                                  offered=self._offered() if self.manages_hardware else ())
        self._set(action=type(action).__name__, reason=action.reason, decided_at=format_time(now),
                  runtime=runtime.to_dict(), state=_STATE[type(action)], waiting=None)
        self._say(f"{type(action).__name__}: {action.reason}")
        if isinstance(action, RunTask):
            flavor = runtime.hardware if self.manages_hardware else None
            self._drain(flavor, runtime, takeover)
        elif isinstance(action, RequestHardware):
            self._request(action, runtime, tasks, now, takeover)
        elif isinstance(action, Downgrade):
            self._switch(self.policy.idle_flavor, None)
        elif isinstance(action, GiveUp):
            self._give_up(action, runtime)
        elif isinstance(action, Serve) and runtime.hardware in (self.policy.idle_flavor, None, "local"):
            self._recover_orphans(tasks, now)
        return action

    def _pause(self, action: Action) -> None:
        if isinstance(action, (RunTask, GiveUp)):
            return
        delay = self.settings.poll_s
        if isinstance(action, Wait):
            if action.until is not None:
                delay = min(delay, max(0.05, (action.until - self.queue.clock()).total_seconds() + 0.05))
            else:
                delay = min(delay, getattr(self.controller, "poll_s", delay))
        self._wake.wait(delay)
        self._wake.clear()

    def wake(self) -> None:
        """Look at the queue now (after a submit, a cancel from the page, a webhook)."""
        self._rows_now.set()
        super().wake()

    def stop(self, reason: str = "stopped", wait_s: float | None = None) -> None:
        # A write waiting out an outage or the commit quota gives up: the journal keeps what it held.
        self.queue.interrupt.set()
        super().stop(reason, wait_s)

    # ------------------------------------------------------------ start and end

    def _startup(self) -> None:
        """Once per boot: hold this work dir, find runs a predecessor left going (Jobs), and record
        every outcome the journal still holds before anything new is claimed."""
        if not self.inside_space and self._home_lock is None:
            lock = FileLock(str(self.work_dir / "worker.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                raise UserError(f"another worker is running with the work dir {self.work_dir}; give each "
                                f"worker its own --work-dir") from None
            self._home_lock = lock
        self._unspill()
        self._open_period()
        self._boot()
        self._stay_idle()
        self._adopt()
        if self.journal.pending():
            self._settle(None)
        self._forget_spill()
        self._started = True

    def _open_period(self) -> None:
        """Inside its own Space on paid hardware, this replica is one paid period from its process's start
        (billing.py); it is written with the next commit."""
        if not (self.inside_space and self.manages_hardware) or self._period is not None:
            return
        runtime = self.controller.runtime()
        if not is_paid(runtime.hardware, self.policy.idle_flavor) or not self._replica_ready(runtime):
            return
        now_hub, now_local = self.queue.clock(), time.time()
        started = process_started_at() or now_local
        start = (now_hub - timedelta(seconds=max(0.0, now_local - started))).replace(microsecond=0)
        self._period = billing.Period(self.holder.boot, self.controller.space_id, runtime.hardware, start)
        self._pending_files[billing.PERIODS_PATH] = billing.opened(self._period)

    def _close_period(self) -> None:
        """The replica is stopping: its paid period ends now (one commit)."""
        if self._period is None:
            return
        end = self.queue.clock().replace(microsecond=0)
        files = {billing.PERIODS_PATH: _chain(self._pending_files.pop(billing.PERIODS_PATH, None),
                                              billing.closed(self._period.replica, end))}
        try:
            self.queue.update_files(files, f"Billing: {self._period.flavor} replica {self._period.replica} stopped")
            self._period = None
        except Exception as exc:
            self._set(last_error=redact(f"the end of this replica's paid period was not written: {describe(exc)}"))

    def _shutdown(self) -> None:
        """Stop every run (its outcome is journaled and, if the Hub answers at once, recorded), then give
        the hardware back."""
        try:
            with self._runs_lock:
                runs = list(self.runs.values())
            for active in runs:
                self._request_stop(active, StopReason.WORKER_STOPPED)
            deadline = time.monotonic() + min(self.settings.stop_grace_s, 5.0) + 15.0
            while self.runs and time.monotonic() < deadline:
                time.sleep(TICK_S)
            if self.journal.pending():
                try:
                    self._settle(None)
                except Exception as exc:
                    self._set(last_error=redact(f"outcomes kept in the journal for the next start: {describe(exc)}"))
            if self._stop.is_set():
                self._close_period()
        finally:
            try:
                self.release()
            finally:
                if self._home_lock is not None:
                    self._home_lock.release()
                    self._home_lock = None
                self._started = False
                self._active.clear()
                self._set(state="stopped", stop_reason=self._stop_reason or None, task=None)

    # ------------------------------------------------------------ runs

    def _takeover(self, tasks: list[Task], now: datetime) -> tuple[frozenset[str], datetime | None]:
        """Ids of this home's predecessor's runs that may be taken back now, and when the others may.

        Off a Space, this worker holds the work dir's lock: its predecessor is gone, at once. Inside
        a Space the old replica may run for a moment after the new one starts (hub-facts §11): its
        runs are left `takeover_grace_s` to stop and record themselves."""
        mine = [t for t in tasks if is_predecessor(t, self.holder)]
        if not mine:
            return frozenset(), None
        if not self.inside_space:
            return frozenset(t.id for t in mine), None
        left = self.settings.takeover_grace_s - (time.monotonic() - self._booted_at)
        if left <= 0:
            return frozenset(t.id for t in mine), None
        return frozenset(), now + timedelta(seconds=left)

    def _track(self, active: ActiveRun) -> None:
        with self._runs_lock:
            self.runs[active.task.id] = active
        if not any(t.is_alive() for t in self._watchers):
            self._watchers = [threading.Thread(target=self._watch, daemon=True, name="space-scheduler-watch"),
                              threading.Thread(target=self._watch_rows, daemon=True, name="space-scheduler-rows")]
            for thread in self._watchers:
                thread.start()

    def _start(self, task: Task, sent: float, flavor: str) -> None:
        files = TaskFiles(self.work_dir, task.id)
        TaskLog(files.log).write(f"attempt {task.attempts}/{task.max_attempts} on {flavor or task.hardware} "
                                 f"by {self.id} (lease {task.lease_id})")
        self._set(state="running", task_started=format_time(self.queue.clock()))
        self._say(f"task {task.id}: attempt {task.attempts}/{task.max_attempts} on {flavor or task.hardware}")
        now = time.monotonic()
        try:
            run = self.executor.start(task, task.lease_id)
        except Exception as exc:
            error = f"could not start the run: {describe(exc)}"
            result = RunResult(ok=False, error=error, retry=classify_exception(exc))
            self.journal.put(decide_outcome(task, task.lease_id, result, None, seconds=0.0, cost_usd=0.0, log=error))
            self._run_ended.set()
            return
        self._track(ActiveRun(task, task.lease_id, run, flavor or task.hardware, now,
                              now + min(float(task.timeout_s), self.settings.max_timeout_s),
                              self._safe_until(sent, task)))

    def _request_stop(self, active: ActiveRun, reason: StopReason) -> None:
        if active.stop is not None:
            return
        active.stop, active.stop_at = reason, time.monotonic()
        active.run.log.write(f"stopping: {reason}")
        self._say(f"task {active.task.id}: stopping ({reason})")
        try:
            active.run.request_stop()
        except Exception as exc:
            active.run.log.write(f"could not ask the run to stop: {describe(exc)}")

    def _watch(self) -> None:
        """Enforce stops; turn every ended run into a journaled outcome. Never waits on a commit."""
        while True:
            with self._runs_lock:
                runs = list(self.runs.values())
            if not runs and not self._active.is_set():
                return
            for active in runs:
                try:
                    self._watch_one(active)
                except Exception as exc:  # a watcher that dies would leave a run unattended
                    self._set(last_error=redact(f"{active.task.id}: watching: {describe(exc)}"))
            time.sleep(TICK_S)

    def _watch_one(self, active: ActiveRun) -> None:
        result = active.run.poll()
        if result is not None:
            self._ended(active, result)
            return
        now = time.monotonic()
        if active.stop is None:
            reason = None
            if self._stop.is_set():
                reason = StopReason.WORKER_STOPPED
            elif active.flag is not None:
                reason = active.flag
            elif now > active.deadline:
                reason = StopReason.TIMED_OUT
            elif now > active.lease_deadline:
                reason = StopReason.LEASE_EXPIRED  # not renewed in time: someone may take the task over
            if reason is not None:
                self._request_stop(active, reason)
        elif not active.killed:
            # A stopping worker has seconds before SIGKILL; the callback gets a share of them.
            stopping = self._stop.is_set() or active.stop is StopReason.WORKER_STOPPED
            grace = min(self.settings.stop_grace_s, 1.0) if stopping else self.settings.stop_grace_s
            if now - (active.stop_at or now) >= grace:
                active.killed = True
                active.run.log.write(f"killing the run: it did not stop within {grace:.0f}s")
                active.run.kill()

    def _ended(self, active: ActiveRun, result: RunResult) -> None:
        wall = time.monotonic() - active.started
        seconds = active.run.billed_seconds(wall)
        cost = self.executor.cost_usd(seconds, active.flavor)
        log = "\n".join(tail_log(active.task.id, 200, self.work_dir))
        if not result.ok and active.stop is None and self._stop.is_set():
            active.stop = StopReason.WORKER_STOPPED  # the signal that stopped us reached the run first
        outcome = decide_outcome(active.task, active.lease_id, result, active.stop, seconds=seconds, cost_usd=cost,
                                 log=log[-MAX_LOG_CHARS * 2:], retry_delay_s=self.settings.retry_delay_s,
                                 detail=self._stop_reason if active.stop is StopReason.WORKER_STOPPED else "")
        for note in outcome.notes:
            active.run.log.write(f"note: {note}")
        self.journal.put(outcome)
        with self._runs_lock:
            self.runs.pop(active.task.id, None)
        said = _describe_outcome(outcome, active.task)
        active.run.log.write(f"ended after {wall:.1f}s: {said}")
        self._say(f"task {active.task.id}: {said} after {wall:.1f}s")
        self._run_ended.set()
        self._wake.set()

    def _watch_rows(self) -> None:
        """Notice cancels and lost leases within `watch_s`, by reading the head (cheap) and the table
        only when the head moved. A cancel from this process's own page arrives at once (`wake`)."""
        seen: str | None = None
        while True:
            with self._runs_lock:
                runs = list(self.runs.values())
            if not runs and not self._active.is_set():
                return
            if runs:
                try:
                    head = self.queue.head()
                    if head != seen:
                        table = self.queue.table()
                        seen = head
                        for active in runs:
                            i = table.find(active.task.id)
                            row = table.task(i) if i is not None else None
                            if row is None or row.lease_id != active.lease_id:
                                active.flag = active.flag or StopReason.LEASE_LOST
                            elif row.status is not Status.RUNNING:  # cancelled (and maybe requeued since)
                                active.flag = active.flag or StopReason.CANCELLED
                except Exception as exc:
                    self._set(last_error=redact(f"checking for cancels: {describe(exc)}"))
            self._rows_now.wait(self.settings.watch_s)
            self._rows_now.clear()

    def _heartbeat_if_due(self) -> None:
        if not self.heartbeat_s or not self.runs or time.monotonic() - self._last_beat < self.heartbeat_s:
            return
        with self._runs_lock:
            runs = {a.task.id: a for a in self.runs.values() if a.stop is None}
        if not runs:
            return
        sent = time.monotonic()
        try:
            renewed = self.queue.heartbeat_many({tid: a.lease_id for tid, a in runs.items()}, self._lease)
        except Interrupted:
            raise
        except Exception as exc:
            self._set(last_error=redact(f"could not renew the lease(s): {describe(exc)}"))
            return
        self._last_beat = sent
        for task_id, answer in renewed.items():
            active = runs[task_id]
            if isinstance(answer, TaskCancelled):
                active.flag = StopReason.CANCELLED
            elif isinstance(answer, LeaseLost):
                active.flag = StopReason.LEASE_LOST
            else:
                active.lease_deadline = self._safe_until(sent, answer)

    # ------------------------------------------------------------ the drain

    def _settle(self, claim: ClaimSpec | None) -> Task | None:
        """Record every journaled outcome, and claim with `claim`, in one write."""
        outcomes = [o for o in self.journal.pending() if o.recordable]
        for stale in (o for o in self.journal.pending() if not o.recordable):
            self.journal.remove(stale)  # a lost lease: someone else holds the task, nothing to record
        claim = self._claim or claim
        if not outcomes and claim is None:
            return None
        self._claim = claim
        files = dict(self._pending_files)
        settled = self.queue.settle(outcomes, claim, files)
        self._claim = None
        for path in files:
            self._pending_files.pop(path, None)
        by_id = {o.task_id: o for o in outcomes}
        for task_id, answer in settled.recorded.items():
            self.journal.remove(by_id[task_id])
            if isinstance(answer, LeaseLost):
                TaskLog(TaskFiles(self.work_dir, task_id).log).write(f"not recorded: {answer}")
                continue
            self._recorded(answer, by_id[task_id])
        return settled.claimed

    def _recorded(self, task: Task, outcome: Outcome) -> None:
        if outcome.status is not None:
            # A run that ended by itself, even in failure: the Space is not crash-looping.
            self._note_progress()
        if task.status is Status.DONE:
            self._set(done=self._status["done"] + 1)
        elif task.status is Status.FAILED and outcome.status is not None:
            self._set(failed=self._status["failed"] + 1, last_error=redact(f"{task.id}: {outcome.error}"))
        if task.is_terminal and task.status is not Status.CANCELLED and self.on_finish is not None:
            try:
                self.on_finish(task)
            except Exception as exc:  # a notification must never change what was recorded
                self._set(last_error=redact(f"{task.id}: on_finish: {describe(exc)}"))

    def _drain(self, flavor: str | None, runtime: Runtime, takeover: frozenset[str]) -> None:
        """Every runnable task for this flavor (all, off a Space), priority then age, as many at once
        as the executor runs, before the hardware is released. Outcome N and claim N+1: one commit."""
        hardware = (flavor,) if flavor else None
        paid = self.manages_hardware and is_paid(flavor, self.policy.idle_flavor)
        may_claim = True  # False once a claim found nothing, until a run ends
        next_reconcile = time.monotonic() + 30.0
        while not self._stop.is_set():
            want = may_claim and len(self.runs) < self.executor.capacity
            if want and paid:
                self._cover_sleep_time(flavor, runtime)
            if want or self.journal.pending():
                spec = (ClaimSpec(self.id, new_lease_id(), self._lease, hardware, tuple(takeover), tuple(self.runs))
                        if want else None)
                sent = time.monotonic()
                task = self._settle(spec)
                if task is not None:
                    self._start(task, sent, flavor or ("local" if self.controller.local else task.hardware))
                    continue
                may_claim = may_claim and not want
            if not self.runs and not self.journal.pending():
                return
            if self._run_ended.wait(1.0):
                self._run_ended.clear()
                may_claim = True
            self._heartbeat_if_due()
            if time.monotonic() >= next_reconcile:
                next_reconcile = time.monotonic() + 30.0
                self._adopt()

    def _adopt(self) -> None:
        """Runs still going for tasks this home holds that nobody watches (a predecessor's Jobs, a Job
        whose start answer was lost) are followed again; the executor stops what nobody holds."""
        held = {t.id: t for t in self.queue.list(Status.RUNNING)
                if (h := Holder.parse(t.worker)) is not None and h.home == self.holder.home}
        for run in self.executor.adopt(held):
            if run.task.id in self.runs:
                continue
            task = run.task
            now = time.monotonic()
            self._track(ActiveRun(task, run.lease_id, run, task.hardware, now,
                                  now + min(float(task.timeout_s), self.settings.max_timeout_s),
                                  self._safe_until(now, task)))
            self._say(f"task {task.id}: following its run again")

    # ------------------------------------------------------------ hardware

    def _replica_ready(self, runtime: Runtime) -> bool:
        """Inside its own Space, only the replica physically on `hardware.current` acts: during a switch
        the old replica runs on for a moment and reads the new flavor (hub-facts §11). A replica without
        the flavor's GPUs, or with GPUs when the flavor has none, is that old replica: it runs nothing
        and requests nothing."""
        if not (self.inside_space and self.manages_hardware and runtime.hardware):
            return True
        if self._retired():
            return False
        if self._accelerators is None:
            self._accelerators = probe_accelerators()
        flavor = self._space_flavors().flavors.get(runtime.hardware)
        if flavor is not None and not flavor.gpu_count:
            return self._accelerators.count == 0
        return self._accelerators.can_run(flavor)

    def _offered(self) -> frozenset[str]:
        return frozenset(self._space_flavors().trainable())

    def catalog(self) -> Catalog:
        """The flavors a task may name on this worker's executor: the Hub's Job flavors for `jobs`,
        its Space flavors otherwise (flavors.catalog_for; cached an hour, a fallback table offline)."""
        return catalog_for(self.executor.name, getattr(self.controller, "api", None))

    def _space_flavors(self) -> Catalog:
        return catalog(getattr(self.controller, "api", None), "spaces")

    def _sleep_time(self, flavor: str, tasks: list[Task], elapsed_s: float = 0.0) -> int:
        """The sleep time paid hardware is requested (or kept) with: a safety net that never cuts the
        work planned for it. A Space with a sleep time sleeps that long after its last visitor, training
        or not, and the worker's own requests are no visit (hub-facts §11); so it covers the time
        already spent on this flavor plus every active task's timeout for it, plus a margin."""
        cap = self.settings.max_timeout_s
        planned = sum(min(t.timeout_s, cap) for t in tasks if t.hardware == flavor and t.status in ACTIVE_STATUSES)
        return int(max(self.settings.sleep_time_s, elapsed_s + planned + SLEEP_MARGIN_S))

    def _cover_sleep_time(self, flavor: str, runtime: Runtime) -> None:
        """Extend the sleep time as a burst goes, so that the burst is never cut by it."""
        tasks = self.queue.list(ACTIVE_STATUSES)
        needed = self._sleep_time(flavor, tasks, time.monotonic() - self._booted_at)
        current = self._sleep_time_set or runtime.sleep_time or 0
        if needed > current:
            try:
                self.controller.set_sleep_time(needed)
                self._sleep_time_set = needed
                self._say(f"sleep time of {flavor} extended to {needed}s for the work planned on it")
            except Exception as exc:
                self._set(last_error=redact(f"could not extend the sleep time: {describe(exc)}"))

    def _request(self, action: RequestHardware, runtime: Runtime, tasks: list[Task], now: datetime,
                 takeover: frozenset[str]) -> None:
        paid = is_paid(action.flavor, self.policy.idle_flavor)
        try:
            self._switch(action.flavor, self._sleep_time(action.flavor, tasks) if paid else None)
        except HfHubHTTPError as exc:
            if not 400 <= (status_of(exc) or 0) < 500 or status_of(exc) in RETRY_STATUSES:
                raise
            # Refused (no payment method, a token without write access, no such flavor here):
            # asking again would be refused again, so its tasks back off like any failure.
            ids = tuple(t.id for t in tasks if t.hardware == action.flavor and rules.runnable(t, now, takeover))
            self._give_up(GiveUp(action.flavor, ids, f"the Hub refused {action.flavor}: {describe(exc)}"), runtime)

    def _switch(self, flavor: str, sleep_time: int | None) -> None:
        self._set(state="switching", target=flavor)
        self._say(f"requesting {flavor}" + (f" (sleep time {sleep_time}s)" if sleep_time else ""))
        # Set before asking: on a Space the restart (SIGTERM) may arrive before the answer does.
        self._handing_over = flavor
        try:
            self.controller.request(flavor, sleep_time)
        except BaseException:
            self._handing_over = None
            raise
        self._note_switch(flavor)
        self._retire()
        # On a Space this process is replaced by the restart; elsewhere, follow the change through.
        settled = self.controller.wait(lambda rt: rt.settled_on(flavor) or rt.stage in ERROR_STAGES,
                                       self.policy.request_deadline_s, should_stop=self._stop.is_set)
        if settled is not None and settled.settled_on(flavor):
            self._handing_over = None
            self._note_switch(None)
            if not self.inside_space:
                self._boot()

    def _retire(self) -> None:
        """Inside a Space, after asking for other hardware: this process asked for its own
        replacement, so it is the old replica from now on, whatever the runtime says later. A switch
        back (t4 -> cpu -> t4) while it still runs would otherwise make it look like the replica on
        the current flavor (same GPUs): it would run tasks, count boots and give the new replica's
        GPU back on its SIGTERM. Still alive after the request's deadline, the switch did not happen
        and it acts again."""
        if self.inside_space:
            self._retired_until = time.monotonic() + self.policy.request_deadline_s

    def _retired(self) -> bool:
        return time.monotonic() < self._retired_until

    def release(self) -> None:
        """Give paid hardware back; retried until the Hub takes the request. A worker inside its own
        Space leaves the hardware alone when it has just asked for another flavor (the restart that
        request causes is the way out) or when it is not the replica on the current flavor (an old
        replica stopped after a switch: the new one owns that hardware now). Any other worker (one
        driving a Space from outside) asks for the idle flavor on its way out."""
        if not self.manages_hardware:
            return
        idle = self.policy.idle_flavor
        deadline = time.monotonic() + (20.0 if self._stop_reason.startswith("received") else 300.0)
        attempt = 0
        while True:
            try:
                runtime = self.controller.runtime()
                if self.inside_space and (self._retired() or runtime.requested_hardware == self._handing_over
                                          or not self._replica_ready(runtime)):
                    return
                if runtime.requested_hardware in (idle, None) and not is_paid(runtime.hardware, idle):
                    return
                if runtime.requested_hardware == idle and runtime.switching:
                    return  # already on its way down
                self.controller.downgrade()
                self._set(released=format_time(self.queue.clock()))
                self._say(f"released {runtime.hardware}: back to {idle}")
                return
            except Exception as exc:
                attempt += 1
                self._set(last_error=redact(f"could not release the hardware (try {attempt}): {describe(exc)}"))
                if _permanent(exc):
                    return  # no such Space, or no access to it: nothing this worker can release
                if time.monotonic() > deadline:
                    raise SchedulerError(f"could not release the hardware after {attempt} tries: {describe(exc)}") from exc
                time.sleep(min(10.0, 0.5 * 2**min(attempt, 5)) * random.uniform(0.5, 1.0))

    def _stay_idle(self) -> None:
        """Tasks that run elsewhere (Jobs) leave the Space on its idle flavor: paid hardware left over
        from the `space` executor goes."""
        if self.manages_hardware or self.controller.local or getattr(self.controller, "space_id", None) is None:
            return
        try:
            runtime = self.controller.runtime()
        except HfHubHTTPError as exc:
            if status_of(exc) == 404:
                return  # Jobs run from an image; the Space need not exist
            raise
        if is_paid(runtime.requested_hardware or runtime.hardware, self.controller.idle_flavor):
            self.controller.downgrade()

    def _release_quietly(self) -> None:
        """While steps keep failing: give paid hardware back if nothing runs on it."""
        if self.runs or self.journal.pending() or not self.manages_hardware or self._retired():
            return
        try:
            runtime = self.controller.runtime()
            if is_paid(runtime.requested_hardware or runtime.hardware, self.policy.idle_flavor) and not self.inside_space:
                self.controller.downgrade()
            elif is_paid(runtime.hardware, self.policy.idle_flavor) and runtime.requested_hardware != self.policy.idle_flavor:
                self.controller.downgrade()
        except Exception as exc:
            self._set(last_error=redact(f"could not release the hardware: {describe(exc)}"))

    def _give_up(self, action: GiveUp, runtime: Runtime) -> None:
        for task_id in action.task_ids:
            spec = ClaimSpec(self.id, new_lease_id(), self._lease, (action.flavor,))
            task = self._settle(spec)
            if task is None:
                break
            TaskLog(TaskFiles(self.work_dir, task.id).log).write(f"given up: {action.reason}")
            status = Status.PENDING if action.retry else Status.FAILED
            self.journal.put(Outcome(task.id, task.lease_id, status, error=redact(action.reason),
                                     retry_delay_s=self.settings.retry_delay_s, log=f"given up: {action.reason}"))
        self._settle(None)
        idle = self.policy.idle_flavor
        if self.manages_hardware and (runtime.requested_hardware != idle or is_paid(runtime.hardware, idle)):
            self._switch(idle, None)

    def _recover_orphans(self, tasks: list[Task], now: datetime) -> None:
        """On the idle flavor, expired tasks out of attempts are failed (nothing else would claim them)."""
        if any(t.lease_expired(now) and t.attempts >= t.max_attempts for t in tasks):
            self.queue.recover_expired()

    # ------------------------------------------------------------ persistent state (crash-loop guard)

    @property
    def _state_file(self) -> Path:
        return self.work_dir / "state.json"

    def _load_state(self) -> dict:
        try:
            return json.loads(self._state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _save_state(self, state: dict) -> None:
        try:
            write_json_atomic(self._state_file, state)
        except OSError:
            pass

    def _boot(self) -> None:
        """Count boots on paid hardware; after too many without a finished task, fail the next one."""
        if not self.manages_hardware:
            return
        runtime = self.controller.runtime()
        if runtime.switching or not is_paid(runtime.hardware, self.policy.idle_flavor):
            return
        state = self._load_state()
        guard = state.get("boots") or {}
        boots = (guard.get("count", 0) if guard.get("flavor") == runtime.hardware else 0) + 1
        state["boots"] = {"flavor": runtime.hardware, "count": boots}
        self._save_state(state)
        if boots > self.settings.crash_loop_boots:
            now = self.queue.clock()
            takeover, _ = self._takeover(self.queue.list(ACTIVE_STATUSES), now)
            tasks = [t for t in self.queue.list(ACTIVE_STATUSES)
                     if t.hardware == runtime.hardware and rules.runnable(t, now, takeover)]
            ids = tuple(t.id for t in sorted(tasks, key=Task.sort_key)[:1])
            self._forced = GiveUp(runtime.hardware, ids, f"crash loop: the Space started {boots - 1} times on "
                                  f"{runtime.hardware} without finishing a task", retry=False)
            # The count is kept when there is nothing to fail yet (the culprit's lease is still live):
            # the next boot on this flavor, once it is claimable, fails it.
            if ids:
                state["boots"] = {"flavor": runtime.hardware, "count": 0}
                self._save_state(state)

    def _note_progress(self) -> None:
        state = self._load_state()
        if state.get("boots"):
            state["boots"] = {}
            self._save_state(state)

    def _note_switch(self, flavor: str | None) -> None:
        state = self._load_state()
        state["switch"] = {"flavor": flavor, "since": time.time()} if flavor else None
        self._save_state(state)

    def _switch_age(self, runtime: Runtime) -> float | None:
        """How long the current hardware change has been seen (across restarts, through state.json)."""
        if not runtime.switching:
            return None
        target = runtime.requested_hardware
        state = self._load_state()
        switch = state.get("switch") or {}
        if switch.get("flavor") != target:
            self._note_switch(target)
            return 0.0
        return max(0.0, time.time() - float(switch.get("since", time.time())))


def _chain(first, then):
    """Two file updates applied in order (either may be None)."""
    if first is None:
        return then
    return lambda data: then(first(data))


def _permanent(exc: BaseException) -> bool:
    status = status_of(exc)
    return status is not None and 400 <= status < 500 and status not in RETRY_STATUSES


def _describe_outcome(outcome: Outcome, task: Task) -> str:
    if outcome.status is Status.DONE:
        return "done"
    if outcome.status is None:
        return f"stopped ({outcome.stop})"
    # A retry asked for on the last attempt is a failure: the queue records FAILED.
    retried = outcome.status is Status.PENDING and task.attempts < task.max_attempts
    word = f"to retry (attempt {task.attempts} of {task.max_attempts})" if retried else "failed"
    return f"{word}: {outcome.error}"


_ELSEWHERE = Runtime(stage="RUNNING", hardware=None, requested_hardware=None)
_STATE = {Serve: "serving", RunTask: "running", RequestHardware: "switching", Downgrade: "switching",
          Wait: "waiting", GiveUp: "giving up"}
