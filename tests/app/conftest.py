"""The Space app served in this process on a free port, driven over HTTP with gradio_client."""

from __future__ import annotations

import importlib.util
import signal
import sys

import pytest

from tests.support import ROOT, free_port, wait_for  # noqa: F401 (used by this package's tests)

APP_FILE = ROOT / "space_app" / "app.py"
CALLBACKS = ROOT / "tests" / "worker" / "sample_callbacks.py"


def sigint_restored() -> None:
    """A child's `preexec_fn`: Ctrl-C reaches it as on a terminal, even when these tests run in a
    background job (where the shell starts everything with SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def load_app_module():
    if "space_scheduler_app" not in sys.modules:
        spec = importlib.util.spec_from_file_location("space_scheduler_app", APP_FILE)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules["space_scheduler_app"]


class RunningApp:
    def __init__(self, app, blocks, url: str):
        self.app, self.blocks, self.url = app, blocks, url

    def client(self, auth=None):
        from gradio_client import Client

        return Client(self.url, auth=auth, verbose=False, download_files=False)

    def close(self) -> None:
        if self.app.worker is not None:
            self.app.worker.stop("test over", wait_s=10)
        self.blocks.close()


@pytest.fixture
def start_app(tmp_path):
    """start_app(env={...}, worker=False, callback="ok", token=None, port=None) -> RunningApp on a folder
    queue (the same folder for every app a test starts: a second one on the same port is a restart)."""
    from scheduler.access import Access
    from scheduler.dashboard import AppSettings

    module = load_app_module()
    running: list[RunningApp] = []

    def start(env: dict | None = None, *, worker: bool = False, callback: str = "ok",
              token: str | None = None, webhook_secret: str | None = None, port: int | None = None) -> RunningApp:
        settings = AppSettings(queue_url=str(tmp_path / "queue"), callback=f"{CALLBACKS}:{callback}", token=token,
                               work_dir=str(tmp_path / "work"), worker=worker,
                               worker_options=dict(poll_s=0.2, lease_s=30, stop_grace_s=1, watch_s=0.5))
        app = module.SchedulerApp(settings, Access.from_env(env or {}))
        blocks = app.build()
        app.start_worker(signals=False)
        port = port or free_port()
        app.launch(blocks, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True,
                   webhook_secret=webhook_secret)
        handle = RunningApp(app, blocks, f"http://127.0.0.1:{port}/")
        running.append(handle)
        return handle

    yield start
    for handle in running:
        handle.close()


def pytest_terminal_summary(terminalreporter):
    """Where the browser tests' screenshots are, when some were taken."""
    from .browser import ARTIFACTS, SAVED

    if SAVED:
        terminalreporter.write_line(f"{len(SAVED)} screenshot(s) in {ARTIFACTS}: "
                                    + ", ".join(sorted({p.name for p in SAVED})))
