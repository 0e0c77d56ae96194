"""The user's training callback: loading it, the context it gets, and the process it runs in.

A callback is `def train(task, ctx) -> dict | None`, named `module:function` or
`path/to/file.py:function` (`--callback` or `SCHEDULER_CALLBACK`).

It runs in a child process (`python -m scheduler.callbacks SPEC`), not a thread, because a
Python thread cannot be killed: a callback stuck in a CUDA kernel or a blocking read, or one that
ignores `should_stop()`, would otherwise keep a paid GPU busy forever. A process can be killed
after a grace period, and a crash inside it (segfault, OOM kill) does not take the worker down.

Files, under the work dir, all written through `redact()`:
- `logs/<task_id>.log`: everything the callback logs or prints, rotated (see TaskLog);
- `progress/<task_id>.json`: the last `ctx.progress()`;
- `outputs/<task_id>/`: `ctx.output_dir`, the callback's scratch space.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import UserError
from .outcome import RunResult
from .proctree import MARKER_ENV, kill_tree
from .redact import redact
from .tasks import COLUMNS, Task

Callback = Callable[[Task, "RunContext"], "dict | None"]
ENV_CALLBACK = "SCHEDULER_CALLBACK"
ENV_WORK_DIR = "SCHEDULER_WORK_DIR"
LOG_MAX_BYTES = 1_000_000
LOG_BACKUPS = 2
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


# ---------------------------------------------------------------- where things are written


def default_work_dir() -> Path:
    """`SCHEDULER_WORK_DIR`, else the Space's persistent storage (`/data`) when it has some, else a
    cache folder. The app and the worker must agree on it, hence one function."""
    configured = os.environ.get(ENV_WORK_DIR)
    if configured:
        return Path(configured)
    data = Path("/data")
    if data.is_dir() and os.access(data, os.W_OK):
        return data / "space-scheduler"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "space-scheduler"


@dataclass(frozen=True)
class TaskFiles:
    work_dir: Path
    task_id: str

    @property
    def log(self) -> Path:
        return self.work_dir / "logs" / f"{self.task_id}.log"

    @property
    def progress(self) -> Path:
        return self.work_dir / "progress" / f"{self.task_id}.json"

    @property
    def output_dir(self) -> Path:
        return self.work_dir / "outputs" / self.task_id

    @property
    def run_dir(self) -> Path:
        return self.work_dir / "run" / self.task_id


class TaskLog:
    """One task's log. A single writer per task (the worker, which relays the child's output), so
    rotation needs no lock shared between processes."""

    def __init__(self, path: Path, max_bytes: int = LOG_MAX_BYTES, backups: int = LOG_BACKUPS):
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        lines = redact(str(message)).rstrip("\n").splitlines() or [""]
        text = "".join(f"{stamp} {line}\n" for line in lines)
        with self._lock:
            try:
                if self.path.exists() and self.path.stat().st_size + len(text) > self.max_bytes:
                    self._rotate()
                with open(self.path, "a", encoding="utf-8", errors="replace") as f:
                    f.write(text)
            except OSError:
                pass  # a full disk must not turn a finished training into a failed task

    def _rotate(self) -> None:
        for i in range(self.backups, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            newer = self.path.with_name(f"{self.path.name}.{i - 1}") if i > 1 else self.path
            if newer.exists():
                os.replace(newer, older)


def tail_log(task_id: str, n: int = 50, work_dir: str | os.PathLike | None = None) -> list[str]:
    """The last `n` lines of a task's log (across one rotation), for the app."""
    path = TaskFiles(Path(work_dir) if work_dir else default_work_dir(), task_id).log
    lines: list[str] = []
    for candidate in (path, path.with_name(path.name + ".1")):
        try:
            chunk = candidate.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        lines = chunk + lines
        if len(lines) >= n:
            break
    return lines[-n:] if n > 0 else []


def read_progress(task_id: str, work_dir: str | os.PathLike | None = None) -> dict | None:
    path = TaskFiles(Path(work_dir) if work_dir else default_work_dir(), task_id).progress
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, default=_jsonable, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    """numpy / torch scalars and arrays as plain numbers and lists; anything else as its str()."""
    for name in ("tolist", "item"):
        method = getattr(value, name, None)
        if callable(method):
            try:
                return method()
            except (TypeError, ValueError, RuntimeError):
                continue
    return str(value)


# ---------------------------------------------------------------- loading


