"""What both executors (`Worker` on the Space, `JobsWorker` through Hub Jobs) share: a loop run in a
server-side daemon thread, stop and wake events, SIGTERM handling and a status dict the dashboard
reads from another thread."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any, Callable

from .hub import describe
from .redact import redact


class BackgroundLoop:
    """Subclasses implement `run()`, which must return soon after `_stop` is set and release what it
    holds in its own `finally`."""

    thread_name = "space-scheduler"

    def _init_loop(self, status: dict[str, Any], say: Callable[[str], None] | None) -> None:
        self._say_to = say
        self._last_said = ""
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._stop_reason = ""
        self._thread: threading.Thread | None = None
        self._status = dict(status)
        self._status_lock = threading.Lock()

    def run(self, **kwargs) -> Any:
        raise NotImplementedError

    def start_thread(self) -> threading.Thread:
        """Run in a server-side daemon thread (a browser-side timer only ticks while a page is open)."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run_logged, daemon=True, name=self.thread_name)
            self._thread.start()
        return self._thread

    def _run_logged(self) -> None:
        """run() in the thread, started again after a pause if it ever ends on an error: a thread
        that died would leave paid hardware with nobody to give it back. A mistake in the setup
        (UserError) is not retried: it would fail the same way."""
        from .errors import UserError

        failures = 0
        while True:
            try:
                self.run()
                return
            except Exception as exc:  # the thread must leave a trace for the dashboard
                failures += 1
                self._set(state="crashed", last_error=redact(describe(exc)))
                if isinstance(exc, UserError) or self._stop.is_set():
                    return
                if self._stop.wait(min(300.0, 5.0 * 2 ** min(failures, 6))):
                    return

    def stop(self, reason: str = "stopped", wait_s: float | None = None) -> None:
        """The first reason given is the one recorded (a SIGTERM after a Ctrl-C does not rename it)."""
        if not self._stop.is_set():
            self._stop_reason = reason
            self._set(stop_reason=reason)
            self._stop.set()
            self._wake.set()
        if wait_s is not None and self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(wait_s)

    def wake(self) -> None:
        """Look at the queue now (e.g. right after a task was submitted)."""
        self._wake.set()

    def install_signal_handlers(self, exit_process: bool = False, wait_s: float = 30.0) -> None:
        """SIGTERM (the Hub restarting the Space) and SIGINT stop the loop through its `finally`.
        Only possible from the main thread. With `exit_process` (an app whose main thread is busy
        serving), the process exits once the loop's thread has released what it held."""
        def handler(signum, frame):
            self.stop(f"received {signal.Signals(signum).name}")
            if exit_process:
                def finish() -> None:
                    if self._thread is not None:
                        self._thread.join(wait_s)
                    os._exit(0)

                threading.Thread(target=finish, daemon=True).start()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, handler)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def status(self) -> dict:
        """The last decision, its reason and what is running, for the dashboard."""
        with self._status_lock:
            out = dict(self._status)
        return self._status_extras(out)

    def _status_extras(self, status: dict) -> dict:
        return status

    def _set(self, **changes: Any) -> None:
        with self._status_lock:
            self._status.update(changes)

    def _say(self, message: str) -> None:
        """One line for the Space's logs; repeated lines (a serving loop) are said once."""
        if self._say_to is not None and message != self._last_said:
            self._last_said = message
            self._say_to(redact(message))
