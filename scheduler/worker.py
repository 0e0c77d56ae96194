"""The worker loop: decide, act, and give the GPU back on every way out.

Steps (each one small, in the rq manner): read the runtime and the queue, `decide()`, act:
run (drain every runnable task for this flavor), switch hardware, give up a request, or wait.
`run()` ends in `finally: release()`: a paid flavor is requested back to the idle one unless this
process itself just asked for another flavor (the restart that request causes is the way out).

Crash-loop guard: every boot on paid hardware is counted in `state.json` in the work dir, and
the count is reset when a task finishes. After `crash_loop_boots` boots without a finished task
the next task for that flavor is failed without retry and the Space goes back to idle. The file
survives restarts when the work dir is on persistent storage (`/data` or SCHEDULER_WORK_DIR);
without it, the task's own `attempts`/`max_attempts` still bound the loop, because every boot
that picks the task up again counts an attempt and the queue fails it at max_attempts.
"""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from huggingface_hub.errors import HfHubHTTPError

from . import decide as rules
from .background import BackgroundLoop
from .callbacks import CallbackProcess, TaskFiles, TaskLog, default_work_dir, read_progress, write_json_atomic
from .decide import Action, Downgrade, GiveUp, Policy, RequestHardware, RunTask, Serve, Wait
from .errors import LeaseLost
from .hardware import ERROR_STAGES, Runtime, is_paid
from .hub import RETRY_STATUSES, describe, status_of
from .queue import TaskCancelled, TaskQueue
from .redact import redact, register_secret
from .tasks import ACTIVE_STATUSES, Task, format_time, utcnow


@dataclass(frozen=True)
class WorkerConfig:
    lease_s: float = 600.0
    # Commits are rate-limited (~128/h): a heartbeat every lease/3 leaves room for two misses.
    heartbeat_s: float | None = None
    poll_s: float = 15.0
    max_timeout_s: float = 6 * 3600.0
    stop_grace_s: float = 10.0
    # Paid hardware always carries a sleep time, at least the longest task it was asked for.
    sleep_time_s: int = 3600
    retry_delay_s: float | None = None
    crash_loop_boots: int = 3
    max_step_errors: int = 8
    policy: Policy = field(default_factory=Policy)

    @property
    def heartbeat_every(self) -> float:
        return self.heartbeat_s if self.heartbeat_s is not None else self.lease_s / 3


def worker_id(space_id: str | None = None) -> str:
    """A lease owner unique to this process incarnation; its prefix names the Space."""
    return f"{space_id or socket.gethostname()}/{os.getpid()}-{random.getrandbits(32):08x}"


class Heartbeat:
    """Renews a lease in the background; notices cancellation and lost leases."""

    def __init__(self, queue: TaskQueue, task: Task, worker: str, lease_s: float, every_s: float):
        self.queue, self.task_id, self.worker = queue, task.id, worker
        self.lease_s, self.every_s = lease_s, every_s
        self.lease_until = time.monotonic() + lease_s
        self.lost: str | None = None
        self.cancelled = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"heartbeat-{task.id}")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.queue.heartbeat(self.task_id, self.worker, self.lease_s)
                self.lease_until = time.monotonic() + self.lease_s
            except TaskCancelled:
                self.cancelled, self.lost = True, "the task was cancelled"
                return
            except LeaseLost as exc:
                self.lost = redact(str(exc))
                return
            except Exception as exc:
                # Past our own lease another worker may take the task: stop rather than run it twice.
                if time.monotonic() >= self.lease_until - self.every_s / 2:
                    self.lost = f"could not renew the lease: {describe(exc)}"
                    return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


