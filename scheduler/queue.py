"""TaskQueue: every mutation is read -> pure transform -> compare-and-swap write, retried on conflict.

The transforms below are pure functions of (Table, now); they are also idempotent, so re-applying
one after an ambiguous write (the Hub applied the commit but the answer was lost) changes nothing.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Generic, Iterable, Mapping, Sequence, TypeVar

from . import card, codec
from .codec import Table
from .errors import (AmbiguousWrite, Conflict, InvalidTransition, LeaseLost, StoreError, TaskNotFound, Unavailable,
                     UserError)
from .schema import MAX_ERROR_CHARS
from .stores import Store, open_store
from .tasks import ACTIVE_STATUSES, TERMINAL_STATUSES, Status, Task, utcnow

R = TypeVar("R")
ARCHIVE_DIR = "archive"


class TaskCancelled(LeaseLost):
    """The task was cancelled while its worker held it."""


@dataclass
class Change(Generic[R]):
    """What a transform decided: the new table (None = nothing to write), its result, and other files to
    update in the same write, each as a pure function of that file's current bytes."""

    table: Table | None
    result: R
    files: dict[str, Callable[[bytes | None], bytes]] = field(default_factory=dict)


Transform = Callable[[Table, datetime], Change[R]]


# ---------------------------------------------------------------- pure transforms


def add_tasks(tasks: Sequence[Task]) -> Transform[list[Task]]:
    def apply(table: Table, now: datetime) -> Change[list[Task]]:
        fresh: list[Task] = []
        stored: list[Task] = []
        seen: set[str] = set()
        for task in tasks:
            i = table.find(task.id)
            if i is not None:
                stored.append(table.task(i))  # a retried add: the first one won
            elif task.id not in seen:
                seen.add(task.id)
                fresh.append(task)
                stored.append(task)
        return Change(table.appended(fresh) if fresh else None, stored)

    return apply


def _get(table: Table, task_id: str) -> tuple[int, Task]:
    i = table.find(task_id)
    if i is None:
        raise TaskNotFound(task_id)
    return i, table.task(i)


def retry_delay(attempts: int, base_s: float = 30.0, cap_s: float = 900.0) -> float:
    return min(cap_s, base_s * 2 ** max(0, attempts - 1))


def claim_task(worker: str, lease_s: float, hardware: Iterable[str] | None = None) -> Transform[Task | None]:
    wanted = None if hardware is None else set(hardware)

    def apply(table: Table, now: datetime) -> Change[Task | None]:
        indices = table.indices_with_status(ACTIVE_STATUSES)
        tasks = dict(zip(indices, table.tasks(indices)))
        for i, task in tasks.items():
            if task.status is Status.RUNNING and task.worker == worker and not task.lease_expired(now):
                return Change(None, task)  # our own claim, applied but unacknowledged
        updates: dict[int, Task] = {}
        candidates: list[tuple[int, Task]] = []
        for i, task in tasks.items():
            if task.lease_expired(now) and task.attempts >= task.max_attempts:
                updates[i] = task.transition(
                    Status.FAILED, finished_at=now, lease_until=None,
                    error=_clip(f"worker {task.worker or '?'} stopped responding (lease expired) "
                                f"on attempt {task.attempts} of {task.max_attempts}"),
                )
            elif task.is_runnable(now) and (wanted is None or task.hardware in wanted):
                candidates.append((i, task))
        chosen: Task | None = None
        if candidates:
            i, task = min(candidates, key=lambda item: item[1].sort_key())
            if task.status is Status.RUNNING:  # a dead worker's task: back to the queue, then ours
                task = task.transition(Status.PENDING)
            chosen = task.transition(
                Status.RUNNING, worker=worker, lease_until=now + timedelta(seconds=lease_s),
                attempts=task.attempts + 1, started_at=now, finished_at=None, not_before=None,
            )
            updates[i] = chosen
        return Change(table.with_tasks(updates) if updates else None, chosen)

    return apply


def _owned(task: Task, worker: str) -> None:
    if task.status is Status.CANCELLED:
        raise TaskCancelled(task.id, "it was cancelled")
    if task.status is not Status.RUNNING or task.worker != worker:
        holder = f"held by {task.worker}" if task.worker and task.worker != worker else task.status.value
        raise LeaseLost(task.id, f"it is now {holder}")


