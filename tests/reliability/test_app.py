"""The Space app process: SIGKILLed in the middle of submissions, then restarted; a submitter cannot
choose whose name a task is recorded under."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from scheduler.emulator.server import free_port
from scheduler.queue import TaskQueue

from .conftest import ROOT, TOKEN, child_env, wait_for

URL = "hf://datasets/demo/app-queue"
AUTH = "alice:alice-pw,mallory:mallory-pw"


class AppProcess:
    def __init__(self, hub, tmp_path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = tmp_path / "app.log"
        self.env = child_env(SCHEDULER_QUEUE=URL, SCHEDULER_WORKER="off", HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN,
                                    SCHEDULER_WORK_DIR=str(tmp_path / "work"))
        self.proc: subprocess.Popen | None = None

    def start(self) -> "AppProcess":
        import httpx

        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([sys.executable, str(ROOT / "space_app" / "app.py"), "--auth", AUTH,
                                          "--host", "127.0.0.1", "--port", str(self.port)],
                                         stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=str(ROOT))

        def up():
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                return httpx.get(self.url, timeout=2).status_code < 500
            except httpx.HTTPError:
                return False

        wait_for(up, 180, "the app to answer", every=0.3)
        return self

    def client(self, user: str):
        from gradio_client import Client

        return Client(self.url, auth=(user, f"{user}-pw"), verbose=False, download_files=False)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def app_process(hub_process, tmp_path):
    TaskQueue.open(URL, token=TOKEN, endpoint=hub_process.url).init()
    app = AppProcess(hub_process, tmp_path).start()
    try:
        yield app
    finally:
        app.kill()


def _submit(client, n: int) -> str:
    return client.predict("acme/model", "acme/data", "t4-small", f'{{"n": {n}}}', 0, 3, 60, api_name="/submit")["task_id"]


@pytest.mark.slow
def test_the_app_killed_mid_request_keeps_every_acknowledged_submission_once_and_serves_again(app_process, hub_process):
    acked: list[str] = []
    failed: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def submitter(k: int) -> None:
        client = app_process.client("alice")
        n = 0
        while not stop.is_set():
            n += 1
            try:
                task_id = _submit(client, k * 1000 + n)
            except Exception as exc:  # the app died under this request
                with lock:
                    failed.append(type(exc).__name__)
                return
            with lock:
                acked.append(task_id)

    threads = [threading.Thread(target=submitter, args=(k,), daemon=True) for k in range(3)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acked) >= 6, 120, "submissions to be acknowledged")
    app_process.kill()  # SIGKILL while the submitters are mid-request
    stop.set()
    for t in threads:
        t.join(60)
    attempted = len(acked) + len(failed)
    app_process.start()
    after = _submit(app_process.client("alice"), 99999)
    tasks = TaskQueue.open(URL, token=TOKEN, endpoint=hub_process.url).list()
    ids = [t.id for t in tasks]
    assert len(ids) == len(set(ids))
    assert set(acked) | {after} <= set(ids)
    assert len(ids) <= attempted + 1  # a cut-short request may have landed, but only once
    assert all(t.submitted_by == "alice" for t in tasks)
    print(f"\nRELIABILITY app SIGKILL: {len(acked)} acknowledged submissions kept, {len(failed)} cut short "
          f"({len(ids) - len(acked) - 1} of them landed), app served again after restart")


@pytest.mark.slow
def test_a_submitter_cannot_record_a_task_under_someone_elses_name(app_process, hub_process):
    import httpx

    client = app_process.client("mallory")
    own = _submit(client, 1)
    attempts = 0
    for forge in (
        lambda: client.predict("acme/model", "acme/data", "t4-small", "{}", 0, 3, 60, "alice", api_name="/submit"),
        lambda: client.predict("acme/model", "acme/data", "t4-small", "{}", 0, 3, 60, submitted_by="alice",
                               api_name="/submit"),
        lambda: client.predict("acme/model", "acme/data", "t4-small", '{"submitted_by": "alice"}', 0, 3, 60,
                               api_name="/submit"),
        lambda: httpx.post(f"{app_process.url}gradio_api/call/submit", timeout=10,
                           json={"data": ["acme/model", "acme/data", "t4-small", "{}", 0, 3, 60],
                                 "submitted_by": "alice", "session_hash": "x"},
                           headers={"X-Forwarded-User": "alice", "Authorization": "Bearer alice"}).raise_for_status(),
    ):
        attempts += 1
        try:
            forge()
        except Exception:
            pass  # refused outright is fine; what must never happen is a task recorded as alice's
    tasks = TaskQueue.open(URL, token=TOKEN, endpoint=hub_process.url).list()
    assert own in {t.id for t in tasks}
    assert {t.submitted_by for t in tasks} == {"mallory"}, [(t.id, t.submitted_by) for t in tasks]
    print(f"\nRELIABILITY forged submitted_by: {attempts} forgeries, {len(tasks)} tasks stored, all as mallory")
