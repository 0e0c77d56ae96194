"""What the benchmark scripts that drive the emulated Space share: this checkout importable, the Hub
client quiet and offline, and polling with a deadline.

Scripts import it as `harness` (it sits next to them, on sys.path[0]) and call `offline_env()`
before importing the scheduler.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def offline_env() -> None:
    # bench/queue.py would shadow the standard library's `queue` (anyio imports it), so bench/ leaves
    # sys.path and the checkout takes its place.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
    os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="bench-hf-home-"))
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def child_pythonpath() -> str:
    """PYTHONPATH for a child process (a supervised Space app) that must import this checkout."""
    return os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)


def wait_until(predicate, timeout: float = 120.0, what: str = "a condition", every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def settled(api, space: str, flavor: str = "cpu-basic") -> bool:
    """The Space runs on `flavor` with nothing else requested."""
    rt = api.get_space_runtime(space)
    return rt.hardware == flavor and rt.requested_hardware == flavor and rt.stage == "RUNNING"
