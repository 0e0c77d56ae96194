"""The token never shows: not in logs, errors, the CSV, API responses, CLI output or exception messages,
even when the user's callback does its best to print and raise it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scheduler.errors import SchedulerError
from scheduler.queue import TaskQueue
from scheduler.tasks import Status

from .conftest import ACTORS, child_env

CANARY = "hf_SECRETcanary7Qx2Lm9Vb4Np8Rt"
WRONG = "hf_SECRETcanaryWRONG5Kd3Hs7Jw"
URL = "hf://datasets/demo/secret-queue"


@pytest.fixture
def guarded_hub(tmp_path):
    from scheduler.emulator.server import spawn_emulator

    handle = spawn_emulator(tmp_path / "hub", boot_delay=0.2, require_token=True, users={CANARY: "demo"})
    try:
        yield handle
    finally:
        handle.kill()


def _cli(hub, *args: str, token: str = CANARY) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scheduler", *args], capture_output=True, text=True, timeout=300,
                          env=child_env(HF_ENDPOINT=hub.url, HF_TOKEN=token))


def test_a_worker_run_whose_callback_prints_and_raises_the_token_leaves_it_nowhere(guarded_hub, tmp_path):
    outputs: list[str] = []

    def run(*args: str, token: str = CANARY, ok: bool = True) -> str:
        result = _cli(guarded_hub, *args, token=token)
        text = result.stdout + result.stderr
        outputs.append(text)
        assert (result.returncode == 0) is ok, text[-2000:]
        return text

    run("init", "--queue", URL)
    run("add", "acme/model", "acme/data", "--hardware", "cpu-upgrade", "--max-attempts", "1", "--json", "--queue", URL)
    run("add", "acme/model", "acme/data", "--hardware", "cpu-upgrade", "--param", "ok=true", "--queue", URL)
    work = tmp_path / "work"
    run("worker", "--hardware", "local", "--until-idle", "--queue", URL, "--callback", f"{ACTORS}:leaky",
        "--work-dir", str(work), "--poll", "0.2", "--retry-delay", "0", "--stop-grace", "1",
        ok=False)  # exit 1: a task failed (by design: its callback raises)
    listing = run("list", "--json", "--queue", URL)
    for line in listing.splitlines():
        if line.startswith("{"):
            run("show", __import__("json").loads(line)["id"], "--queue", URL)
    # Refusals carry the server's words, never the credential that was refused.
    run("list", "--queue", URL, token=WRONG, ok=False)
    run("list", "--queue", URL, "--token", WRONG, ok=False)
    run("space", "status", "--space", "demo/not-a-space", ok=False)

    queue = TaskQueue.open(URL, token=CANARY, endpoint=guarded_hub.url)
    tasks = {t.params.get("ok", False): t for t in queue.list()}
    assert tasks[False].status is Status.FAILED and "PermissionError" in tasks[False].error
    assert tasks[True].status is Status.DONE and tasks[True].result == {"echo": "***", "nested": {"deep": ["***"]}}
    assert CANARY not in repr(queue) and CANARY not in repr(queue.store.__dict__.get("api"))
    with pytest.raises(SchedulerError) as info:
        TaskQueue.open("hf://datasets/demo/missing", token=CANARY, endpoint=guarded_hub.url).list()
    outputs += [str(info.value), repr(info.value)]
    with pytest.raises(Exception) as info:  # the client's own 401 error, passed through as is
        TaskQueue.open(URL, token=WRONG, endpoint=guarded_hub.url).list()
    outputs += [str(info.value), repr(info.value)]

    import httpx

    headers = {"Authorization": f"Bearer {CANARY}"}
    for path in ("/api/datasets/demo/secret-queue", "/api/datasets/demo/secret-queue/tree/main",
                 "/datasets/demo/secret-queue/resolve/main/tasks.csv", "/api/whoami-v2", "/_emulator/stats"):
        outputs.append(httpx.get(guarded_hub.url + path, headers=headers, timeout=10).text)

    leaks = [i for i, text in enumerate(outputs) if CANARY in text or WRONG in text]
    assert not leaks, [outputs[i][:500] for i in leaks]
    searched = 0
    for root in (work, guarded_hub.data_dir, guarded_hub.log_path.parent):
        for path in root.rglob("*"):
            if path.is_file():
                searched += 1
                data = path.read_bytes()
                assert CANARY.encode() not in data and WRONG.encode() not in data, path
    assert searched > 10
    # The callback really did try: its attempts are in the task log, redacted.
    logs = "".join(p.read_text() for p in (work / "logs").glob("*.log"))
    assert "token ***" in logs and "print ***" in logs and "stderr ***" in logs
    print(f"\nRELIABILITY secrets: {len(outputs)} outputs and {searched} files searched, 0 occurrences")
