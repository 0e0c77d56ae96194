"""Every shell example of the README, run as written against the emulator.

The README's ```bash blocks run in order, each line through bash in one working folder, with
HF_ENDPOINT pointing at the emulator and HF_TOKEN one of its tokens (its user `demo`). What a
reader substitutes is substituted: OWNER is that user and TASK_ID the id the block's first `add`
printed; `export` lines carry over to the next lines. The Space the worker drives is the one
`deploy` (further down) makes, so it is created first; `OWNER/my-dataset` holds a small CSV.
Commands that serve until stopped (the demo, the emulator, a worker without --until-idle) must
come up, then stop cleanly on Ctrl-C. A line that cannot run here is skipped with its reason
(`SKIPPED`), and a README line this test does not know fails it, so a new example gets run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from scheduler.commands.demo_cmd import reviews_csv
from tests.app.conftest import sigint_restored
from tests.conftest import TEST_TOKEN
from tests.support import ROOT, child_env

README = ROOT / "README.md"
USER = "demo"  # what the emulator calls the owner of any token
# Lines (or the part of a `a && b` line) that cannot run here, and why.
SKIPPED = {
    "pip install -e .": "installs this package; the test runs from the installed checkout",
    "pip install -e '.[dev]'": "installs this package with its test extras; the test runs from them",
    "python -m pytest -q": "runs this test suite, which would run this test again",
    "hf auth login": "signs in to huggingface.co (no internet here); against the emulator HF_TOKEN is the login",
    "space-scheduler demo --submit 3 --until-idle": "run with these flags by tests/app/test_demo.py, with each recipe",
}
# Commands that serve until Ctrl-C: what they print (or answer) once they are up.
SERVERS = {
    "space-scheduler demo": re.compile(r"Space is up: (http://\S+)"),
    "space-scheduler emulator": re.compile(r"Hub emulator on http://"),
    "space-scheduler worker": re.compile(r"worker: \S+ \(\w+ executor\) on "),
}
UP_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0


def shell_blocks(text: str) -> list[list[str]]:
    """The lines of each ```bash block, in README order; a line ending in `\\` goes on (as in bash)."""
    return [[line for line in re.sub(r"\\\n\s*", " ", block).splitlines() if line.strip()]
            for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M)]


def commands(line: str) -> list[str]:
    """`a && b` is two commands, each run (or skipped) on its own; bash drops the comment itself."""
    return [part.strip() for part in re.split(r"\s&&\s", line)]


def skip_reason(command: str) -> str | None:
    return next((why for prefix, why in SKIPPED.items() if command.startswith(prefix)), None)


def server_pattern(command: str) -> re.Pattern | None:
    if "--until-idle" in command:
        return None
    return next((pattern for prefix, pattern in SERVERS.items() if command.startswith(prefix)), None)


def test_every_readme_line_is_run_or_skipped_with_a_reason():
    lines = [cmd for block in shell_blocks(README.read_text()) for line in block for cmd in commands(line)]
    assert lines, "no ```bash block in the README"
    unknown = [cmd for cmd in lines if not (skip_reason(cmd) or cmd.startswith(("space-scheduler", "export ", "printf ")))]
    assert not unknown, f"README commands this test does not know how to run: {unknown}"


@pytest.mark.parametrize("command, reason", [(c, r) for c, r in SKIPPED.items()])
def test_a_readme_line_that_cannot_run_here(command, reason):
    assert any(command in line for block in shell_blocks(README.read_text()) for line in block), command
    pytest.skip(reason)


