"""Runs a Space's app as child processes, the way the Hub runs its containers.

The Space runtime (spaces.py) decides when a replica starts and stops; this module only owns the
processes: start with the Space's environment, stop with SIGTERM then SIGKILL after a grace
period, append stdout/stderr to one log file per Space, and report exits it did not cause.

A child is keyed by its replica, `"<space id>#<n>"`: during a hardware switch two replicas of one
Space run at once. Helpers that take a bare Space id (`pid`, `running`, `stop`) act on that
Space's newest replica (`pid`, `running`) or on all of them (`stop`).
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

    def keys(self, name: str) -> list[str]:
        """`name` itself if it is a replica key, else the keys of that Space's replicas, oldest first."""
        with self._lock:
            if "#" in name:
                return [name] if name in self._children else []
            return sorted((k for k in self._children if k.rpartition("#")[0] == name),
                          key=lambda k: int(k.rpartition("#")[2]))

    def _newest(self, name: str) -> Child | None:
        keys = self.keys(name)
        return self._children.get(keys[-1]) if keys else None

    def running(self, name: str) -> bool:
        child = self._newest(name)
        return child is not None and child.popen.poll() is None

    def pid(self, name: str) -> int | None:
        """The pid of that replica, or of the Space's newest replica; None when it is not running."""
        child = self._newest(name)
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
        pid_file = log_path.with_name(f"{log_path.stem}.{key.rpartition('#')[2] or '0'}.pid")
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

    def stop(self, name: str, grace: float = 5.0) -> int | None:
        """SIGTERM the process group of that replica (or of every replica of that Space), SIGKILL
        after `grace` seconds; returns the exit code of the last one stopped."""
        code = None
        for key in self.keys(name):
            with self._lock:
                child = self._children.pop(key, None)
            if child is None:
                continue
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


def reap_orphans(log_path: Path, space_id: str) -> None:
    """Kill the process groups recorded next to `log_path` that still run this Space's app."""
    for pid_file in log_path.parent.glob(f"{log_path.stem}.*pid"):
        reap_orphan(pid_file, space_id)


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