def resolve_spec(spec: str | None) -> str:
    spec = spec or os.environ.get(ENV_CALLBACK)
    if spec:
        return spec
    if Path("train.py").is_file():
        return "train.py:train"
    raise UserError(f"no training callback: pass --callback module:function or set {ENV_CALLBACK}")


def load_callback(spec: str) -> Callback:
    """`package.module:function` or `path/to/file.py:function`."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise UserError(f"callback {spec!r} must look like module:function or path/to/file.py:function")
    if target.endswith(".py") or os.sep in target or "/" in target:
        path = Path(target).resolve()
        if not path.is_file():
            raise UserError(f"callback file {target!r} does not exist")
        # Sibling imports in the user's file work as they would when run as a script.
        sys.path.insert(0, str(path.parent))
        module_name = f"_scheduler_callback_{path.stem}"
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module
        loader_spec.loader.exec_module(module)
    else:
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            raise UserError(f"callback module {target!r} cannot be imported: {exc}") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise UserError(f"callback {spec!r}: {target} has no function {name!r}")
    return function


# ---------------------------------------------------------------- inside the child


class RunContext:
    """What a callback gets besides its task."""

    def __init__(self, task: Task, files: TaskFiles, *, emit: Callable[[str], None],
                 should_stop: Callable[[], bool], token: str | None = None, endpoint: str | None = None):
        self.task = task
        self.files = files
        self.output_dir = files.output_dir
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._emit = emit
        self._should_stop = should_stop
        self._token = token
        self._endpoint = endpoint
        self._api = None

    @property
    def api(self):
        """An HfApi with the Space's token (never printed)."""
        if self._api is None:
            from huggingface_hub import HfApi

            from .hub import ensure_http_timeout

            ensure_http_timeout()
            self._api = HfApi(token=self._token, endpoint=self._endpoint)
        return self._api

    def log(self, message: str) -> None:
        self._emit(redact(str(message)))

    def progress(self, fraction: float, message: str = "") -> None:
        fraction = min(1.0, max(0.0, float(fraction)))
        message = redact(str(message))
        write_json_atomic(self.files.progress, {"task_id": self.task.id, "fraction": fraction,
                                                "message": message, "time": time.time()})
        self._emit(f"progress {fraction:.0%} {message}".rstrip())

    def should_stop(self) -> bool:
        """True once the task is cancelled, timed out or the worker is stopping: return soon."""
        return self._should_stop()


def describe_exception(exc: BaseException) -> str:
    """The exception and where it was raised; never the traceback's locals, which may hold secrets."""
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        where = f" (at {Path(last.filename).name}:{last.lineno} in {last.name})"
    return redact(f"{type(exc).__name__}: {exc}{where}")


def classify_exception(exc: BaseException) -> bool:
    """Whether a failure is worth another attempt. False for what would fail again the same way: a
    NonRetryable, a bad input (UserError), a repo, revision or file the Hub says does not exist, a
    gated repo, an authentication or permission refusal, a missing token, and an out-of-memory on this
    hardware (the same batch on the same GPU runs out again), a request the Hub refuses as malformed or
    unpaid (400, 402, 422)."""
    from .errors import NonRetryable, UserError

    if isinstance(exc, (NonRetryable, UserError)):
        return False
    names = {cls.__name__ for cls in type(exc).__mro__}
    permanent = {"RepositoryNotFoundError", "RevisionNotFoundError", "EntryNotFoundError", "RemoteEntryNotFoundError",
                 "GatedRepoError", "DisabledRepoError", "LocalTokenNotFoundError", "DatasetNotFoundError",
                 "OutOfMemoryError"}
    if names & permanent:
        return False
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status not in (400, 401, 402, 403, 404, 422)


