"""The queue verbs: readable output, one-line errors with a non-zero exit, nothing stored on bad input."""

from __future__ import annotations

import json

import pytest

from scheduler.cli import main
from scheduler.queue import TaskQueue

from .conftest import TOKEN, make_hub_queue_url


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_list_show_cancel_requeue_and_archive_on_a_folder(tmp_path, capsys):
    q = ["--queue", str(tmp_path)]
    code, out, _ = run(capsys, "add", *q, "acme/m", "acme/d", "--hardware", "a10g-small",
                       "--param", "epochs=3", "--param", "name=run one", "--priority", "2", "--json")
    assert code == 0
    task = json.loads(out)
    assert task["params"] == {"epochs": 3, "name": "run one"} and task["priority"] == 2
    code, out, _ = run(capsys, "list", *q)
    assert code == 0 and task["id"] in out and "a10g-small" in out and "1 pending" in out
    code, out, _ = run(capsys, "show", *q, task["id"])
    assert json.loads(out)["id"] == task["id"]
    assert run(capsys, "cancel", *q, task["id"], "--reason", "typo")[1].strip() == f"{task['id']} CANCELLED"
    assert run(capsys, "requeue", *q, task["id"])[1].strip() == f"{task['id']} PENDING"
    code, out, _ = run(capsys, "list", *q, "--status", "PENDING", "--json")
    assert [json.loads(line)["id"] for line in out.splitlines()] == [task["id"]]
    assert run(capsys, "archive", *q)[1].startswith("archived 0")


def test_from_csv_adds_every_row_in_one_write_or_nothing(tmp_path, capsys):
    good = tmp_path / "jobs.csv"
    good.write_text('model_id,dataset_id,hardware,params\nacme/a,acme/d,t4-small,"{""epochs"": 1}"\nacme/b,acme/d,,\n')
    q = ["--queue", str(tmp_path / "q")]
    assert run(capsys, "add", *q, "--from-csv", str(good))[0] == 0
    queue = TaskQueue.open(str(tmp_path / "q"))
    assert [t.model_id for t in queue.list()] == ["acme/a", "acme/b"]
    before = queue.store.read().data

    bad = tmp_path / "bad.csv"
    bad.write_text("model_id,dataset_id,hardware\nacme/c,acme/d,t4-small\nacme/e,acme/d,gpu-9000\n")
    code, out, err = run(capsys, "add", *q, "--from-csv", str(bad))
    assert code == 2 and out == ""
    assert "line 3, column 3 (hardware)" in err and "gpu-9000" in err
    assert queue.store.read().data == before

    wide = tmp_path / "wide.csv"
    wide.write_text("model_id,dataset_id\nacme/f,acme/d\nacme/g,acme/d,extra\n")
    code, out, err = run(capsys, "add", *q, "--from-csv", str(wide))
    assert code == 2 and "line 3, column 3: expected 2 fields, found 3" in err
    assert queue.store.read().data == before


@pytest.mark.parametrize(
    "argv, words",
    [
        (["add", "acme/m", "../../etc/passwd"], "dataset_id"),
        (["add", "acme/m", "acme/d", "--params", "{not json"], "params: is not valid JSON"),
        (["add", "acme/m", "acme/d", "--param", "novalue"], "key=value"),
        (["add", "acme/m", "acme/d", "--timeout", "-5"], "timeout_s"),
        (["show", "no such id!"], "task_id"),
        (["show", "01NOTTHERE"], "no task with id"),
    ],
)
def test_user_mistakes_are_one_line_errors(tmp_path, capsys, argv, words):
    assert run(capsys, "init", "--queue", str(tmp_path))[0] == 0
    code, out, err = run(capsys, argv[0], "--queue", str(tmp_path), *argv[1:])
    assert code == 2
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_no_queue_given_says_how_to_give_one(monkeypatch, capsys):
    monkeypatch.delenv("SCHEDULER_QUEUE", raising=False)
    code, _, err = run(capsys, "list")
    assert code == 2 and "--queue" in err and "SCHEDULER_QUEUE" in err


def test_the_cli_talks_to_the_hub_and_never_prints_the_token(hub_emulator, capsys, monkeypatch):
    url = make_hub_queue_url(hub_emulator)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    q = ["--queue", url, "--endpoint", hub_emulator.url]
    assert run(capsys, "add", *q, "acme/m", "acme/d")[0] == 0
    code, out, err = run(capsys, "list", *q)
    assert code == 0 and "acme/m" in out
    code, out, err = run(capsys, "show", "--queue", "hf://datasets/demo/absent", "--endpoint", hub_emulator.url, "x")
    assert code == 2 and "not found" in err
    assert TOKEN not in out + err


@pytest.mark.parametrize("executor, flavor, accepted", [
    ("jobs", "h200", True), ("jobs", "cpu-performance", True), ("space", "h200", False),
    ("space", "zero-a10g", False), ("jobs", "zero-a10g", False), ("space", "a10g-small", True),
])
def test_the_flavors_a_task_may_name_are_those_its_executor_offers(tmp_path, capsys, monkeypatch, executor, flavor,
                                                                   accepted):
    """Job flavors the Space enum lacks (h200, cpu-performance) for the jobs executor; never ZeroGPU, which
    gives no GPU to a training process (the fallback table: a folder queue has no Hub to ask)."""
    monkeypatch.setenv("SCHEDULER_EXECUTOR", executor)
    code, out, err = run(capsys, "add", "--queue", str(tmp_path), "acme/m", "acme/d", "--hardware", flavor)
    assert (code == 0) is accepted, err
    if not accepted:
        assert "hardware" in err and ("ZeroGPU" in err or "hardware flavor; choose one of" in err)
        assert TaskQueue.open(str(tmp_path)).list() == []
