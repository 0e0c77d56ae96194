"""Task (a frozen row of tasks.csv), its Status and the one transition table."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Mapping

from . import validation
from .errors import InvalidTransition, ValidationError


class Status(str, Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    def __str__(self) -> str:
        return self.value


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

TEMPLATE_PATH = Path(__file__).with_name("tasks_template.csv")


def _template_columns() -> tuple[str, ...]:
    header = TEMPLATE_PATH.read_text(encoding="utf-8").splitlines()[0]
    return tuple(name.strip() for name in header.split(","))


COLUMNS: tuple[str, ...] = _template_columns()
HEADER_LINE = ",".join(COLUMNS)
DEFAULT_HARDWARE = "t4-small"
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_TIMEOUT_S = 3600


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def format_time(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str, field_name: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(field_name, f"{value!r} is not an ISO 8601 time like 2026-01-31T12:00:00Z") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


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


@dataclass(frozen=True)
class Task:
    id: str
    model_id: str
    dataset_id: str
    hardware: str = DEFAULT_HARDWARE
    status: Status = Status.PENDING
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
        return [_cell(name, getattr(self, name)) for name in COLUMNS]

    @classmethod
    def from_cells(cls, cells: Mapping[str, str]) -> "Task":
        """Parse one row; ValidationError names the field that is wrong."""
        try:
            status = Status(cells["status"])
        except ValueError:
            raise ValidationError(
                "status", f"{cells['status']!r} is not one of {', '.join(s.value for s in Status)}"
            ) from None
        return cls(
            id=validation.task_id(cells["id"]),
            status=status,
            model_id=cells["model_id"],
            dataset_id=cells["dataset_id"],
            hardware=cells["hardware"],
            params=_json_object(cells["params"], "params"),
            priority=validation.integer(cells["priority"] or "0", "priority", -(10**9), 10**9),
            submitted_at=parse_time(cells["submitted_at"], "submitted_at"),
            submitted_by=cells["submitted_by"],
            not_before=parse_time(cells["not_before"], "not_before"),
            attempts=validation.integer(cells["attempts"] or "0", "attempts", 0, 10**6),
            max_attempts=validation.integer(cells["max_attempts"] or str(DEFAULT_MAX_ATTEMPTS), "max_attempts", 0, 10**6),
            timeout_s=validation.integer(cells["timeout_s"] or str(DEFAULT_TIMEOUT_S), "timeout_s", 0, 10**9),
            worker=cells["worker"],
            lease_until=parse_time(cells["lease_until"], "lease_until"),
            lease_id=cells.get("lease_id", ""),
            started_at=parse_time(cells["started_at"], "started_at"),
            finished_at=parse_time(cells["finished_at"], "finished_at"),
            gpu_seconds=_optional_number(cells["gpu_seconds"], "gpu_seconds"),
            cost_usd=_optional_number(cells["cost_usd"], "cost_usd"),
            result=_json_object(cells["result"], "result") if cells["result"] else None,
            error=cells["error"],
            log=cells.get("log", ""),
        )


def _cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, Status):
        return value.value
    if isinstance(value, Mapping):
        return json.dumps(dict(value), ensure_ascii=False, sort_keys=True, allow_nan=False) if (value or name == "params") else ""
    if isinstance(value, float):
        return repr(round(value, 6))
    return str(value)


def _json_object(raw: str, field_name: str) -> dict:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ValidationError(field_name, f"is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValidationError(field_name, "must be a JSON object")
    return value


def _optional_number(raw: str, field_name: str) -> float | None:
    return validation.finite_number(raw, field_name) if raw else None
