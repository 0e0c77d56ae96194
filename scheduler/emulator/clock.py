"""The emulator's clock: wall time plus an offset that tests move forward.

Everything the Hub would judge by its own clock reads this one: the `Date` header of every answer,
commit times, Space inactivity (sleep), the request-quota windows, the commit-quota window and the
webhook trigger window. Boot delays, stop grace periods and Job timeouts stay in real time: they
are how long the emulator's threads and child processes wait, not what the Hub reports.

The offset is kept in `<data>/clock.json`, so a restarted emulator never answers with a `Date` or
commit time earlier than one it already gave.
"""

from __future__ import annotations

import threading
import time
from email.utils import formatdate
from pathlib import Path
from typing import Callable

from .storage import atomic_write_json, read_json


class Clock:
    """`now()` in epoch seconds (float) = `time.time()` + the offset accumulated by `advance()`."""

    def __init__(self, data_dir: Path | None = None, fsync: bool = True):
        self._path = Path(data_dir) / "clock.json" if data_dir is not None else None
        self._fsync = fsync
        self._lock = threading.Lock()
        self._offset = float((read_json(self._path, {}) or {}).get("offset_s", 0.0)) if self._path else 0.0
        self._listeners: list[Callable[[float], None]] = []

    @property
    def offset_s(self) -> float:
        return self._offset

    def now(self) -> float:
        return time.time() + self._offset

    def http_date(self) -> str:
        """`now()` as an HTTP date (RFC 9110 IMF-fixdate, whole seconds), for the `Date` header."""
        return formatdate(self.now(), usegmt=True)

    def on_advance(self, listener: Callable[[float], None]) -> None:
        """Call `listener(now)` after every `advance()` (the Space manager checks for sleep there)."""
        self._listeners.append(listener)

    def advance(self, seconds: float) -> float:
        """Move the clock forward by `seconds` (>= 0) and return the new `now()`.

        Raises ValueError for a negative or non-finite step: the Hub's clock never goes back.
        """
        seconds = float(seconds)
        if not seconds >= 0 or seconds == float("inf"):
            raise ValueError(f"advance_s must be a finite number >= 0, got {seconds}")
        with self._lock:
            self._offset += seconds
            if self._path is not None:
                atomic_write_json(self._path, {"offset_s": self._offset}, self._fsync)
        now = self.now()
        for listener in list(self._listeners):
            listener(now)
        return now