def heartbeat_task(task_id: str, worker: str, lease_s: float) -> Transform[Task]:
    def apply(table: Table, now: datetime) -> Change[Task]:
        i, task = _get(table, task_id)
        _owned(task, worker)
        updated = task.replace(lease_until=now + timedelta(seconds=lease_s))
        return Change(table.with_task(i, updated), updated)

    return apply


def complete_task(task_id: str, worker: str, result: Mapping[str, Any] | None,
                  gpu_seconds: float | None, cost_usd: float | None) -> Transform[Task]:
    def apply(table: Table, now: datetime) -> Change[Task]:
        i, task = _get(table, task_id)
        if task.status is Status.DONE and task.worker == worker:
            return Change(None, task)
        _owned(task, worker)
        updated = task.transition(
            Status.DONE, finished_at=now, lease_until=None, result=dict(result) if result else None, error="",
            gpu_seconds=_add(task.gpu_seconds, gpu_seconds), cost_usd=_add(task.cost_usd, cost_usd),
        )
        return Change(table.with_task(i, updated), updated)

    return apply


def fail_task(task_id: str, worker: str, error: str, *, retry: bool, retry_delay_s: float | None,
              gpu_seconds: float | None, cost_usd: float | None) -> Transform[Task]:
    def apply(table: Table, now: datetime) -> Change[Task]:
        i, task = _get(table, task_id)
        message = _clip(f"attempt {task.attempts}: {error}")
        if task.status in (Status.PENDING, Status.FAILED) and task.worker == worker and task.error == message:
            return Change(None, task)
        _owned(task, worker)
        costs = dict(gpu_seconds=_add(task.gpu_seconds, gpu_seconds), cost_usd=_add(task.cost_usd, cost_usd))
        if retry and task.attempts < task.max_attempts:
            delay = retry_delay(task.attempts) if retry_delay_s is None else retry_delay_s
            updated = task.transition(Status.PENDING, lease_until=None, error=message,
                                      not_before=now + timedelta(seconds=delay), **costs)
        else:
            updated = task.transition(Status.FAILED, lease_until=None, finished_at=now, error=message, **costs)
        return Change(table.with_task(i, updated), updated)

    return apply


def record_cancelled_usage(task_id: str, worker: str, gpu_seconds: float, cost_usd: float) -> Transform[Task]:
    """GPU time spent on a task cancelled mid-run. Totals, not increments: re-applying changes nothing."""

    def apply(table: Table, now: datetime) -> Change[Task]:
        i, task = _get(table, task_id)
        if task.status is not Status.CANCELLED or task.worker != worker:
            raise LeaseLost(task.id, f"it is {task.status.value}, held by {task.worker or 'nobody'}")
        updated = task.replace(gpu_seconds=gpu_seconds, cost_usd=cost_usd)
        return Change(table.with_task(i, updated), updated)

    return apply


def cancel_task(task_id: str, reason: str = "") -> Transform[Task]:
    def apply(table: Table, now: datetime) -> Change[Task]:
        i, task = _get(table, task_id)
        if task.status is Status.CANCELLED:
            return Change(None, task)
        updated = task.transition(Status.CANCELLED, finished_at=now, lease_until=None,
                                  error=_clip(reason or "cancelled"))
        return Change(table.with_task(i, updated), updated)

    return apply


def requeue_task(task_id: str) -> Transform[Task]:
    def apply(table: Table, now: datetime) -> Change[Task]:
        i, task = _get(table, task_id)
        if task.status is Status.PENDING:
            return Change(None, task)
        if task.status is Status.RUNNING:
            raise InvalidTransition(task.id, task.status.value, Status.PENDING.value)
        updated = task.transition(Status.PENDING, attempts=0, not_before=None, worker="", lease_until=None,
                                  started_at=None, finished_at=None)
        return Change(table.with_task(i, updated), updated)

    return apply


