"""`space-scheduler worker` and `space-scheduler space ...` against the emulator."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from scheduler.cli import build_parser, main
from scheduler.queue import TaskQueue
from scheduler.tasks import Status, Task

from .conftest import CALLBACKS, ROOT, wait_for

TOKEN = "cli-secret-token-5e6f7a8b"


@pytest.fixture
def cli_env(emulator, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", emulator.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("SPACE_ID", "demo/box")
    return emulator


def run(capsys, *argv) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert TOKEN not in out + err
    assert code == 0, err
    return out


def test_every_space_operation_of_the_guide_is_a_cli_verb(cli_env, capsys, tmp_path, monkeypatch):
    run(capsys, "space", "create", "demo/box", "--variable", "MODE=demo")
    wait_for(lambda: "RUNNING" in run(capsys, "space", "status"), 10, "the Space to build")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "app.py").write_text("print('hello')\n")
    assert "uploaded" in run(capsys, "space", "upload", str(tmp_path / "app"))

    monkeypatch.setenv("MY_SECRET", "shh-value-123")
    run(capsys, "space", "secret", "set", "MY_SECRET", "--from-env", "MY_SECRET")
    listed = run(capsys, "space", "secret", "list")
    assert "MY_SECRET" in listed and "shh-value-123" not in listed
    run(capsys, "space", "secret", "delete", "MY_SECRET")
    assert "MY_SECRET" not in run(capsys, "space", "secret", "list")

    run(capsys, "space", "variable", "set", "MODEL_REPO_ID", "demo/model")
    assert "MODEL_REPO_ID=demo/model" in run(capsys, "space", "variable", "list")
    run(capsys, "space", "variable", "delete", "MODEL_REPO_ID")
    assert "MODEL_REPO_ID" not in run(capsys, "space", "variable", "list")

    out = run(capsys, "space", "hardware", "t4-medium", "--wait", "10")
    assert "t4-medium" in out and "sleep 3600s" in out  # paid hardware always gets a sleep time
    run(capsys, "space", "sleep", "600")
    assert "sleep 600s" in run(capsys, "space", "status")
    assert "PAUSED" in run(capsys, "space", "pause")
    run(capsys, "space", "restart")
    run(capsys, "space", "hardware", "cpu-basic", "--wait", "10")

    assert "/data" in run(capsys, "space", "volumes", "set", "hf://datasets/demo/queue:/data:ro")
    run(capsys, "space", "volumes", "delete")

    run(capsys, "space", "duplicate", "demo/box", "demo/box-copy", "--secret", "MY_SECRET", "--hardware", "cpu-upgrade")
    assert "cpu-upgrade" in run(capsys, "space", "status", "--space", "demo/box-copy", "--json")
    run(capsys, "space", "logs")


def test_a_user_mistake_is_one_line_not_a_traceback(cli_env, capsys):
    assert main(["space", "hardware", "h9000"]) == 2
    assert "not a hardware flavor" in capsys.readouterr().err
    assert main(["worker", "--queue", "memory://", "--callback", "train:train", "--space", "demo/missing"]) == 2
    err = capsys.readouterr().err
    assert "404" in err and len(err.strip().splitlines()) == 1 and TOKEN not in err


def test_sigterm_mid_task_releases_the_gpu_and_puts_the_task_back(emulator, hf_api, tmp_path):
    hf_api.create_repo("demo/remote", repo_type="space", space_sdk="gradio")
    queue = TaskQueue.open(str(tmp_path / "queue"))
    task = queue.add(Task.new("demo/m", "demo/d", "t4-small", params={"kind": "stubborn"}))
    env = {**os.environ, "HF_ENDPOINT": emulator.url, "HF_TOKEN": TOKEN,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "scheduler", "worker", "--queue", str(tmp_path / "queue"),
               "--space", "demo/remote", "--callback", f"{CALLBACKS}:by_param", "--work-dir", str(tmp_path / "w"),
               "--lease", "5", "--poll", "0.2"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_for(lambda: queue.get(task.id).status is Status.RUNNING, 60, "the task to start on the GPU")
        assert hf_api.get_space_runtime("demo/remote").hardware == "t4-small"
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert TOKEN not in output
    runtime = hf_api.get_space_runtime("demo/remote")
    assert runtime.requested_hardware == "cpu-basic", output
    task = queue.get(task.id)
    assert task.status is Status.PENDING and "SIGTERM" in task.error

    queue.add(Task.new("demo/m", "demo/d", "t4-small", params={"steps": 1}))
    queue.cancel(task.id)
    done = subprocess.run(command + ["--until-idle"], env=env, capture_output=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert [t.status for t in queue.list()] == [Status.CANCELLED, Status.DONE]
    runtime = hf_api.get_space_runtime("demo/remote")
    assert runtime.hardware == runtime.requested_hardware == "cpu-basic"


def test_a_task_for_an_unknown_flavor_is_failed_without_touching_the_hardware(emulator, hf_api, tmp_path):
    from scheduler.hardware import SpaceController
    from scheduler.settings import WorkerSettings, build_worker

    hf_api.create_repo("demo/strict", repo_type="space", space_sdk="gradio")
    wait_for(lambda: hf_api.get_space_runtime("demo/strict").stage == "RUNNING", 10, "the Space to build")
    queue = TaskQueue.open(str(tmp_path / "queue"))
    odd = queue.add(Task.new("demo/m", "demo/d", "t4-small").replace(hardware="h9000"))
    controller = SpaceController("demo/strict", api=hf_api, poll_s=0.1)
    worker = build_worker(WorkerSettings(queue="-", callback=f"{CALLBACKS}:ok", work_dir=str(tmp_path / "w"),
                                         lease_s=5, poll_s=0.1), queue=queue, controller=controller)
    worker.run(until_idle=True)
    odd = queue.get(odd.id)
    assert odd.status is Status.FAILED and "'h9000' is not a Space hardware flavor" in odd.error
    assert emulator.billing("demo/strict")["hardware_requests"] == 0


def test_a_hardware_request_the_hub_refuses_backs_its_tasks_off_and_is_not_repeated(emulator, hf_api, tmp_path):
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    from scheduler.hardware import SpaceController
    from scheduler.settings import WorkerSettings, build_worker

    class NoPaymentMethod(SpaceController):
        """The Hub's answer to a GPU request from an account without a payment method."""

        def request(self, flavor, sleep_time=None):
            request = httpx2.Request("POST", f"{emulator.url}/api/spaces/{self.space_id}/hardware")
            raise HfHubHTTPError("402 Payment Required: add a payment method",
                                 response=httpx2.Response(402, request=request))

    hf_api.create_repo("demo/unpaid", repo_type="space", space_sdk="gradio")
    wait_for(lambda: hf_api.get_space_runtime("demo/unpaid").stage == "RUNNING", 10, "the Space to build")
    queue = TaskQueue.open(str(tmp_path / "queue"))
    task = queue.add(Task.new("demo/m", "demo/d", "a100-large", max_attempts=2))
    worker = build_worker(WorkerSettings(queue="-", callback=f"{CALLBACKS}:ok", work_dir=str(tmp_path / "w"),
                                         lease_s=5, poll_s=0.1, retry_delay_s=0),
                          queue=queue, controller=NoPaymentMethod("demo/unpaid", api=hf_api, poll_s=0.1))
    worker.run(until_idle=True)
    task = queue.get(task.id)
    assert task.status is Status.FAILED and task.attempts == 2
    assert "the Hub refused a100-large" in task.error and "402" in task.error
    assert hf_api.get_space_runtime("demo/unpaid").hardware == "cpu-basic"


