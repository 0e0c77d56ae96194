"""Who the app believes a visitor is, with space_app/app.py run as a user runs it.

Off a Space, Gradio mocks "Sign in with Hugging Face" with the profile of the machine's token: any
visitor who clicks it would become the token's owner. The app trusts that profile only where
Gradio runs the real OAuth flow, or when told to (the demo) and then only on loopback.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from scheduler.queue import TaskQueue
from tests.conftest import TEST_TOKEN
from tests.support import child_env, free_port, wait_for

from .conftest import APP_FILE

QUEUE = "hf://datasets/demo/app-queue"
A100 = ("openai-community/gpt2", "stanfordnlp/imdb", "a100x8")


def app_env(emulator, tmp_path, **extra: str) -> dict[str, str]:
    env = child_env(HF_ENDPOINT=emulator.url, HF_TOKEN=TEST_TOKEN, SCHEDULER_QUEUE=QUEUE, SCHEDULER_WORKER="off",
                    SPACE_ID="demo/scheduler", HF_HOME=str(tmp_path / "app-hf-home"),
                    SCHEDULER_LOCK_DIR=str(tmp_path / "locks"), **extra)
    env.pop("SYSTEM", None)
    return env


@pytest.fixture
def serve(emulator, tmp_path):
    """serve(**env) -> the URL of space_app/app.py started in a child process (every token is the
    emulator's user `demo`, the owner of SPACE_ID demo/scheduler)."""
    TaskQueue.open(QUEUE, token=TEST_TOKEN, endpoint=emulator.url).init()
    started: list[subprocess.Popen] = []

    def start(**extra: str) -> str:
        port = free_port()
        log = open(tmp_path / f"app-{port}.log", "w")
        proc = subprocess.Popen([sys.executable, str(APP_FILE), "--port", str(port)],
                                env=app_env(emulator, tmp_path, **extra), stdout=log, stderr=subprocess.STDOUT)
        started.append(proc)
        url = f"http://127.0.0.1:{port}/"

        def up() -> bool:
            assert proc.poll() is None, (tmp_path / f"app-{port}.log").read_text()
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 120, "the app to answer", every=0.3)
        return url

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(10)


def signed_in_client(url: str) -> Client:
    """A visitor who clicked "Sign in with Hugging Face" (GET /login/huggingface) and kept the cookie."""
    with httpx.Client(follow_redirects=True) as web:
        web.get(url + "login/huggingface")
        cookie = "; ".join(f"{k}={v}" for k, v in web.cookies.items())
    return Client(url, verbose=False, headers={"Cookie": cookie} if cookie else None, download_files=False)


def stored(emulator) -> list:
    return TaskQueue.open(QUEUE, token=TEST_TOKEN, endpoint=emulator.url).list()


def test_off_a_space_a_mocked_hugging_face_login_gets_no_one_in(serve, emulator):
    warnings.filterwarnings("ignore")
    url = serve()  # SPACE_ID set, but no SYSTEM=spaces and no OAuth variables: not a Space
    anonymous = Client(url, verbose=False, download_files=False)
    with pytest.raises(AppError, match="You must sign in to submit tasks"):
        anonymous.predict(*A100, api_name="/submit")
    with pytest.raises(AppError, match="You must sign in to submit tasks.*--auth user:password"):
        signed_in_client(url).predict(*A100, api_name="/submit")
    assert stored(emulator) == []


def test_the_mocked_login_asked_for_works_on_loopback_only_and_refuses_any_other_address(serve, emulator, tmp_path):
    url = serve(SCHEDULER_MOCK_LOGIN="1")
    with pytest.raises(AppError, match="You must sign in with Hugging Face to submit tasks"):
        Client(url, verbose=False, download_files=False).predict(*A100, api_name="/submit")
    answer = signed_in_client(url).predict(*A100, api_name="/submit")
    [task] = stored(emulator)
    assert task.id == answer["task_id"] and task.submitted_by == "demo"

    refused = subprocess.run([sys.executable, str(APP_FILE), "--host", "0.0.0.0", "--port", str(free_port())],
                             env=app_env(emulator, tmp_path, SCHEDULER_MOCK_LOGIN="1"), capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode == 2
    assert "refusing to serve Gradio's mocked Hugging Face login on 0.0.0.0" in refused.stderr
    assert TEST_TOKEN not in refused.stdout + refused.stderr