def recover_expired() -> Transform[list[Task]]:
    """RUNNING tasks whose worker stopped heartbeating go back to PENDING, or FAILED at max_attempts."""

    def apply(table: Table, now: datetime) -> Change[list[Task]]:
        updates: dict[int, Task] = {}
        for i in table.indices_with_status([Status.RUNNING]):
            task = table.task(i)
            if not task.lease_expired(now):
                continue
            if task.attempts >= task.max_attempts:
                updates[i] = task.transition(
                    Status.FAILED, finished_at=now, lease_until=None,
                    error=_clip(f"worker {task.worker or '?'} stopped responding (lease expired) "
                                f"on attempt {task.attempts} of {task.max_attempts}"))
            else:
                updates[i] = task.transition(Status.PENDING, lease_until=None)
        return Change(table.with_tasks(updates) if updates else None, list(updates.values()))

    return apply


def archive_tasks(older_than: timedelta) -> Transform[int]:
    """Move finished rows to archive/tasks-YYYY-MM.csv (by finish month) so tasks.csv stays small."""

    def apply(table: Table, now: datetime) -> Change[int]:
        cutoff = now - older_than
        by_month: dict[str, list[int]] = {}
        moved: list[int] = []
        for i in table.indices_with_status(TERMINAL_STATUSES):
            task = table.task(i)
            finished = task.finished_at or task.submitted_at
            if finished is not None and finished <= cutoff:
                by_month.setdefault(f"{ARCHIVE_DIR}/tasks-{finished:%Y-%m}.csv", []).append(i)
                moved.append(i)
        if not moved:
            return Change(None, 0)
        # Whole rows move, so the cells of columns this release does not know go with them.
        files = {path: _merge_archive(table.take(rows)) for path, rows in by_month.items()}
        return Change(table.without(moved), len(moved), files)

    return apply


def _merge_archive(rows: Table) -> Callable[[bytes | None], bytes]:
    def merge(existing: bytes | None) -> bytes:
        # Rows already there (from a write that was applied but not acknowledged) are not added twice.
        return codec.dump(codec.parse(existing, "archive").merged(rows))

    return merge


def _add(total: float | None, extra: float | None) -> float | None:
    if extra is None:
        return total
    return (total or 0.0) + extra


def _clip(text: str) -> str:
    text = "".join(ch for ch in text if ch in "\n\t" or ch >= " ")
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


# ---------------------------------------------------------------- the queue


class _Outage:
    """How long to wait while the store is unavailable: its Retry-After, else jittered backoff, up to a deadline."""

    def __init__(self, deadline_s: float):
        self.start = time.monotonic()
        self.deadline_s = deadline_s
        self.tries = 0

    def next_wait(self, exc: Unavailable) -> float:
        elapsed = time.monotonic() - self.start
        if elapsed > self.deadline_s:
            raise StoreError(f"store unavailable for {elapsed:.0f}s: {exc}") from exc
        self.tries += 1
        if exc.retry_after is not None:
            return exc.retry_after + random.uniform(0, 0.1)
        return random.uniform(0, min(8.0, 0.25 * 2**self.tries))