def test_the_worker_names_its_queue_as_every_other_verb(monkeypatch, tmp_path):
    """OWNER/NAME is the Hub dataset (as in `add` and the README), never a new local folder."""
    from scheduler.commands.worker_cmd import settings_from_args
    from scheduler.errors import UserError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    parse = lambda *argv: build_parser().parse_args(["worker", *argv])  # noqa: E731
    settings = settings_from_args(parse("--queue", "demo/my-queue", "--callback", "train.py:train"))
    assert settings.queue == "hf://datasets/demo/my-queue"
    assert settings_from_args(parse("--queue", "./q", "--callback", "t.py:f")).queue == str(tmp_path / "q")
    with pytest.raises(UserError, match="ambiguous"):
        settings_from_args(parse("--queue", "queue", "--callback", "t.py:f"))
    assert not any(tmp_path.iterdir())


def test_a_local_worker_shows_each_running_tasks_progress_as_plain_lines_off_a_terminal(tmp_path):
    queue = TaskQueue.open(str(tmp_path / "q"))
    task = queue.add(Task.new("acme/m", "acme/d", "t4-small", params={"steps": 8, "sleep": 0.4}))
    done = subprocess.run([sys.executable, "-m", "scheduler", "worker", "--queue", str(tmp_path / "q"),
                           "--executor", "local", "--callback", f"{CALLBACKS}:ok", "--until-idle", "--poll", "0.2",
                           "--work-dir", str(tmp_path / "work")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stdout + done.stderr
    shown = [int(p) for p in re.findall(rf"task {task.id}: (\d+)% step \d+/8", done.stdout)]
    assert len(shown) >= 2 and shown == sorted(shown) and len(set(shown)) == len(shown), done.stdout


def test_on_a_terminal_the_progress_is_a_bar_per_running_task(tmp_path):
    import io

    from scheduler.callbacks import TaskFiles, write_json_atomic
    from scheduler.commands.worker_cmd import RunProgress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    class Running:  # what RunProgress reads of a worker: its status and its work dir
        work_dir = tmp_path

        def status(self):
            return {"runs": [{"task": "T1"}]}

    write_json_atomic(TaskFiles(tmp_path, "T1").progress, {"fraction": 0.5, "message": "epoch 2/4"})
    screen = Terminal()
    view = RunProgress(Running(), stream=screen)
    view.tick()
    assert "T1" in screen.getvalue() and " 50%|" in screen.getvalue() and "epoch 2/4" in screen.getvalue()
    view.stop()

