"""The outcome journal: each run's outcome is written to the work dir before it is recorded in the
queue, and removed once the queue has it (or refuses it as stale).

A worker replays the journal when it starts and never claims while it holds an unrecorded outcome,
so a Hub outage, a commit quota or a restart of the worker between the end of a run and its record
never makes the task run again. One JSON file per run (`journal/<task id>.<lease id>.json`), written
atomically, so a crash mid-write leaves the previous state.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .callbacks import write_json_atomic
from .outcome import Outcome


class Journal:
    """Unrecorded outcomes under `work_dir/journal/`."""

    def __init__(self, work_dir: str | os.PathLike):
        self.dir = Path(work_dir) / "journal"
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, outcome: Outcome) -> Path:
        return self.dir / f"{outcome.task_id}.{outcome.lease_id}.json"

    def put(self, outcome: Outcome) -> None:
        write_json_atomic(self._path(outcome), outcome.to_json())

    def remove(self, outcome: Outcome) -> None:
        self._path(outcome).unlink(missing_ok=True)

    def pending(self) -> list[Outcome]:
        """Unrecorded outcomes, oldest first. An unreadable entry (a disk error) is kept aside, not lost."""
        out: list[tuple[float, Outcome]] = []
        for path in self.dir.glob("*.json"):
            try:
                out.append((path.stat().st_mtime, Outcome.from_json(json.loads(path.read_text(encoding="utf-8")))))
            except FileNotFoundError:
                continue  # recorded and removed meanwhile
            except (OSError, ValueError, KeyError):
                path.replace(path.with_suffix(".unreadable"))
        return [o for _, o in sorted(out, key=lambda item: item[0])]

    def holds(self, task_id: str) -> bool:
        return any(self.dir.glob(f"{task_id}.*.json"))