class TaskQueue:
    """The queue over any Store. Safe to use from many threads, processes and machines at once."""

    def __init__(self, store: Store, *, clock: Callable[[], datetime] = utcnow, max_tries: int = 200,
                 sleep: Callable[[float], None] = time.sleep, unavailable_deadline_s: float = 300.0,
                 waker: Any = None):
        self.store = store
        # Asks the queue's Space for new tasks' hardware right after they are added (see wake.py).
        self.waker = waker
        self.last_wake: Any = None
        self.unavailable_deadline_s = unavailable_deadline_s
        self.clock = clock
        self.max_tries = max_tries
        self._sleep = sleep
        self._cached: tuple[str | None, Table] | None = None
        self.stats = {"reads": 0, "writes": 0, "conflicts": 0, "ambiguous": 0}

    @classmethod
    def open(cls, url: str, *, token: str | None = None, endpoint: str | None = None, space: str | None = None,
             **options: Any) -> "TaskQueue":
        """`hf://datasets/OWNER/NAME[/path/tasks.csv]`, a folder path, or `memory://`. With `space` (or
        $SCHEDULER_SPACE) each add wakes that Space for the task's hardware."""
        queue_options = {k: options.pop(k) for k in ("clock", "max_tries", "sleep", "unavailable_deadline_s") if k in options}
        from .wake import waker_for

        waker = waker_for(space, token=token, endpoint=endpoint)
        return cls(open_store(url, token=token, endpoint=endpoint, **options), waker=waker, **queue_options)

    def __repr__(self) -> str:
        return f"TaskQueue({self.store.describe()!r})"

    # -- reading --

    def _read(self) -> tuple[str | None, Table]:
        snapshot = self.store.read()
        self.stats["reads"] += 1
        cached = self._cached
        if cached is not None and cached[0] == snapshot.version and snapshot.version is not None:
            return snapshot.version, cached[1]
        table = codec.parse(snapshot.data, self.store.path)
        self._cached = (snapshot.version, table)
        return snapshot.version, table

    def table(self) -> Table:
        return self._available(self._read)[1]

    def get(self, task_id: str) -> Task:
        return _get(self.table(), task_id)[1]

    def list(self, status: Status | str | Iterable[Status | str] | None = None) -> list[Task]:
        table = self.table()
        if status is None:
            return table.tasks()
        statuses = [status] if isinstance(status, (str, Status)) else list(status)
        return table.tasks(table.indices_with_status(statuses))

    def dataframe(self, status: Status | str | Iterable[Status | str] | None = None):
        import pandas as pd

        from .schema import NAMES, TIME_COLUMNS

        frame = pd.DataFrame([t.to_dict() for t in self.list(status)], columns=list(NAMES))
        for name in TIME_COLUMNS:
            frame[name] = pd.to_datetime(frame[name].replace("", None), utc=True)
        return frame

    def counts(self) -> dict[str, int]:
        """Tasks per status, without materialising rows."""
        table = self.table()
        out = {s.value: 0 for s in Status}
        for row in table.rows:
            out[row[codec.I_STATUS]] += 1
        return out

    # -- mutations --

    def transact(self, transform: Transform[R], message: str) -> R:
        """Read, apply the pure transform, write only if the store has not moved; else re-read and re-apply."""
        outage: _Outage | None = None
        for attempt in range(self.max_tries):
            wait: float | None = None
            with self.store.lock():
                try:
                    version, table = self._read()
                    # Whole seconds, as the CSV stores them: what a call returns equals what is read back.
                    change = transform(table, self.clock().replace(microsecond=0))
                    new_table = table if change.table is None else change.table
                    # An identical rewrite would be an empty commit (the Hub skips it without checking the parent).
                    if new_table.rows == table.rows and not table.legacy and not change.files:
                        return change.result
                    files = {path: update(self.store.read_at(path, version)) for path, update in change.files.items()}
                    files[self.store.path] = codec.dump(new_table)
                    new_version = self.store.write(files, expected=version, message=message)
                except Unavailable as exc:
                    outage = outage or _Outage(self.unavailable_deadline_s)
                    wait = outage.next_wait(exc)
                except AmbiguousWrite:
                    self.stats["ambiguous"] += 1
                    self._cached = None
                    continue  # re-read at once: the write may be there already
                except Conflict:
                    self.stats["conflicts"] += 1
                    self._cached = None
                else:
                    self.stats["writes"] += 1
                    self._cached = (new_version, new_table.as_written())
                    return change.result
            # Back off with the lock released, so other writers on this machine are not held up by our wait.
            self._sleep(wait if wait is not None else random.uniform(0, min(2.0, 0.02 * 2**attempt)))
        raise StoreError(f"{self.store.describe()}: gave up after {self.max_tries} conflicting writes ({message})")

    def _available(self, fn: Callable[[], R]) -> R:
        """Run a read, waiting out 429/5xx/network failures until the outage deadline."""
        outage: _Outage | None = None
        while True:
            try:
                return fn()
            except Unavailable as exc:
                outage = outage or _Outage(self.unavailable_deadline_s)
                self._sleep(outage.next_wait(exc))

    def init(self) -> bool:
        """Create the queue file (and, on the Hub, a private dataset with its card) if missing; give an existing
        Hub queue its card if it has none. True if this call created the queue file."""
        ensure = getattr(self.store, "ensure_repo", None)
        if ensure is not None:
            ensure()
        empty = codec.dump(Table())
        for _ in range(self.max_tries):
            with self.store.lock():
                snapshot = self._available(self.store.read)
                if snapshot.data is not None:
                    codec.parse(snapshot.data, self.store.path)  # an existing file must already be a queue
                    break
                files = {self.store.path: empty, **card.new_queue_files(self.store, empty, ARCHIVE_DIR)}
                try:
                    self.store.write(files, expected=snapshot.version, message="Create the task queue")
                    return True
                except Conflict:
                    continue
        else:
            raise StoreError(f"{self.store.describe()}: could not create the queue file")
        self._available(lambda: card.ensure_card(self.store, empty, ARCHIVE_DIR))
        return False

    def add(self, task: Task | None = None, /, *, wake: bool | None = None, **fields: Any) -> Task:
        """Add one task (a Task, or the fields of Task.new). Adding the same id again adds nothing.
        `wake` (default: when the queue knows its Space) asks the Space for the task's hardware now."""
        task = task if task is not None else Task.new(**fields)
        self._check_wake(wake)
        added = self.transact(add_tasks([task]), f"Add task {task.id}")
        self._wake(added, wake)
        return added[0]

    def add_many(self, tasks: Iterable[Task], *, wake: bool | None = None) -> list[Task]:
        """Add several tasks in one write (one commit on the Hub)."""
        tasks = list(tasks)
        if not tasks:
            return []
        self._check_wake(wake)
        added = self.transact(add_tasks(tasks), f"Add {len(tasks)} tasks")
        self._wake(added, wake)
        return added

    def _check_wake(self, wake: bool | None) -> None:
        if wake and self.waker is None:
            raise UserError("wake=True needs the queue's Space: TaskQueue.open(url, space=OWNER/NAME) "
                            "or SCHEDULER_SPACE")

    def _wake(self, tasks: list[Task], wake: bool | None) -> None:
        if self.waker is None or wake is False:
            return
        try:
            self.last_wake = self.waker.wake(tasks)
        except Exception as exc:
            # The tasks are stored: the Space's own polling (or a webhook) still finds them.
            self.last_wake = exc

    def claim(self, worker: str, lease_s: float = 600.0, hardware: str | Iterable[str] | None = None) -> Task | None:
        """Take the next runnable task (priority, then age), optionally only for some hardware flavors."""
        flavors = [hardware] if isinstance(hardware, str) else hardware
        return self.transact(claim_task(worker, lease_s, flavors), f"Claim a task for {worker}")

    def heartbeat(self, task_id: str, worker: str, lease_s: float = 600.0) -> Task:
        """Extend the lease. Raises TaskCancelled or LeaseLost when the worker must stop."""
        return self.transact(heartbeat_task(task_id, worker, lease_s), f"Heartbeat {task_id}")

    def complete(self, task_id: str, worker: str, result: Mapping[str, Any] | None = None, *,
                 gpu_seconds: float | None = None, cost_usd: float | None = None) -> Task:
        return self.transact(complete_task(task_id, worker, result, gpu_seconds, cost_usd), f"Task {task_id} done")

    def fail(self, task_id: str, worker: str, error: str, *, retry: bool = True, retry_delay_s: float | None = None,
             gpu_seconds: float | None = None, cost_usd: float | None = None) -> Task:
        """Record a failed attempt: back to PENDING after a backoff while attempts remain, else FAILED."""
        return self.transact(
            fail_task(task_id, worker, error, retry=retry, retry_delay_s=retry_delay_s,
                      gpu_seconds=gpu_seconds, cost_usd=cost_usd),
            f"Task {task_id} failed",
        )

    def cancel(self, task_id: str, reason: str = "") -> Task:
        return self.transact(cancel_task(task_id, reason), f"Cancel task {task_id}")

    def record_cancelled_usage(self, task_id: str, worker: str, *, gpu_seconds: float, cost_usd: float) -> Task:
        """Account the GPU time of a run that was cancelled (the worker's complete/fail are refused)."""
        return self.transact(record_cancelled_usage(task_id, worker, gpu_seconds, cost_usd),
                             f"GPU time of cancelled task {task_id}")

    def requeue(self, task_id: str) -> Task:
        return self.transact(requeue_task(task_id), f"Requeue task {task_id}")

    def recover_expired(self) -> list[Task]:
        return self.transact(recover_expired(), "Recover tasks whose worker stopped")

    def archive(self, older_than: timedelta = timedelta(days=7)) -> int:
        """Move finished tasks older than `older_than` to archive/tasks-YYYY-MM.csv. Returns how many."""
        return self.transact(archive_tasks(older_than), "Archive finished tasks")
