"""Ending every process a run started, however it was started.

A callback runs in its own session (so its process group is its own), with a marker in its
environment that every descendant inherits. Ending a run kills, until none is left:
- its process group (torchrun / accelerate workers, DataLoader workers, shell pipelines);
- every process whose environment carries the run's marker (a daemon that called setsid() or
  double-forked out of the group);
- every descendant of those (a child that cleared its environment but stayed in the tree).
Linux `/proc` is read for the last two; elsewhere the process group alone is ended.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

MARKER_ENV = "SCHEDULER_RUN_MARKER"


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, process group) from /proc/PID/stat, None if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is parenthesised and may contain spaces or parentheses.
    fields = stat[stat.rfind(")") + 2:].split()
    try:
        return fields[0], int(fields[1]), int(fields[2])
    except (IndexError, ValueError):
        return None


def _environ_has(pid: int, needle: bytes) -> bool:
    try:
        return needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def members(pgid: int | None, marker: str | None) -> set[int]:
    """Live processes of the run: its group, its marked processes, and all their descendants.
    Zombies (dead, waiting to be reaped by their parent) are not counted."""
    me = os.getpid()
    try:
        pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    except OSError:
        return set()
    stats = {pid: st for pid in pids if pid != me and (st := _stat(pid)) is not None and st[0] not in ("Z", "X")}
    needle = f"{MARKER_ENV}={marker}".encode() if marker else None
    found = {pid for pid, (_, _, group) in stats.items()
             if (pgid is not None and group == pgid) or (needle is not None and _environ_has(pid, needle))}
    grew = True
    while grew:
        grew = False
        for pid, (_, parent, _) in stats.items():
            if pid not in found and parent in found:
                found.add(pid)
                grew = True
    return found


def kill_tree(pgid: int | None, marker: str | None, *, rounds: int = 5) -> int:
    """SIGKILL every process of the run (see `members`), again until none is left or `rounds` pass
    (a process may fork while we kill). Returns how many processes were signalled."""
    signalled = 0
    for _ in range(rounds):
        if pgid is not None:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        alive = members(pgid, marker)
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
                signalled += 1
            except (ProcessLookupError, PermissionError):
                pass
        if not alive:
            break
        time.sleep(0.05)
    return signalled


def process_started_at(pid: int | None = None) -> float | None:
    """When a process (default: this one) started, in seconds since the epoch (this machine's clock),
    from /proc; None where /proc cannot tell."""
    try:
        stat = Path(f"/proc/{pid or os.getpid()}/stat").read_text()
        ticks = int(stat[stat.rfind(")") + 2:].split()[19])
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None
