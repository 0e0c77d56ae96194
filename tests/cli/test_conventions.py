"""The CLI's conventions: queue names as in the `hf` CLI, read-only verbs that create nothing, a
silent Hub reported in time, strict --param, a quiet end on a closed pipe, one style for `space`."""

from __future__ import annotations

import json
import os
import pty
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scheduler.cli import CLOSED_PIPE_EXIT, build_parser, main
from scheduler.commands.common import resolve_queue
from scheduler.errors import UserError
from scheduler.queue import TaskQueue
from scheduler.tasks import Task
from tests.support import child_env

TOKEN = "hf_clitesttoken0123456789"
# The promise: a clear error within 30 s of the command starting, whatever the Hub does.
HUB_SILENCE_BOUND_S = 30.0


@pytest.fixture
def cwd(tmp_path, monkeypatch) -> Path:
    """An empty working directory: whatever a verb creates shows up here."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture
def hub(emulator, monkeypatch, tmp_path, cwd):
    """The emulator as the CLI's Hub."""
    monkeypatch.setenv("HF_ENDPOINT", emulator.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("SCHEDULER_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.delenv("SCHEDULER_QUEUE", raising=False)
    return emulator


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert TOKEN not in out + err
    return code, out, err


@pytest.mark.parametrize("typed, expected", [
    ("acme/my-queue", "hf://datasets/acme/my-queue"),
    ("hf://datasets/acme/q/sub/tasks.csv", "hf://datasets/acme/q/sub/tasks.csv"),
    ("./q", str(Path.cwd() / "q")),
    ("../q", str(Path.cwd().parent / "q")),
    ("/abs/q", "/abs/q"),
    ("~/q", str(Path.home() / "q")),
    ("file:///abs/q", "/abs/q"),
    ("file://localhost/abs/q", "/abs/q"),
    ("file://./q", str(Path.cwd() / "q")),
    ("memory://", "memory://"),
])
def test_owner_slash_name_is_a_hub_dataset_and_a_local_queue_is_a_path(typed, expected):
    assert resolve_queue(typed) == expected


@pytest.mark.parametrize("typed, words", [
    ("queue", "ambiguous: write ./queue for a local folder, or OWNER/queue"),
    ("a/b/c", "ambiguous: write ./a/b/c for a local folder"),
    ("acme/bad name", "write ./acme/bad name for a local folder"),
    ("s3://bucket/q", "use OWNER/NAME or hf://datasets/OWNER/NAME"),
    ("hf://models/acme/q", "a queue is a Hub dataset: hf://datasets/OWNER/NAME, or OWNER/NAME"),
    ("hf://acme/q", "a queue is a Hub dataset"),
    ("", "no queue given"),
])
def test_a_queue_name_that_is_neither_is_refused_with_the_forms_that_would_work(typed, words):
    with pytest.raises(UserError) as refused:
        resolve_queue(typed)
    assert words in str(refused.value)


def test_the_readmes_deploy_form_names_the_hub_dataset_and_never_makes_a_local_folder(hub, capsys, cwd):
    code, _, err = run(capsys, "list", "--queue", "demo/my-queue")
    assert code == 2 and "demo/my-queue not found" in err and "init --queue" in err
    assert not (cwd / "demo").exists()
    assert run(capsys, "init", "--queue", "demo/my-queue")[0] == 0
    assert run(capsys, "add", "--queue", "demo/my-queue", "acme/m", "acme/d")[0] == 0
    code, out, _ = run(capsys, "list", "--queue", "demo/my-queue")
    assert code == 0 and "acme/m" in out and "1 pending" in out
    assert TaskQueue.open("hf://datasets/demo/my-queue", token=TOKEN, endpoint=hub.url).list()[0].model_id == "acme/m"
    assert list(cwd.iterdir()) == []


def test_a_folder_named_like_a_dataset_is_pointed_out(hub, capsys, cwd):
    (cwd / "demo" / "q").mkdir(parents=True)
    code, _, err = run(capsys, "list", "--queue", "demo/q")
    assert code == 2 and "note: demo/q names the Hub dataset demo/q; for the folder here write ./demo/q" in err


@pytest.mark.parametrize("argv", [["list"], ["show", "01ABC"], ["cancel", "01ABC"], ["requeue", "01ABC"], ["archive"]])
def test_verbs_other_than_init_and_add_never_create_a_queue(hub, capsys, cwd, hf_api, argv):
    for queue in ("./missing", str(cwd / "abs-missing"), "file://./other"):
        code, _, err = run(capsys, argv[0], "--queue", queue, *argv[1:])
        assert code == 2 and "no queue at" in err and "space-scheduler init --queue" in err
    code, _, err = run(capsys, argv[0], "--queue", "demo/absent", *argv[1:])
    assert code == 2 and "not found" in err
    assert not hf_api.repo_exists("demo/absent", repo_type="dataset")
    assert list(cwd.iterdir()) == []


def test_reading_a_folder_without_tasks_csv_says_so_and_writes_nothing(hub, capsys, cwd):
    (cwd / "empty").mkdir()
    code, _, err = run(capsys, "list", "--queue", "./empty")
    assert code == 2 and "has no tasks.csv" in err and list((cwd / "empty").iterdir()) == []


@pytest.mark.parametrize("param, words", [
    ("epochs=", "--param 'epochs=' has no value (an unset shell variable?)"),
    ("epochs= ", "has no value"),
    ("=3", "the key must be a name"),
    ("my key=3", "the key must be a name"),
    ("fp16=True", "True is Python, not JSON (write fp16=true)"),
    ("lr=nan", "nan is Python, not JSON (JSON has no NaN or infinity)"),
    ("layers=[1, 2", "the value starts like JSON but is not valid JSON"),
    ('name="run', "the value starts like JSON but is not valid JSON"),
    ("novalue", "must look like key=value"),
])
def test_a_param_that_would_train_the_wrong_thing_is_refused_with_the_reason(tmp_path, capsys, param, words):
    code, out, err = run(capsys, "add", "--queue", str(tmp_path / "q"), "acme/m", "acme/d", "--param", param)
    assert code == 2 and out == "" and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "q").exists()  # refused before anything is opened


def test_params_given_twice_are_refused_and_every_json_form_is_kept(tmp_path, capsys):
    q = ["--queue", str(tmp_path / "q")]
    code, _, err = run(capsys, "add", *q, "acme/m", "acme/d", "--param", "epochs=3", "--param", "epochs=4")
    assert code == 2 and "--param epochs is given twice ('epochs=3' and 'epochs=4')" in err
    code, _, err = run(capsys, "add", *q, "acme/m", "acme/d", "--params", '{"epochs": 3}', "--param", "epochs=4")
    assert code == 2 and "epochs is set both by --params and by --param" in err
    code, out, _ = run(capsys, "add", *q, "acme/m", "acme/d", "--json", "--param", "epochs=3", "--param", "lr=5e-5",
                       "--param", "fp16=true", "--param", "layers=[1, 2]", "--param", 'note=""',
                       "--param", "run=first try", "--param", "seed=null")
    assert code == 0
    assert json.loads(out)["params"] == {"epochs": 3, "lr": 5e-5, "fp16": True, "layers": [1, 2], "note": "",
                                         "run": "first try", "seed": None}


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "scheduler", *argv]