class Session:
    """One reader going through the README: a folder, an environment and what earlier lines printed."""

    def __init__(self, emulator, folder: Path):
        self.folder = folder
        self.env = child_env(HF_ENDPOINT=emulator.url, HF_TOKEN=TEST_TOKEN, HF_HOME=str(folder / ".hf-home"),
                             SCHEDULER_LOCK_DIR=str(folder / ".locks"))
        for name in ("SCHEDULER_QUEUE", "SPACE_ID", "SCHEDULER_SPACE"):
            self.env.pop(name, None)
        # The reader's shell finds the installed `space-scheduler` next to this Python.
        self.env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), self.env.get("PATH", "")])
        self.task_id: str | None = None
        self.ran: list[str] = []

    def substitute(self, command: str) -> str:
        command = re.sub(r"\bOWNER\b", USER, command)
        if "TASK_ID" in command:
            assert self.task_id, f"{command!r} needs a task id, and no `add` printed one before it"
            command = command.replace("TASK_ID", self.task_id)
        return command

    def run(self, written: str) -> None:
        started = time.monotonic()
        self._run(written)
        print(f"{time.monotonic() - started:6.1f}s  {written}")

    def _run(self, written: str) -> None:
        if skip_reason(written):
            return
        command = self.substitute(written)
        if command.startswith("export "):
            name, _, value = command[len("export "):].split("#", 1)[0].strip().partition("=")
            self.env[name] = value
            return
        pattern = server_pattern(command)
        if pattern is not None:
            self.serve(command, pattern)
        else:
            done = subprocess.run(["bash", "-c", command], cwd=self.folder, env=self.env, capture_output=True,
                                  text=True, timeout=600)
            assert done.returncode == 0, f"{written}\n{done.stdout}\n{done.stderr}"
            assert TEST_TOKEN not in done.stdout + done.stderr
            found = re.match(r"(\w{26}) PENDING ", done.stdout)
            if found and self.task_id is None:
                self.task_id = found.group(1)
        self.ran.append(written)

    def serve(self, command: str, pattern: re.Pattern) -> None:
        """Start, wait until it is up (an URL it prints must answer), Ctrl-C, a clean exit."""
        proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=self.folder, env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=sigint_restored)
        out: list[str] = []
        try:
            deadline = time.monotonic() + UP_TIMEOUT_S
            while True:
                line = proc.stdout.readline()
                out.append(line)
                found = pattern.search(line)
                if found:
                    break
                assert line or proc.poll() is None, f"{command} ended before it was up:\n{''.join(out)}"
                assert time.monotonic() < deadline, f"{command} was not up in {UP_TIMEOUT_S:.0f}s:\n{''.join(out)}"
            if found.groups():
                assert httpx.get(found.group(1), timeout=10).status_code == 200, found.group(1)
            port = re.search(r"--port (\d+)", command)
            if command.startswith("space-scheduler emulator") and port:
                health = f"http://127.0.0.1:{port.group(1)}/_emulator/health"
                assert httpx.get(health, timeout=10).status_code == 200
            proc.send_signal(signal.SIGINT)
            rest, _ = proc.communicate(timeout=STOP_TIMEOUT_S)
            out.append(rest)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # 130 is the shell's code for a command ended by Ctrl-C; a traceback is not a clean stop.
        assert proc.returncode in (0, 130) and "Traceback" not in "".join(out), f"{command} after Ctrl-C:\n{''.join(out)}"
        assert TEST_TOKEN not in "".join(out)


def test_every_shell_example_of_the_readme_runs_as_written(emulator, hf_api, tmp_path):
    folder = tmp_path / "reader"
    folder.mkdir()
    (folder / "space_app").symlink_to(ROOT / "space_app")  # the examples run from a checkout
    hf_api.create_repo(f"{USER}/my-scheduler", repo_type="space", space_sdk="gradio")
    hf_api.create_repo(f"{USER}/my-dataset", repo_type="dataset")
    hf_api.upload_file(path_or_fileobj=reviews_csv(), path_in_repo="train.csv", repo_id=f"{USER}/my-dataset",
                       repo_type="dataset")
    session = Session(emulator, folder)
    for block in shell_blocks(README.read_text()):
        for line in block:
            for command in commands(line):
                session.run(command)
    assert any(c.startswith("space-scheduler deploy") for c in session.ran)
    # What the examples did is there: the queue the reader made, and the local worker's task DONE.
    from scheduler.queue import TaskQueue

    hub_queue = TaskQueue.open(f"hf://datasets/{USER}/my-queue", token=TEST_TOKEN, endpoint=emulator.url)
    assert {t.model_id for t in hub_queue.list()} == {"openai-community/gpt2", "Qwen/Qwen2.5-0.5B"}
    [local] = TaskQueue.open(str(folder / "queue")).list()
    assert local.status.value == "DONE", local
