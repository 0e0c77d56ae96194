"""TaskQueue: every mutation is read -> pure transform -> compare-and-swap write, retried on conflict.

The transforms below are pure functions of (Table, now); they are also idempotent, so re-applying
one after an ambiguous write (the Hub applied the commit but the answer was lost) changes nothing.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, Generic, Iterable, Mapping, Sequence, TypeVar, Union

from . import card, codec
from .codec import Table
from .errors import (AmbiguousWrite, CommitQuotaExceeded, Conflict, InvalidTransition, LeaseLost, StoreError,
                     TaskNotFound, Unavailable, UserError)
from .lease import new_lease_id, run_may_continue
from .outcome import Outcome
from .schema import MAX_ERROR_CHARS
from .stores import Store, open_store
from .tasks import ACTIVE_STATUSES, TERMINAL_STATUSES, Status, Task

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


LeaseSpan = Union[float, Callable[[Task], float]]


def _span(lease_s: LeaseSpan, task: Task) -> float:
    return float(lease_s(task) if callable(lease_s) else lease_s)


def _out_of_attempts(task: Task, now: datetime) -> Task:
    return task.transition(
        Status.FAILED, finished_at=now, lease_until=None, lease_id="",
        error=_clip(f"worker {task.worker or '?'} stopped responding (lease expired) "
                    f"on attempt {task.attempts} of {task.max_attempts}"),
    )


def claim_task(holder: str, lease_id: str, lease_s: LeaseSpan, hardware: Iterable[str] | None = None,
               takeover: Iterable[str] = (), exclude: Iterable[str] = ()) -> Transform[Task | None]:
    """Take the next runnable task (priority, then age) under the fencing token `lease_id`.

    `takeover`: ids of RUNNING tasks the caller knows to be abandoned (its own predecessor's runs),
    taken back at once instead of after their lease. A claim whose answer was lost is recognised by its
    lease id when it is re-applied, never by the holder's name, so one holder may hold several tasks.
    `exclude`: ids the caller runs itself (a lease of its own that ran out is its to renew, not a task
    to start again)."""
    wanted = None if hardware is None else set(hardware)
    abandoned = set(takeover)
    mine = set(exclude)

    def apply(table: Table, now: datetime) -> Change[Task | None]:
        indices = table.indices_with_status(ACTIVE_STATUSES)
        tasks = dict(zip(indices, table.tasks(indices)))
        for task in tasks.values():
            if task.lease_id == lease_id and task.status is Status.RUNNING:
                return Change(None, task)  # our own claim, applied but unacknowledged
        updates: dict[int, Task] = {}
        candidates: list[tuple[int, Task]] = []
        for i, task in tasks.items():
            if task.id in mine:
                continue
            free = task.is_runnable(now) or (task.id in abandoned and task.status is Status.RUNNING)
            if free and task.status is Status.RUNNING and task.attempts >= task.max_attempts:
                updates[i] = _out_of_attempts(task, now)
            elif free and (wanted is None or task.hardware in wanted):
                candidates.append((i, task))
        chosen: Task | None = None
        if candidates:
            i, task = min(candidates, key=lambda item: item[1].sort_key())
            if task.status is Status.RUNNING:  # a dead worker's task: back to the queue, then ours
                task = task.transition(Status.PENDING)
            chosen = task.transition(
                Status.RUNNING, worker=holder, lease_id=lease_id,
                lease_until=now + timedelta(seconds=_span(lease_s, task)),
                attempts=task.attempts + 1, started_at=now, finished_at=None, not_before=None,
            )
            updates[i] = chosen
        return Change(table.with_tasks(updates) if updates else None, chosen)

    return apply


def _fenced(task: Task, lease_id: str) -> None:
    """Raise unless `lease_id` is the task's live lease."""
    if task.lease_id != lease_id:
        holder = f"held by {task.worker} under another lease" if task.status is Status.RUNNING else task.status.value
        raise LeaseLost(task.id, f"lease {lease_id} is stale: the task is now {holder}")
    if task.status in (Status.CANCELLED, Status.PENDING):
        raise TaskCancelled(task.id, "it was cancelled" + (" and requeued" if task.status is Status.PENDING else ""))
    if task.status is not Status.RUNNING:
        raise LeaseLost(task.id, f"the task is {task.status.value}")


def heartbeat_tasks(leases: Mapping[str, str], lease_s: LeaseSpan) -> Transform[dict[str, Task | LeaseLost]]:
    """Renew every lease in `leases` (task id -> lease id) in one write. Each task maps to its renewed
    row, or to the LeaseLost/TaskCancelled that says why its run must stop."""

    def apply(table: Table, now: datetime) -> Change[dict[str, Task | LeaseLost]]:
        updates: dict[int, Task] = {}
        out: dict[str, Task | LeaseLost] = {}
        for task_id, lease_id in leases.items():
            i = table.find(task_id)
            if i is None:
                out[task_id] = LeaseLost(task_id, "the task is gone from the queue")
                continue
            task = table.task(i)
            try:
                _fenced(task, lease_id)
            except LeaseLost as exc:
                out[task_id] = exc
                continue
            updates[i] = out[task_id] = task.replace(lease_until=now + timedelta(seconds=_span(lease_s, task)))
        return Change(table.with_tasks(updates) if updates else None, out)

    return apply


def _apply_outcome(table: Table, outcome: Outcome, now: datetime) -> tuple[int | None, Task]:
    """(row index to update or None, the task as recorded). Raises LeaseLost/TaskCancelled when the
    outcome may not be recorded; re-applying an outcome that is already recorded changes nothing."""
    i, task = _get(table, outcome.task_id)
    if task.lease_id != outcome.lease_id:
        _fenced(task, outcome.lease_id)  # raises: the lease is stale
    costs = dict(gpu_seconds=_add(task.gpu_seconds, outcome.gpu_seconds),
                 cost_usd=_add(task.cost_usd, outcome.cost_usd))
    if task.status in (Status.CANCELLED, Status.PENDING) and task.lease_until is not None:
        # A cancelled run (the task may have been requeued since) reports that it stopped: it was paid
        # for until then, so its time and log are kept; a requeued task may run again from now on.
        # Whatever else the run says (a result) is not recorded: the task was cancelled.
        changes = dict(not_before=None) if task.status is Status.PENDING else {}
        return i, task.replace(lease_until=None, log=outcome.log or task.log, **costs, **changes)
    if task.status is not Status.RUNNING:
        return None, task  # recorded already (an answer that was lost)
    if outcome.status is None:
        raise LeaseLost(task.id, f"the run stopped ({outcome.stop}) but the task is still RUNNING")
    common = dict(lease_until=None, log=outcome.log, **costs)
    if outcome.status is Status.DONE:
        return i, task.transition(Status.DONE, finished_at=now, result=dict(outcome.result or {}) or None,
                                  error="", **common)
    message = _clip(f"attempt {task.attempts}: {outcome.error}")
    if outcome.status is Status.PENDING and task.attempts < task.max_attempts:
        delay = retry_delay(task.attempts) if outcome.retry_delay_s is None else outcome.retry_delay_s
        return i, task.transition(Status.PENDING, error=message, not_before=now + timedelta(seconds=delay), **common)
    return i, task.transition(Status.FAILED, finished_at=now, error=message, **common)


def record_outcome(outcome: Outcome) -> Transform[Task]:
    """Record one run's outcome if its lease is still the task's (see `_apply_outcome`)."""

    def apply(table: Table, now: datetime) -> Change[Task]:
        i, task = _apply_outcome(table, outcome, now)
        return Change(None if i is None else table.with_task(i, task), task)

    return apply


@dataclass(frozen=True)
class ClaimSpec:
    """The arguments of a claim, for `settle`: holder, lease id, lease span, flavors, abandoned ids."""

    holder: str
    lease_id: str
    lease_s: LeaseSpan
    hardware: tuple[str, ...] | None = None
    takeover: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


@dataclass
class Settled:
    """What `settle` did: each outcome's task as recorded (or the LeaseLost refusing it), and the claim."""

    recorded: dict[str, Task | LeaseLost] = field(default_factory=dict)
    claimed: Task | None = None


def settle(outcomes: Sequence[Outcome], claim: ClaimSpec | None = None,
           files: Mapping[str, Callable[[bytes | None], bytes]] | None = None) -> Transform[Settled]:
    """Record finished runs and claim the next task in one write: in a drain, finishing task N and
    claiming task N+1 costs one commit (the Hub allows 128 commits per hour per repository). `files`:
    other files of the repo to update in the same commit (e.g. billing.opened)."""

    def apply(table: Table, now: datetime) -> Change[Settled]:
        out = Settled()
        current = table
        for outcome in outcomes:
            try:
                i, task = _apply_outcome(current, outcome, now)
            except (LeaseLost, TaskNotFound) as exc:
                out.recorded[outcome.task_id] = exc if isinstance(exc, LeaseLost) else LeaseLost(outcome.task_id, str(exc))
                continue
            out.recorded[outcome.task_id] = task
            if i is not None:
                current = current.with_task(i, task)
        if claim is not None:
            change = claim_task(claim.holder, claim.lease_id, claim.lease_s, claim.hardware, claim.takeover,
                                claim.exclude)(current, now)
            out.claimed = change.result
            current = current if change.table is None else change.table
        return Change(None if current is table else current, out, dict(files or {}))

    return apply


def cancel_task(task_id: str, reason: str = "") -> Transform[Task]:
    """PENDING -> CANCELLED; RUNNING -> CANCELLED keeping the run's lease (it may still be going: its
    worker notices by reading, stops it and records its usage, which ends the lease)."""

    def apply(table: Table, now: datetime) -> Change[Task]:
        i, task = _get(table, task_id)
        if task.status is Status.CANCELLED:
            return Change(None, task)
        keep = task.status is Status.RUNNING
        updated = task.transition(Status.CANCELLED, finished_at=now, error=_clip(reason or "cancelled"),
                                  lease_until=task.lease_until if keep else None,
                                  lease_id=task.lease_id if keep else "")
        return Change(table.with_task(i, updated), updated)

    return apply


def requeue_task(task_id: str) -> Transform[Task]:
    """FAILED|CANCELLED -> PENDING with fresh attempts. A cancelled run that has not reported its stop
    yet keeps the task waiting until it does (or its lease ends), so two runs of one task never
    overlap; that run can then record its usage, nothing else."""

    def apply(table: Table, now: datetime) -> Change[Task]:
        i, task = _get(table, task_id)
        if task.status is Status.PENDING:
            return Change(None, task)
        if task.status is Status.RUNNING:
            raise InvalidTransition(task.id, task.status.value, Status.PENDING.value)
        if run_may_continue(task, now):
            # Kept until that run reports its stop (which clears not_before) or its lease ends.
            keep = dict(not_before=task.lease_until, lease_until=task.lease_until, lease_id=task.lease_id)
        else:
            keep = dict(not_before=None, lease_until=None, lease_id="")
        updated = task.transition(Status.PENDING, attempts=0, worker="", started_at=None, finished_at=None, **keep)
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
                updates[i] = _out_of_attempts(task, now)
            else:
                updates[i] = task.transition(Status.PENDING, lease_until=None, lease_id="")
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
    """How long to wait while the store is unavailable (5xx, network, request quotas, a lost commit
    answer): its Retry-After or RateLimit, else jittered backoff, up to a deadline."""

    def __init__(self, deadline_s: float):
        self.start = time.monotonic()
        self.deadline_s = deadline_s
        self.tries = 0

    def next_wait(self, exc: Exception) -> float:
        elapsed = time.monotonic() - self.start
        if elapsed > self.deadline_s:
            raise StoreError(f"the Hub has been unavailable for {elapsed:.0f}s: {exc}") from exc
        self.tries += 1
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return retry_after + random.uniform(0, 0.1 + 0.1 * retry_after)
        return random.uniform(0, min(8.0, 0.25 * 2**self.tries))


# Called while a write waits out the commit quota: (what is waited for, when writing resumes (UTC)).
WaitHook = Callable[[str, datetime], None]
# Called with the tasks an add stored; what it returns is kept in `TaskQueue.last_wake`.
AddedHook = Callable[[list[Task]], Any]


class Interrupted(StoreError):
    """A write gave up waiting because its caller is stopping (`TaskQueue.interrupt` was set)."""


class TaskQueue:
    """The queue over any Store. Safe to use from many threads, processes and machines at once.

    Times (`now` in every transform) come from `clock`, by default the store's: the Hub's own clock for
    a queue on the Hub, so leases are judged alike by every machine whatever its local time.
    `on_added` hooks run after each add is stored (e.g. `wake.Waker.wake`); a failing hook never
    undoes the add. `on_wait` hears about commit-quota waits. Setting `interrupt` makes a waiting
    write give up with `Interrupted`."""

    def __init__(self, store: Store, *, clock: Callable[[], datetime] | None = None, max_tries: int = 200,
                 sleep: Callable[[float], None] = time.sleep, unavailable_deadline_s: float = 300.0,
                 on_added: Iterable[AddedHook] = (), on_wait: WaitHook | None = None):
        self.store = store
        self.on_added: list[AddedHook] = list(on_added)
        self.last_wake: Any = None
        self.on_wait = on_wait
        self.interrupt = threading.Event()
        self.unavailable_deadline_s = unavailable_deadline_s
        self.clock = clock or store.now
        self.max_tries = max_tries
        self._sleep = sleep
        self._cached: tuple[str | None, Table] | None = None
        self.stats = {"reads": 0, "writes": 0, "conflicts": 0, "ambiguous": 0, "quota_waits": 0}

    @classmethod
    def open(cls, url: str, *, token: str | None = None, endpoint: str | None = None,
             **options: Any) -> "TaskQueue":
        """`hf://datasets/OWNER/NAME[/path/tasks.csv]`, a folder path, or `memory://`. Queue options
        (clock, max_tries, sleep, unavailable_deadline_s, on_added, on_wait) go to the queue, the rest
        to the store. To wake a Space on each add, see `scheduler.open_queue(url, space=...)`."""
        names = ("clock", "max_tries", "sleep", "unavailable_deadline_s", "on_added", "on_wait")
        queue_options = {k: options.pop(k) for k in names if k in options}
        return cls(open_store(url, token=token, endpoint=endpoint, **options), **queue_options)

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

    def head(self) -> str | None:
        """The store's current version, from one cheap read (a HEAD on the Hub): a watcher polls it and
        reads the table only when it moved."""
        return self._available(self.store.head)

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
        """Read, apply the pure transform, write only if the store has not moved; else re-read and re-apply.

        Waits, with the local lock released: a conflict backs off briefly; an outage (5xx, network, a
        request quota, a commit whose answer was lost) backs off with jitter honouring Retry-After /
        RateLimit, up to `unavailable_deadline_s`; the commit quota is waited out for as long as the Hub
        says, however long, telling `on_wait` what is waited for and until when."""
        outage: _Outage | None = None
        conflicts = 0
        while True:
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
                except CommitQuotaExceeded as exc:
                    wait = self._quota_wait(exc)
                except (Unavailable, AmbiguousWrite) as exc:
                    if isinstance(exc, AmbiguousWrite):
                        # The write may be there already: re-read after the pause, and the idempotent
                        # transform recognises it.
                        self.stats["ambiguous"] += 1
                        self._cached = None
                    outage = outage or _Outage(self.unavailable_deadline_s)
                    wait = outage.next_wait(exc)
                except Conflict:
                    self.stats["conflicts"] += 1
                    self._cached = None
                    conflicts += 1
                    if conflicts >= self.max_tries:
                        raise StoreError(f"{self.store.describe()}: gave up after {conflicts} conflicting writes "
                                         f"({message})") from None
                    wait = random.uniform(0, min(2.0, 0.02 * 2**conflicts))
                else:
                    self.stats["writes"] += 1
                    self._cached = (new_version, new_table.as_written())
                    return change.result
            # Back off with the lock released, so other writers on this machine are not held up by our wait.
            self._pause(wait, message)

    def _quota_wait(self, exc: CommitQuotaExceeded) -> float:
        self.stats["quota_waits"] += 1
        # Without a figure the Hub's text says "about 1 hour"; a retry sooner only spends a request.
        wait = exc.retry_after if exc.retry_after is not None else 600.0
        wait += random.uniform(0, 1.0 + 0.01 * wait)  # writers sharing the quota do not retry together
        if self.on_wait is not None:
            until = self.clock() + timedelta(seconds=wait)
            try:
                self.on_wait(f"the commit quota of {self.store.describe()} ({exc})", until)
            except Exception:
                pass  # a status line must never stop a write
        return wait

    def _pause(self, seconds: float, message: str) -> None:
        if self.interrupt.is_set():
            raise Interrupted(f"{self.store.describe()}: stopped while waiting to write ({message})")
        if self._sleep is time.sleep:
            if self.interrupt.wait(seconds):
                raise Interrupted(f"{self.store.describe()}: stopped while waiting to write ({message})")
        else:
            self._sleep(seconds)

    def _available(self, fn: Callable[[], R]) -> R:
        """Run a read, waiting out 429/5xx/network failures until the outage deadline."""
        outage: _Outage | None = None
        while True:
            try:
                return fn()
            except Unavailable as exc:
                outage = outage or _Outage(self.unavailable_deadline_s)
                self._pause(outage.next_wait(exc), "a read")

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
        `wake=False` skips the `on_added` hooks (e.g. waking the queue's Space); `wake=True` requires one."""
        task = task if task is not None else Task.new(**fields)
        self._check_wake(wake)
        added = self.transact(add_tasks([task]), f"Add task {task.id}")
        self._added(added, wake)
        return added[0]

    def add_many(self, tasks: Iterable[Task], *, wake: bool | None = None) -> list[Task]:
        """Add several tasks in one write (one commit on the Hub)."""
        tasks = list(tasks)
        if not tasks:
            return []
        self._check_wake(wake)
        added = self.transact(add_tasks(tasks), f"Add {len(tasks)} tasks")
        self._added(added, wake)
        return added

    def _check_wake(self, wake: bool | None) -> None:
        if wake and not self.on_added:
            raise UserError("wake=True needs the queue's Space: scheduler.open_queue(url, space=OWNER/NAME) "
                            "or SCHEDULER_SPACE")

    def _added(self, tasks: list[Task], wake: bool | None) -> None:
        if wake is False:
            return
        for hook in self.on_added:
            try:
                self.last_wake = hook(tasks)
            except Exception as exc:
                # The tasks are stored: the Space's own polling (or a webhook) still finds them.
                self.last_wake = exc

    def claim(self, holder: str, lease_s: LeaseSpan = 600.0, hardware: str | Iterable[str] | None = None, *,
              lease_id: str | None = None, takeover: Iterable[str] = ()) -> Task | None:
        """Take the next runnable task (priority, then age), optionally only for some hardware flavors,
        under a fresh lease id (the returned task's `lease_id`). `lease_s`: seconds, or a function of the task."""
        flavors = [hardware] if isinstance(hardware, str) else hardware
        return self.transact(claim_task(holder, lease_id or new_lease_id(), lease_s, flavors, tuple(takeover)),
                             f"Claim a task for {holder}")

    def heartbeat(self, task_id: str, lease_id: str, lease_s: LeaseSpan = 600.0) -> Task:
        """Extend one lease. Raises TaskCancelled or LeaseLost when its run must stop."""
        result = self.heartbeat_many({task_id: lease_id}, lease_s)[task_id]
        if isinstance(result, LeaseLost):
            raise result
        return result

    def heartbeat_many(self, leases: Mapping[str, str], lease_s: LeaseSpan = 600.0) -> dict[str, Task | LeaseLost]:
        """Extend several leases in one write (task id -> lease id)."""
        return self.transact(heartbeat_tasks(dict(leases), lease_s), f"Renew {len(leases)} lease(s)")

    def record(self, outcome: Outcome) -> Task:
        """Record one run's outcome (idempotent). Raises TaskCancelled/LeaseLost when its lease is stale."""
        return self.transact(record_outcome(outcome), f"Task {outcome.task_id}: {outcome.status or outcome.stop}")

    def settle(self, outcomes: Sequence[Outcome], claim: ClaimSpec | None = None,
               files: Mapping[str, Callable[[bytes | None], bytes]] | None = None) -> Settled:
        """Record outcomes and claim the next task in one write (see `settle`)."""
        parts = [f"{len(outcomes)} outcome(s)"] if outcomes else []
        if claim is not None:
            parts.append(f"claim for {claim.holder}")
        if files:
            parts.append(", ".join(files))
        return self.transact(settle(list(outcomes), claim, files), "Record " + " and ".join(parts))

    def update_files(self, files: Mapping[str, Callable[[bytes | None], bytes]], message: str) -> None:
        """Update other files of the queue's repo in one write, tasks.csv unchanged."""
        self.transact(lambda table, now: Change(None, None, dict(files)), message)

    def read_file(self, path: str) -> bytes | None:
        """Another file of the queue's repo (e.g. billing/periods.csv) as of the current version."""
        def read() -> bytes | None:
            version = self.store.head()
            return self.store.read_at(path, version)

        return self._available(read)

    def complete(self, task_id: str, lease_id: str, result: Mapping[str, Any] | None = None, *,
                 gpu_seconds: float | None = None, cost_usd: float | None = None, log: str = "") -> Task:
        """DONE with `result` (a JSON object), if `lease_id` is still the task's."""
        return self.record(Outcome(task_id, lease_id, Status.DONE, result=result, gpu_seconds=gpu_seconds,
                                   cost_usd=cost_usd, log=log))

    def fail(self, task_id: str, lease_id: str, error: str, *, retry: bool = True, retry_delay_s: float | None = None,
             gpu_seconds: float | None = None, cost_usd: float | None = None, log: str = "") -> Task:
        """Record a failed attempt: back to PENDING after a backoff while attempts remain, else FAILED."""
        return self.record(Outcome(task_id, lease_id, Status.PENDING if retry else Status.FAILED, error=error,
                                   retry_delay_s=retry_delay_s, gpu_seconds=gpu_seconds, cost_usd=cost_usd, log=log))

    def cancel(self, task_id: str, reason: str = "") -> Task:
        return self.transact(cancel_task(task_id, reason), f"Cancel task {task_id}")

    def requeue(self, task_id: str) -> Task:
        return self.transact(requeue_task(task_id), f"Requeue task {task_id}")

    def recover_expired(self) -> list[Task]:
        return self.transact(recover_expired(), "Recover tasks whose worker stopped")

    def archive(self, older_than: timedelta = timedelta(days=7)) -> int:
        """Move finished tasks older than `older_than` to archive/tasks-YYYY-MM.csv. Returns how many."""
        return self.transact(archive_tasks(older_than), "Archive finished tasks")
