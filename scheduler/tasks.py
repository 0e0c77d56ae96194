"""Task (a frozen row of tasks.csv), its Status and the one transition table.

The Task's fields are the columns of scheduler.schema, in the same order (a test checks it); turning
a task into cells and back goes through the schema's column types.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from . import schema, validation
from .errors import InvalidTransition, ValidationError
from .schema import LimitExceeded, Status, format_time, parse_time

__all__ = ["Task", "Status", "TRANSITIONS", "TERMINAL_STATUSES", "ACTIVE_STATUSES", "COLUMNS", "HEADER_LINE",
           "DEFAULT_HARDWARE", "DEFAULT_MAX_ATTEMPTS", "DEFAULT_TIMEOUT_S", "new_task_id", "utcnow", "format_time",
           "parse_time"]

TERMINAL_STATUSES = (Status.DONE, Status.FAILED, Status.CANCELLED)
ACTIVE_STATUSES = (Status.PENDING, Status.RUNNING)

# RUNNING -> PENDING is a retry or an expired lease; FAILED|CANCELLED -> PENDING is an explicit requeue.
TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.RUNNING, Status.CANCELLED}),
    Status.RUNNING: frozenset({Status.DONE, Status.FAILED, Status.CANCELLED, Status.PENDING}),
    Status.DONE: frozenset(),
    Status.FAILED: frozenset({Status.PENDING}),
    Status.CANCELLED: frozenset({Status.PENDING}),
}

COLUMNS: tuple[str, ...] = schema.NAMES
HEADER_LINE = schema.HEADER_LINE
DEFAULT_HARDWARE: str = schema.COLUMN["hardware"].default
DEFAULT_MAX_ATTEMPTS: int = schema.COLUMN["max_attempts"].default
DEFAULT_TIMEOUT_S: int = schema.COLUMN["timeout_s"].default


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


_ulid_lock = threading.Lock()
_ulid_last = (0, 0)


def new_task_id() -> str:
    """A monotonic ULID: sorts by creation time, so ties in `submitted_at` break in submission order."""
    global _ulid_last
    with _ulid_lock:
        ms = time.time_ns() // 1_000_000
        last_ms, last_random = _ulid_last
        if ms <= last_ms:  # same millisecond (or a clock step back): count up from the last one
            ms, rand = last_ms, (last_random + 1) % (1 << 80)
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # headroom for counting up
        _ulid_last = (ms, rand)
    value = (ms << 80) | rand
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


@dataclass(frozen=True, kw_only=True)
class Task:
    """One row of tasks.csv. Fields, their order and their defaults are the schema's columns."""

    id: str
    status: Status = Status.PENDING
    model_id: str
    dataset_id: str
    hardware: str = DEFAULT_HARDWARE
    params: Mapping[str, Any] = field(default_factory=dict)
    priority: int = 0
    submitted_at: datetime | None = None
    submitted_by: str = ""
    not_before: datetime | None = None
    attempts: int = 0
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    timeout_s: int = DEFAULT_TIMEOUT_S
    worker: str = ""
    lease_until: datetime | None = None
    # The fencing token of the current (or last) run: every write about that run must name it.
    lease_id: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    gpu_seconds: float | None = None
    cost_usd: float | None = None
    result: Mapping[str, Any] | None = None
    error: str = ""
    # The bounded, redacted tail of the last run's log, stored with its outcome.
    log: str = ""

    @classmethod
    def new(
        cls,
        model_id: str,
        dataset_id: str,
        hardware: str = DEFAULT_HARDWARE,
        *,
        params: Mapping[str, Any] | str | None = None,
        priority: int = 0,
        submitted_by: str = "",
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout_s: int = DEFAULT_TIMEOUT_S,
        not_before: datetime | None = None,
        id: str | None = None,
        now: datetime | None = None,
    ) -> "Task":
        """A validated PENDING task. Every bad field raises ValidationError naming it."""
        # The CSV keeps whole seconds; truncating here makes a task equal to itself read back.
        now = (now or utcnow()).replace(microsecond=0)
        return cls(
            id=validation.task_id(id) if id is not None else new_task_id(),
            model_id=validation.repo_id(model_id, "model_id"),
            dataset_id=validation.repo_id(dataset_id, "dataset_id"),
            hardware=validation.hardware(hardware),
            params=validation.params(params),
            priority=validation.priority(priority),
            submitted_at=now,
            submitted_by=validation.text(submitted_by, "submitted_by"),
            not_before=not_before,
            max_attempts=validation.max_attempts(max_attempts),
            timeout_s=validation.timeout_s(timeout_s),
        )

    def transition(self, target: Status, **changes: Any) -> "Task":
        if target not in TRANSITIONS[self.status]:
            raise InvalidTransition(self.id, self.status.value, Status(target).value)
        return dataclasses.replace(self, status=target, **changes)

    def replace(self, **changes: Any) -> "Task":
        return dataclasses.replace(self, **changes)

    def lease_expired(self, now: datetime) -> bool:
        """RUNNING and its lease ran out. The one expiry rule: `now` is the queue's clock, which is the
        Hub's (read from the `Date` of its answers) for a queue on the Hub."""
        return self.status is Status.RUNNING and (self.lease_until is None or self.lease_until <= now)

    def is_runnable(self, now: datetime) -> bool:
        """PENDING and due, or RUNNING with an expired lease (its worker died)."""
        if self.status is Status.PENDING:
            return self.not_before is None or self.not_before <= now
        return self.lease_expired(now)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def sort_key(self) -> tuple:
        """Run order: highest priority first, then oldest."""
        submitted = self.submitted_at.timestamp() if self.submitted_at else 0.0
        return (-self.priority, submitted, self.id)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view (times as ISO strings)."""
        out: dict[str, Any] = {}
        for name in COLUMNS:
            value = getattr(self, name)
            if isinstance(value, datetime):
                value = format_time(value)
            elif isinstance(value, Status):
                value = value.value
            elif isinstance(value, Mapping):
                value = dict(value)
            out[name] = value
        return out

    # -- row form: the cells of tasks.csv, as plain text, before spreadsheet neutralisation --

    def to_cells(self) -> list[str]:
        """The canonical plain text of each column, in the schema's order. Raises ValidationError naming
        the column and this task (LimitExceeded, with `limit`, for a value over the column's bound)."""
        cells = []
        for column in schema.COLUMNS:
            try:
                cells.append(column.write(getattr(self, column.name)))
            except LimitExceeded as exc:
                raise LimitExceeded(exc.field, exc.size, exc.limit, exc.unit, task_id=self.id) from None
            except ValidationError as exc:
                raise ValidationError(exc.field, f"task {self.id}: {exc.message}") from None
        return cells

    @classmethod
    def from_cells(cls, cells: Mapping[str, str]) -> "Task":
        """A task from plain cells (column name -> text, as `to_cells` gives them); a missing column reads as
        an empty cell, that is its default. Raises ValidationError naming the column."""
        return cls(**{column.name: column.read(cells.get(column.name, "")) for column in schema.COLUMNS})