class Worker(BackgroundLoop):
    """Runs the queue's tasks on this Space (or this machine), switching hardware as needed."""

    thread_name = "space-scheduler-worker"

    def __init__(self, queue: TaskQueue, controller, callback: str, *, token: str | None = None,
                 endpoint: str | None = None, work_dir: str | os.PathLike | None = None,
                 config: WorkerConfig = WorkerConfig(), name: str | None = None,
                 clock: Callable[[], datetime] = utcnow, say: Callable[[str], None] | None = None,
                 on_finish: Callable[[Task], None] | None = None):
        self.queue = queue
        # Called with each task this worker finished (DONE or FAILED), e.g. to notify its submitter.
        self.on_finish = on_finish
        self.controller = controller
        self.callback = callback
        self.token = token
        register_secret(token)
        self.endpoint = endpoint
        self.work_dir = Path(work_dir) if work_dir else default_work_dir()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.policy = config.policy if controller.local else Policy(
            idle_flavor=controller.idle_flavor, max_gpu_wait_s=config.policy.max_gpu_wait_s,
            request_deadline_s=config.policy.request_deadline_s)
        space = getattr(controller, "space_id", None)
        self.id = name or worker_id(space)
        self.home = f"{space}/" if space else None
        self.clock = clock
        self._handing_over: str | None = None
        self._forced: Action | None = None
        self._init_loop({"worker": self.id, "space": space, "state": "starting", "done": 0, "failed": 0,
                         "last_error": None}, say)

    def _status_extras(self, status: dict) -> dict:
        if status.get("task"):
            status["progress"] = read_progress(status["task"], self.work_dir)
        return status

    # ------------------------------------------------------------ the loop

    def run(self, *, once: bool = False, until_idle: bool = False) -> Action | None:
        """Decide and act until stopped (or after one step, or once there is nothing left to do)."""
        action: Action | None = None
        try:
            self._boot()
            errors = 0
            while not self._stop.is_set():
                try:
                    action = self.step()
                    errors = 0
                except Exception as exc:
                    # A Hub hiccup must not end the loop. A lasting one ends it on paid hardware, so
                    # that `release()` gets its chance; on the idle flavor waiting costs nothing.
                    errors += 1
                    self._set(state="error", last_error=redact(describe(exc)))
                    last = self._status.get("runtime") or {}
                    on_paid = is_paid(last.get("hardware") or last.get("requested_hardware"), self.policy.idle_flavor)
                    if once or (errors >= self.config.max_step_errors and (on_paid or not last)):
                        raise
                    self._wake.wait(min(self.config.poll_s, 0.5 * 2**errors))
                    continue
                if once or (until_idle and isinstance(action, Serve)):
                    break
                self._pause(action)
        finally:
            self.release()
            self._set(state="stopped", stop_reason=self._stop_reason or None)
        return action

    def step(self) -> Action:
        runtime = self.controller.runtime()
        action = self._forced
        self._forced = None
        tasks = self.queue.list(ACTIVE_STATUSES)
        now = self.clock()
        if action is None:
            action = rules.decide(runtime, tasks, now, worker=self.id, home=self.home,
                                  switch_age_s=self._switch_age(runtime), policy=self.policy)
        self._set(action=type(action).__name__, reason=action.reason, decided_at=format_time(self.clock()),
                  runtime=runtime.to_dict(), state=_STATE[type(action)])
        self._say(f"{type(action).__name__}: {action.reason}")
        if isinstance(action, RunTask):
            self._drain(None if runtime.local else action.flavor, runtime)
        elif isinstance(action, RequestHardware):
            paid = is_paid(action.flavor, self.policy.idle_flavor)
            try:
                self._switch(action.flavor, self._sleep_time(action.flavor) if paid else None)
            except HfHubHTTPError as exc:
                if not 400 <= (status_of(exc) or 0) < 500 or status_of(exc) in RETRY_STATUSES:
                    raise
                # Refused (no payment method, a token without write access, no such flavor here):
                # asking again would be refused again, so its tasks back off like any failure.
                ids = tuple(t.id for t in tasks if t.hardware == action.flavor and rules.runnable(t, now, self.id))
                self._give_up(GiveUp(action.flavor, ids, f"the Hub refused {action.flavor}: {describe(exc)}"), runtime)
        elif isinstance(action, Downgrade):
            self._switch(self.policy.idle_flavor, None)
        elif isinstance(action, GiveUp):
            self._give_up(action, runtime)
        elif isinstance(action, Serve) and runtime.hardware in (self.policy.idle_flavor, None):
            self._recover_orphans()
        return action

    def _pause(self, action: Action) -> None:
        if isinstance(action, (RunTask, GiveUp)):
            return
        delay = self.config.poll_s
        if isinstance(action, Wait):
            if action.until is not None:
                delay = min(delay, max(0.05, (action.until - self.clock()).total_seconds() + 0.05))
            else:
                delay = min(delay, getattr(self.controller, "poll_s", delay))
        self._wake.wait(delay)
        self._wake.clear()

    # ------------------------------------------------------------ hardware

    def _sleep_time(self, flavor: str) -> int:
        cap = self.config.max_timeout_s
        longest = max((min(t.timeout_s, cap) for t in self.queue.list(ACTIVE_STATUSES) if t.hardware == flavor),
                      default=0)
        return int(max(self.config.sleep_time_s, longest + 600))

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
        # On a Space this process is replaced by the restart; elsewhere, follow the change through.
        settled = self.controller.wait(lambda rt: rt.settled_on(flavor) or rt.stage in ERROR_STAGES,
                                       self.policy.request_deadline_s, should_stop=self._stop.is_set)
        if settled is not None and settled.settled_on(flavor):
            self._handing_over = None
            self._note_switch(None)
            self._boot()

    def release(self) -> None:
        """Give paid hardware back, unless this process has just asked for the next flavor."""
        if self.controller.local:
            return
        try:
            runtime = self.controller.runtime()
        except Exception:
            runtime = None
        if self._handing_over and (runtime is None or runtime.requested_hardware == self._handing_over):
            return
        idle = self.policy.idle_flavor
        if runtime is not None and runtime.requested_hardware in (idle, None) and not is_paid(runtime.hardware, idle):
            return
        if runtime is not None and runtime.requested_hardware == idle and runtime.switching:
            return  # already on its way down
        try:
            self.controller.downgrade()
            self._set(released=format_time(self.clock()))
        except Exception as exc:
            self._set(last_error=f"could not release the hardware: {describe(exc)}")
            raise

    # ------------------------------------------------------------ tasks

    def _drain(self, flavor: str | None, runtime: Runtime) -> None:
        """Every runnable task for this flavor, priority then age, before the hardware is released."""
        while not self._stop.is_set():
            task = self.queue.claim(self.id, self.config.lease_s, hardware=flavor)
            if task is None:
                return
            self._run_task(task, runtime)

    def _run_task(self, task: Task, runtime: Runtime) -> None:
        flavor = runtime.hardware or ""
        files = TaskFiles(self.work_dir, task.id)
        log = TaskLog(files.log)
        log.write(f"attempt {task.attempts}/{task.max_attempts} on {flavor} by {self.id}")
        self._set(state="running", task=task.id, task_started=format_time(self.clock()))
        limit = min(float(task.timeout_s), self.config.max_timeout_s)
        started = time.monotonic()
        process = CallbackProcess(self.callback, task, self.work_dir, token=self.token, endpoint=self.endpoint)
        beat = Heartbeat(self.queue, task, self.id, self.config.lease_s, self.config.heartbeat_every)
        stop_reason: str | None = None
        try:
            while not process.wait(0.2):
                if stop_reason is None:
                    if self._stop.is_set():
                        stop_reason = f"interrupted: the worker was stopped ({self._stop_reason})"
                    elif beat.lost:
                        stop_reason = beat.lost
                    elif time.monotonic() - started > limit:
                        stop_reason = f"timed out after {limit:.0f}s (timeout_s={task.timeout_s})"
                    if stop_reason is not None:
                        log.write(f"stopping: {stop_reason}")
                        process.request_stop()
                else:
                    # A stopping worker has seconds before SIGKILL; the callback gets a share of them.
                    grace = min(self.config.stop_grace_s, 1.0) if self._stop.is_set() else self.config.stop_grace_s
                    process.enforce_stop(grace)
        finally:
            beat.stop()
            outcome = process.finish()
        if stop_reason is None and self._stop.is_set() and not outcome.get("ok"):
            # The signal that stopped the worker reached the callback first (same process group).
            stop_reason = f"interrupted: the worker was stopped ({self._stop_reason})"
        seconds = time.monotonic() - started
        cost = round(seconds / 3600 * self.controller.price(flavor), 6)
        self._record(task, outcome, stop_reason, beat, seconds, cost, log)
        self._note_progress()
        self._set(task=None, last_task=task.id)

    def _record(self, task: Task, outcome: dict, stop_reason: str | None, beat: Heartbeat,
                seconds: float, cost: float, log: TaskLog) -> None:
        costs = dict(gpu_seconds=round(seconds, 3), cost_usd=cost)
        try:
            if beat.lost:
                # Cancelled, or someone else holds it now: the queue refuses writes from us, rightly.
                log.write(f"not recorded: {beat.lost}")
                if beat.cancelled:
                    # The GPU time was still paid for: keep it on the cancelled task.
                    self.queue.record_cancelled_usage(
                        task.id, self.id, gpu_seconds=round((task.gpu_seconds or 0.0) + seconds, 3),
                        cost_usd=round((task.cost_usd or 0.0) + cost, 6))
            elif outcome.get("ok") and stop_reason is None:
                self._finished(self.queue.complete(task.id, self.id, outcome.get("result") or None, **costs))
                log.write(f"done in {seconds:.1f}s")
                self._say(f"task {task.id} done in {seconds:.1f}s")
                self._set(done=self._status["done"] + 1)
            else:
                error = stop_reason or outcome.get("error") or "the callback failed"
                timed_out = stop_reason is not None and stop_reason.startswith("timed out")
                interrupted = stop_reason is not None and stop_reason.startswith("interrupted")
                # A timeout would most likely repeat and costs a whole timeout of GPU each time.
                retry = not timed_out
                delay = 0.0 if interrupted else self.config.retry_delay_s
                updated = self.queue.fail(task.id, self.id, redact(error), retry=retry, retry_delay_s=delay, **costs)
                self._finished(updated)
                log.write(f"failed ({updated.status.value}): {error}")
                self._say(f"task {task.id} failed ({updated.status.value}): {error}")
                self._set(failed=self._status["failed"] + 1, last_error=redact(f"{task.id}: {error}"))
        except LeaseLost as exc:
            log.write(f"not recorded: {exc}")
        except Exception as exc:
            # The lease runs out and the task is recovered: better than guessing what was written.
            log.write(f"could not record the outcome: {describe(exc)}")
            self._set(last_error=redact(f"{task.id}: could not record the outcome: {describe(exc)}"))

    def _finished(self, task: Task) -> None:
        if self.on_finish is None or not task.is_terminal:
            return
        try:
            self.on_finish(task)
        except Exception as exc:  # a notification must never change what was recorded
            self._set(last_error=redact(f"{task.id}: on_finish: {describe(exc)}"))

    def _give_up(self, action: GiveUp, runtime: Runtime) -> None:
        for _ in action.task_ids:
            task = self.queue.claim(self.id, self.config.lease_s, hardware=action.flavor)
            if task is None:
                break
            TaskLog(TaskFiles(self.work_dir, task.id).log).write(f"given up: {action.reason}")
            self.queue.fail(task.id, self.id, redact(action.reason), retry=action.retry,
                            retry_delay_s=self.config.retry_delay_s)
            self._set(failed=self._status["failed"] + 1, last_error=redact(f"{task.id}: {action.reason}"))
        idle = self.policy.idle_flavor
        if not runtime.local and (runtime.requested_hardware != idle or is_paid(runtime.hardware, idle)):
            self._switch(idle, None)

    def _recover_orphans(self) -> None:
        """On the idle flavor, expired tasks out of attempts are failed (nothing else would claim them)."""
        now = self.clock()
        if any(t.lease_expired(now) and t.attempts >= t.max_attempts for t in self.queue.list("RUNNING")):
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
        if self.controller.local:
            return
        runtime = self.controller.runtime()
        if runtime.switching or not is_paid(runtime.hardware, self.policy.idle_flavor):
            return
        state = self._load_state()
        guard = state.get("boots") or {}
        boots = (guard.get("count", 0) if guard.get("flavor") == runtime.hardware else 0) + 1
        state["boots"] = {"flavor": runtime.hardware, "count": boots}
        self._save_state(state)
        if boots > self.config.crash_loop_boots:
            tasks = [t for t in self.queue.list(ACTIVE_STATUSES)
                     if t.hardware == runtime.hardware and rules.runnable(t, self.clock(), self.id)]
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


_STATE = {Serve: "serving", RunTask: "running", RequestHardware: "switching", Downgrade: "switching",
          Wait: "waiting", GiveUp: "giving up"}
