"""Runs a Space's app as a child process, the way the Hub runs its container.

The Space runtime (spaces.py) decides when a child starts and stops; this module only owns the
processes: start with the Space's environment, stop with SIGTERM then SIGKILL after a grace
period, append stdout/stderr to one log file per Space, and report exits it did not cause.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# Variables the Hub never puts in a Space container unless the owner adds them as secrets.
_STRIPPED_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_API_TOKEN")


@dataclass
class Child:
    key: str
    popen: subprocess.Popen
    token: int
    pid_file: Path
    stopping: bool = False


class Supervisor:
    def __init__(self, on_exit: Callable[[str, int, int], None]):
        self._on_exit = on_exit
        self._children: dict[str, Child] = {}
        self._lock = threading.Lock()
        self._tokens = 0

    def running(self, key: str) -> bool:
        child = self._children.get(key)
        return child is not None and child.popen.poll() is None

    def pid(self, key: str) -> int | None:
        child = self._children.get(key)
        return child.popen.pid if child and child.popen.poll() is None else None

    def start(self, key: str, command: list[str], cwd: str | os.PathLike, env: dict[str, str],
              log_path: Path) -> int:
        """Start the child for `key` (stopping any previous one first); returns a token for exit reports."""
        self.stop(key)
        full_env = {k: v for k, v in os.environ.items() if k not in _STRIPPED_ENV}
        full_env.update({k: str(v) for k, v in env.items()})
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            log.write(f"===== Application Startup at {time.strftime('%Y-%m-%d %H:%M:%S')} =====\n".encode())
            log.flush()
            popen = subprocess.Popen(
                list(command), cwd=str(cwd), env=full_env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        # The pid file lets the next emulator start stop an app orphaned by a SIGKILL of this one.
        pid_file = log_path.with_suffix(".pid")
        pid_file.write_text(str(popen.pid))
        with self._lock:
            self._tokens += 1
            child = Child(key, popen, self._tokens, pid_file)
            self._children[key] = child
        threading.Thread(target=self._watch, args=(child,), daemon=True, name=f"watch-{key}").start()
        return child.token

    def _watch(self, child: Child) -> None:
        code = child.popen.wait()
        if not child.stopping:
            try:
                self._on_exit(child.key, child.token, code)
            except Exception:  # a report about a dead child must never kill the watcher loop
                pass

    def stop(self, key: str, grace: float = 5.0) -> int | None:
        """SIGTERM the child's process group, SIGKILL after `grace` seconds; returns its exit code."""
        with self._lock:
            child = self._children.pop(key, None)
        if child is None:
            return None
        child.stopping = True
        code = _terminate(child.popen, grace)
        child.pid_file.unlink(missing_ok=True)
        return code

    def stop_all(self, grace: float = 5.0) -> None:
        with self._lock:
            keys = list(self._children)
        threads = [threading.Thread(target=self.stop, args=(k, grace)) for k in keys]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def reap_orphan(pid_file: Path, space_id: str) -> None:
    """Kill the process group recorded in `pid_file` if it still runs this Space's app."""
    try:
        pid = int(pid_file.read_text())
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except (OSError, ValueError):
        pid_file.unlink(missing_ok=True)
        return
    if b"\0SPACE_ID=" + space_id.encode() + b"\0" in b"\0" + environ + b"\0":
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    pid_file.unlink(missing_ok=True)


def _terminate(popen: subprocess.Popen, grace: float) -> int | None:
    if popen.poll() is not None:
        return popen.returncode
    try:
        os.killpg(popen.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        popen.terminate()
    try:
        return popen.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            popen.kill()
        return popen.wait()
