"""What a run of a task came to, decided once for every executor: the `Outcome` the queue records.

Pure functions of what the executor reported (`RunResult`) and why the run was stopped, if it was
(`StopReason`). The outcome is made storable here (non-finite numbers become null and are noted in
the log; an oversized result fails the task naming the limit), so nothing reaches the queue that a
reader of tasks.csv would refuse.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Mapping

from .redact import redact
from .schema import MAX_ERROR_CHARS, MAX_LOG_CHARS, MAX_RESULT_BYTES
from .tasks import Status, Task


class StopReason(str, Enum):
    """Why a run was stopped before its callback returned."""

    CANCELLED = "cancelled"
    TIMED_OUT = "timed out"
    LEASE_LOST = "lease lost"  # someone else holds the task now: nothing of the run is recorded
    LEASE_EXPIRED = "lease not renewed in time"  # stopped before anyone could take it over
    WORKER_STOPPED = "worker stopped"
    WRONG_HARDWARE = "wrong hardware"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class RunResult:
    """What an executor saw when a run ended. `retry` is False for a failure that would repeat
    (scheduler.errors.NonRetryable, a repo that does not exist, no access, a bad parameter)."""

    ok: bool
    result: Mapping[str, Any] | None = None
    error: str | None = None
    retry: bool = True
    exit_code: int | None = None


@dataclass(frozen=True)
class Outcome:
    """One run's record, applied by `queue.record_outcome` if `lease_id` is still the task's.

    `status`: DONE, PENDING (retry after `retry_delay_s`; None = the queue's backoff) or FAILED; None
    for a run stopped by a cancel (only its usage and log are recorded on the CANCELLED task) or one
    whose lease was lost (nothing is recorded). `gpu_seconds`/`cost_usd`: this run's share (seconds, USD)."""

    task_id: str
    lease_id: str
    status: Status | None
    result: Mapping[str, Any] | None = None
    error: str = ""
    retry_delay_s: float | None = None
    gpu_seconds: float | None = None
    cost_usd: float | None = None
    log: str = ""
    stop: StopReason | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def recordable(self) -> bool:
        return self.stop is not StopReason.LEASE_LOST

    def to_json(self) -> dict:
        out = asdict(self)
        out["status"] = self.status.value if self.status else None
        out["stop"] = self.stop.value if self.stop else None
        out["notes"] = list(self.notes)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Outcome":
        return cls(
            task_id=data["task_id"], lease_id=data["lease_id"],
            status=Status(data["status"]) if data.get("status") else None,
            result=data.get("result"), error=data.get("error") or "", retry_delay_s=data.get("retry_delay_s"),
            gpu_seconds=data.get("gpu_seconds"), cost_usd=data.get("cost_usd"), log=data.get("log") or "",
            stop=StopReason(data["stop"]) if data.get("stop") else None, notes=tuple(data.get("notes") or ()),
        )


def storable(value: Any, path: str = "result", notes: list[str] | None = None) -> Any:
    """A copy of `value` that JSON without NaN/inf can hold: non-finite floats become None (and are
    noted as "result.loss was nan"), tuples become lists, other objects their str()."""
    notes = notes if notes is not None else []
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        notes.append(f"{path} was {value!r}; stored as null")
        return None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): storable(v, f"{path}.{k}", notes) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(v, f"{path}[{i}]", notes) for i, v in enumerate(value)]
    item = getattr(value, "item", None)  # numpy and torch scalars
    if callable(item):
        try:
            return storable(item(), path, notes)
        except (TypeError, ValueError):
            pass
    return str(value)


def clip(text: str, limit: int) -> str:
    """Printable text of at most `limit` characters, cut at the end."""
    text = "".join(ch for ch in text if ch in "\n\t" or ch >= " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tail(text: str, limit: int = MAX_LOG_CHARS) -> str:
    """The last `limit` characters of a log, cut at a line start where possible."""
    text = "".join(ch for ch in redact(text) if ch in "\n\t" or ch >= " ")
    if len(text) <= limit:
        return text
    cut = text[-(limit - 2):]
    newline = cut.find("\n")
    return "…\n" + (cut[newline + 1:] if 0 <= newline < len(cut) // 2 else cut)


def decide_outcome(task: Task, lease_id: str, run: RunResult, stop: StopReason | None, *, seconds: float,
                   cost_usd: float, log: str = "", retry_delay_s: float | None = None, detail: str = "") -> Outcome:
    """The outcome of one run of `task` (claimed under `lease_id`).

    - stopped by a cancel: usage and log only; by a lost lease: nothing (someone else holds the task);
    - stopped because the worker is stopping, this replica is not on the task's hardware, or the lease
      could not be renewed in time: back to PENDING at once (not the task's fault; if someone took
      the task over meanwhile, the queue refuses this record as stale);
    - timed out: FAILED without retry (it would most likely time out again, a whole timeout of GPU each);
    - the callback failed: PENDING after a backoff while attempts remain, unless it would repeat;
    - the callback returned: DONE with its result made storable; a result over the limit fails the task.
    `detail` says more about a stop (e.g. the signal that stopped the worker).
    """
    notes: list[str] = []
    base = dict(task_id=task.id, lease_id=lease_id, gpu_seconds=round(seconds, 3), cost_usd=round(cost_usd, 6))
    if stop in (StopReason.CANCELLED, StopReason.LEASE_LOST):
        return Outcome(status=None, stop=stop, log=tail(log), **base)
    if stop in (StopReason.WORKER_STOPPED, StopReason.WRONG_HARDWARE, StopReason.LEASE_EXPIRED):
        why = {StopReason.WORKER_STOPPED: "interrupted: the worker was stopped",
               StopReason.WRONG_HARDWARE: "interrupted: this machine is not on the task's hardware",
               StopReason.LEASE_EXPIRED: "interrupted: its lease could not be renewed in time"}[stop]
        why += f" ({detail})" if detail else ""
        return Outcome(status=Status.PENDING, error=clip(why, MAX_ERROR_CHARS), retry_delay_s=0.0,
                       stop=stop, log=tail(log), **base)
    if stop is StopReason.TIMED_OUT:
        return Outcome(status=Status.FAILED, error=f"timed out after {task.timeout_s}s (timeout_s)",
                       stop=stop, log=tail(log), **base)
    if not run.ok:
        error = clip(redact(run.error or "the callback failed"), MAX_ERROR_CHARS)
        status = Status.PENDING if run.retry else Status.FAILED
        return Outcome(status=status, error=error, retry_delay_s=retry_delay_s, log=tail(log), **base)
    result = storable(dict(run.result or {}), "result", notes)
    size = len(json.dumps(result, ensure_ascii=False, sort_keys=True).encode("utf-8"))
    if size > MAX_RESULT_BYTES:
        error = (f"the result is {size:,} bytes of JSON; tasks.csv stores at most {MAX_RESULT_BYTES:,} "
                 f"(push large outputs to a repo and return its id)")
        return Outcome(status=Status.FAILED, error=error, log=tail(_with_notes(log, notes)),
                       notes=tuple(notes), **base)
    return Outcome(status=Status.DONE, result=result or None, log=tail(_with_notes(log, notes)),
                   notes=tuple(notes), **base)


def _with_notes(log: str, notes: list[str]) -> str:
    return log + "".join(f"\nnote: {n}" for n in notes) if notes else log
