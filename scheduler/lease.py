"""Leases: who holds a RUNNING task, until when, and under which fencing token. The rules live here once.

A claim writes three cells: `worker` (the holder, `HOME#BOOT`), `lease_until` (in the Hub's time)
and `lease_id` (a fresh fencing token). Every later write about that run (heartbeat, outcome, usage)
names the lease id and is refused once it is stale: a cancel, a requeue or another claim makes it
stale. The holder's *name* never proves ownership; it only tells a new boot of the same home (a Space
that restarted, a worker restarted on the same machine) that the run it finds belongs to its
predecessor, which is gone.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import datetime

from .tasks import Status, Task

# A claim's lease covers the task's whole timeout plus this margin when nobody heartbeats it
# (a worker inside its own Space): the Space's restart is the only way that worker disappears,
# and the next boot recognises its predecessor's leases.
SPACE_LEASE_MARGIN_S = 600.0
# Remote and multi-worker setups renew their leases this often by default (one commit per renewal).
DEFAULT_HEARTBEAT_S = 600.0
# ...and their lease outlives a commit-quota refusal: the Hub says "retry in about 1 hour", during
# which nobody can write, so a lease shorter than an hour plus a heartbeat would expire unrenewed.
COMMIT_QUOTA_WINDOW_S = 3600.0


def new_lease_id() -> str:
    """A fresh fencing token: 16 random hex characters."""
    return secrets.token_hex(8)


def new_boot_id() -> str:
    """Names this incarnation of a worker: the process id (for people) and randomness (for uniqueness)."""
    return f"{os.getpid()}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Holder:
    """`home` survives restarts (the Space id, or host:work-dir); `boot` names one incarnation."""

    home: str
    boot: str

    def __str__(self) -> str:
        return f"{self.home}#{self.boot}"

    @classmethod
    def parse(cls, value: str) -> "Holder | None":
        home, sep, boot = (value or "").rpartition("#")
        return cls(home, boot) if sep and home and boot else None


def run_may_continue(task: Task, now: datetime) -> bool:
    """A cancelled task (maybe requeued since) whose run has not reported that it stopped yet: the
    page says "stopping", and the task is not run again before that run stops or its lease ends."""
    return (task.status in (Status.CANCELLED, Status.PENDING) and bool(task.lease_id)
            and task.lease_until is not None and task.lease_until > now)


def is_predecessor(task: Task, holder: Holder) -> bool:
    """RUNNING under another boot of the same home: a predecessor of `holder` held it."""
    other = Holder.parse(task.worker)
    return (task.status is Status.RUNNING and other is not None and other.home == holder.home
            and other.boot != holder.boot)


def heartbeat_lease_s(heartbeat_s: float) -> float:
    """The lease of a worker that renews every `heartbeat_s`: it survives one commit-quota window."""
    return heartbeat_s + COMMIT_QUOTA_WINDOW_S + 300.0
