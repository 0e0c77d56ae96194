"""A Space on the emulator whose app is the worker (`python -m scheduler worker`), as on the Hub."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from scheduler.queue import TaskQueue
from scheduler.tasks import Status, Task
from tests.support import ROOT, pythonpath, wait_for  # noqa: F401 (used by this package's tests)

CALLBACKS = Path(__file__).with_name("sample_callbacks.py")
BOOT_DELAY = 1.0
SPACE = "demo/trainer"
DATASET = "hf://datasets/demo/queue"


class Rig:
    """One emulated Space running the worker, its queue, and the token the Space holds as a secret."""

    def __init__(self, emulator, tmp_path: Path, token: str):
        from huggingface_hub import HfApi

        self.emulator = emulator
        self.token = token
        self.api = HfApi(endpoint=emulator.url, token=token)
        self.queue = TaskQueue.open(DATASET, token=token, endpoint=emulator.url)
        self.queue.init()
        self.work_dir = tmp_path / "work"
        self.space = SPACE

    def start(self, callback: str = "by_param", *extra: str, lease: float = 3.0) -> None:
        self.api.create_repo(self.space, repo_type="space", space_sdk="gradio")
        self.api.add_space_secret(self.space, "HF_TOKEN", self.token)
        command = [sys.executable, "-m", "scheduler", "worker", "--queue", DATASET,
                   "--callback", f"{CALLBACKS}:{callback}", "--work-dir", str(self.work_dir),
                   "--lease", str(lease), "--poll", "0.2", "--retry-delay", "0", "--stop-grace", "1",
                   "--max-gpu-wait", "10", *extra]
        r = httpx.post(f"{self.emulator.url}/_emulator/spaces/{self.space}/supervise",
                       json={"command": command, "cwd": str(ROOT),
                             "env": {"PYTHONPATH": pythonpath()}})
        r.raise_for_status()
        self.wait_settled("cpu-basic")

    def runtime(self):
        return self.api.get_space_runtime(self.space)

    def wait_settled(self, flavor: str, timeout: float = 60.0) -> None:
        def settled():
            rt = self.runtime()
            return rt.hardware == flavor and rt.requested_hardware == flavor and rt.stage == "RUNNING"

        wait_for(settled, timeout, f"{self.space} running on {flavor}")

    def add(self, n: int = 1, hardware: str = "t4-small", **fields) -> list[Task]:
        params = fields.pop("params", {})
        return self.queue.add_many([Task.new("demo/base-model", "demo/data", hardware, params=params, **fields)
                                    for _ in range(n)])

    def wait_all_final(self, timeout: float = 90.0) -> list[Task]:
        def final():
            tasks = self.queue.list()
            return tasks if all(t.is_terminal for t in tasks) else None

        return wait_for(final, timeout, "every task finished", every=0.2)

    def billing(self) -> dict:
        return self.emulator.billing(self.space)

    def flavors_visited(self) -> list[str]:
        seen: list[str] = []
        for entry in self.billing()["timeline"]:
            hw = entry["hardware"]
            if hw and (not seen or seen[-1] != hw):
                seen.append(hw)
        return seen

    def space_log(self) -> str:
        path = self.emulator.hub.spaces.log_path(self.space)
        return path.read_text(errors="replace") if path.exists() else ""

    def worker_pid(self) -> int | None:
        return self.emulator.hub.spaces.supervisor.pid(self.space)


@pytest.fixture
def gpu_emulator(tmp_path):
    from scheduler.emulator import start_emulator

    handle = start_emulator(tmp_path / "hub", boot_delay=BOOT_DELAY, app_start_delay=0.1, stop_grace=3.0, fsync=False)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def rig(gpu_emulator, tmp_path):
    rig = Rig(gpu_emulator, tmp_path, token="plain-test-token-7f3a9c")
    yield rig
    if rig.worker_pid() is not None:  # leave nothing billing behind a failed test
        try:
            rig.api.request_space_hardware(rig.space, "cpu-basic")
        except Exception:
            pass


def statuses(tasks) -> set[Status]:
    return {t.status for t in tasks}