def _black_hole() -> socket.socket:
    """A port that accepts connections and never answers (a Hub behind a dead proxy)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def test_list_with_the_hub_down_gives_a_clear_error_in_time_and_says_it_waits(emulator, tmp_path):
    """Three ways a Hub fails to answer, run side by side: nobody listening, a listener that never
    answers (with stderr on a terminal: the spinner), and a Hub answering 500 to everything."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    hole = _black_hole()
    emulator.set_faults(error_rate=1.0)
    env = child_env(HF_TOKEN=TOKEN, SCHEDULER_LOCK_DIR=str(tmp_path / "locks"))
    env.pop("HF_ENDPOINT", None)
    endpoints = {"refused": f"http://127.0.0.1:{closed_port}", "silent": f"http://127.0.0.1:{hole.getsockname()[1]}",
                 "5xx": emulator.url}
    runs, outputs = {}, {}
    terminal_reader = None
    for name, endpoint in endpoints.items():
        argv = _cli("list", "--queue", "hf://datasets/x/y", "--endpoint", endpoint)
        if name == "silent":
            terminal_reader, terminal = pty.openpty()
            proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=terminal, text=True)
            os.close(terminal)
        else:
            proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
        runs[name] = (proc, time.monotonic())
    try:
        spinner = b""
        finished = {}
        while len(finished) < len(runs):
            ready, _, _ = select.select([terminal_reader], [], [], 0.2)
            if ready:
                try:
                    spinner += os.read(terminal_reader, 4096)
                except OSError:  # the terminal's writer exited
                    pass
            for name, (proc, started) in runs.items():
                if name not in finished and proc.poll() is not None:
                    finished[name] = time.monotonic() - started
            assert time.monotonic() - min(s for _, s in runs.values()) < 60, "a run hangs"
    finally:
        hole.close()
        for proc, _ in runs.values():
            proc.kill()
    for name, (proc, _) in runs.items():
        out, err = proc.communicate()
        err = spinner.decode(errors="replace") if name == "silent" else err
        assert proc.returncode == 2 and out == "", (name, err)
        assert finished[name] <= HUB_SILENCE_BOUND_S, (name, finished[name], err)
        assert f"error: the Hub at {endpoints[name]}" in err and "(reading the queue)" in err, (name, err)
        assert "Traceback" not in err and TOKEN not in err
        outputs[name] = err
    assert "Connection refused" in outputs["refused"] and "HTTP 50" in outputs["5xx"]
    # Off a terminal: plain lines while waiting; on one: a spinner redrawn in place.
    assert f"Waiting for the Hub at {endpoints['5xx']} (reading the queue): 1s\n" in outputs["5xx"]
    assert "\r" in outputs["silent"] and f"Waiting for the Hub at {endpoints['silent']}" in outputs["silent"]


