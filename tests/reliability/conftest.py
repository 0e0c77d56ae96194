"""Shared pieces of the reliability suite: sizes, a Hub emulator in its own process, helpers.

CI sizes keep the whole suite within a few minutes on two shared cores; `SCHEDULER_STRESS=full`
runs the sizes RELIABILITY.md reports (and `bench/soak.py` the 1,000-task soak).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, child_env, wait_for  # noqa: F401 (used by this package's tests)

ACTORS = str(Path(__file__).with_name("actors.py"))
FULL = os.environ.get("SCHEDULER_STRESS") == "full"
TOKEN = "hf_reliabilityToken0123456789"


def spawn_actor(*args: str, log: Path | None = None, **env: str) -> subprocess.Popen:
    """`python actors.py ROLE ...` (see actors.py); one JSON line per acknowledged operation on stdout,
    or in `log` when the test must watch it while the process runs."""
    out = open(log, "w") if log is not None else subprocess.PIPE
    try:
        return subprocess.Popen([sys.executable, ACTORS, *map(str, args)], stdout=out,
                                stderr=subprocess.PIPE, text=True, env=child_env(**env))
    finally:
        if log is not None:
            out.close()


def acked_in(log: Path) -> int:
    try:
        return sum(1 for e in json_lines(log.read_text()) if e.get("ok"))
    except OSError:
        return 0


def json_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a line cut short by SIGKILL
    return out


def emulator_stats(url: str) -> dict:
    import httpx

    return httpx.get(f"{url}/_emulator/stats", timeout=10).json()


@pytest.fixture
def hub_process(tmp_path):
    """An emulator as a child process (so it can be stopped, SIGKILLed and restarted on the same data)."""
    from scheduler.emulator.server import spawn_emulator

    handle = spawn_emulator(tmp_path / "hub", boot_delay=0.2, stop_grace=2.0)
    try:
        yield handle
    finally:
        handle.kill()