def _child_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    files = TaskFiles(Path(spec["work_dir"]), spec["task"]["id"])
    stop_file = Path(spec["stop_file"])
    result_file = Path(spec["result_file"])
    parent = int(spec["parent_pid"])

    def orphaned() -> bool:
        return os.getppid() != parent

    def watchdog() -> None:
        # A worker that died (SIGKILL, OOM) records nothing, and its task will run again elsewhere:
        # carrying on would only burn GPU time and race the next attempt's upload. Everything this
        # run started goes with it.
        while not orphaned():
            time.sleep(0.5)
        kill_tree(os.getpgrp(), os.environ.get(MARKER_ENV))
        os._exit(70)

    threading.Thread(target=watchdog, daemon=True).start()

    def emit(line: str) -> None:
        sys.stdout.write(line.rstrip("\n") + "\n")
        sys.stdout.flush()

    outcome: dict[str, Any]
    try:
        task = Task.from_cells(spec["task"])
        callback = load_callback(spec["callback"])
        ctx = RunContext(task, files, emit=emit, should_stop=lambda: stop_file.exists() or orphaned(),
                         token=os.environ.get("HF_TOKEN") or None, endpoint=spec.get("endpoint"))
        result = callback(task, ctx)
        if result is not None and not isinstance(result, dict):
            raise TypeError(f"the callback returned {type(result).__name__}; expected a dict or None")
        # The result goes into tasks.csv, which more people read than the Space's token should reach.
        outcome = {"ok": True, "result": json.loads(redact(json.dumps(result or {}, default=_jsonable)))}
    except BaseException as exc:  # noqa: BLE001 - SystemExit/KeyboardInterrupt are failures too
        outcome = {"ok": False, "error": describe_exception(exc), "retry": classify_exception(exc)}
        emit(outcome["error"])
    write_json_atomic(result_file, outcome)
    sys.stdout.flush()
    # Not a plain return: non-daemon threads the callback left behind would keep the process (and
    # the task) alive after its result is in.
    os._exit(0)


# ---------------------------------------------------------------- the worker's side


class CallbackProcess:
    """One callback run in a child process, its output relayed into the task's log.

    The child leads its own session: stopping the run ends its whole process tree (see proctree),
    and a signal meant for the worker (the Hub's SIGTERM, Ctrl-C) reaches the worker first, which
    then stops the run itself and records why."""

    def __init__(self, spec: str, task: Task, work_dir: Path, *, token: str | None, endpoint: str | None,
                 marker: str | None = None):
        self.files = TaskFiles(work_dir, task.id)
        self.log = TaskLog(self.files.log)
        run_dir = self.files.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.stop_file = run_dir / "stop"
        self.result_file = run_dir / "result.json"
        for stale in (self.stop_file, self.result_file):
            stale.unlink(missing_ok=True)
        spec_file = run_dir / "spec.json"
        write_json_atomic(spec_file, {
            "callback": spec, "task": dict(zip(COLUMNS, task.to_cells())), "work_dir": str(work_dir),
            "stop_file": str(self.stop_file), "result_file": str(self.result_file),
            "parent_pid": os.getpid(), "endpoint": endpoint,
        })
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        self.marker = marker or f"{task.id}-{os.getpid()}-{time.monotonic_ns()}"
        env[MARKER_ENV] = self.marker
        if token:
            env["HF_TOKEN"] = token  # by environment, never argv: argv is world-readable in `ps`
        if endpoint:
            env["HF_ENDPOINT"] = endpoint
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "scheduler.callbacks", str(spec_file)], env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.pgid = self.popen.pid  # a session leader leads its own process group
        self._relay = threading.Thread(target=self._relay_output, daemon=True, name=f"log-{task.id}")
        self._relay.start()
        self.stop_requested_at: float | None = None

    def _relay_output(self) -> None:
        for raw in iter(lambda: self.popen.stdout.readline(65536), b""):
            self.log.write(raw.decode("utf-8", errors="replace"))

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float) -> bool:
        try:
            self.popen.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def request_stop(self) -> None:
        """Ask nicely (`ctx.should_stop()` turns True); `enforce_stop` kills after the grace period."""
        if self.stop_requested_at is None:
            self.stop_requested_at = time.monotonic()
            try:
                self.stop_file.touch()
            except OSError:
                self.kill()

    def enforce_stop(self, grace_s: float) -> None:
        if self.stop_requested_at is not None and time.monotonic() - self.stop_requested_at >= grace_s:
            self.kill()

    def kill(self) -> None:
        """End the run's whole process tree, then reap the child."""
        kill_tree(self.pgid, self.marker)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def finish(self) -> RunResult:
        """After the child is gone (or to make it go): what the run came to."""
        self.kill()  # also whatever the callback left running after it returned
        # The relay ends when the pipe closes; a process that escaped with the pipe open is killed above.
        self._relay.join(timeout=5)
        code = self.popen.returncode
        try:
            outcome = json.loads(self.result_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            if code is not None and code < 0:
                try:
                    name = signal.Signals(-code).name
                except ValueError:
                    name = f"signal {-code}"
                why = f"the callback process was killed by {name}"
            else:
                why = f"the callback process exited with code {code} without a result"
            return RunResult(ok=False, error=why, exit_code=code)
        return RunResult(ok=bool(outcome.get("ok")), result=outcome.get("result"), error=outcome.get("error"),
                         retry=bool(outcome.get("retry", True)), exit_code=code)


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