def test_a_closed_pipe_ends_the_listing_quietly(tmp_path):
    queue = TaskQueue.open(str(tmp_path / "q"))
    queue.add_many([Task.new("acme/model", "acme/data", params={"note": "x" * 100}) for _ in range(1500)])
    proc = subprocess.Popen(_cli("list", "--queue", str(tmp_path / "q"), "--json"), cwd=tmp_path, env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert json.loads(proc.stdout.readline())["model_id"] == "acme/model"
    proc.stdout.close()  # `| head -1`: the reader is gone with most of the output unread
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == CLOSED_PIPE_EXIT and err == ""


def _space_verbs():
    space = build_parser()._subparsers._group_actions[0].choices["space"]
    return space._subparsers._group_actions[0].choices


@pytest.mark.parametrize("verb", sorted(_space_verbs()))
def test_every_space_verb_takes_the_space_as_space(verb):
    options = {o for action in _space_verbs()[verb]._actions for o in action.option_strings}
    assert "--space" in options


def test_space_create_and_duplicate_take_space_and_their_old_positional_form_still_works(hub, capsys, hf_api):
    code, out, err = run(capsys, "space", "create", "--space", "demo/new-style")
    assert code == 0 and out.startswith("created ") and err == ""
    code, out, err = run(capsys, "space", "create", "demo/old-style")
    assert code == 0 and "`space create demo/old-style` is deprecated: write `space create --space demo/old-style`" in err
    code, out, err = run(capsys, "space", "duplicate", "--from", "demo/new-style", "--space", "demo/copy")
    assert code == 0 and out.startswith("duplicated demo/new-style to ") and err == ""
    code, out, err = run(capsys, "space", "duplicate", "demo/new-style", "demo/old-copy")
    assert code == 0 and "write `space duplicate --from demo/new-style --space demo/old-copy`" in err
    for name in ("new-style", "old-style", "copy", "old-copy"):
        assert hf_api.repo_exists(f"demo/{name}", repo_type="space"), name
    code, _, err = run(capsys, "space", "create", "demo/a", "--space", "demo/b")
    assert code == 2 and "give the Space once" in err
