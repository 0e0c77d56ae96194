"""`space-scheduler check`: whether the queue file reads, what the next write changes, and `--fix` in one commit."""

from __future__ import annotations

import csv

from huggingface_hub import HfApi

from scheduler import card
from scheduler.cli import main
from scheduler.queue import TaskQueue
from scheduler.stores import HubStore

from .conftest import TOKEN, make_hub_queue_url
from .people_files import canonical, generated_queue, pandas_round_trip, spreadsheet_save


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_canonical_queue_checks_clean(tmp_path, capsys):
    (tmp_path / "tasks.csv").write_bytes(canonical(generated_queue(20)))
    code, out, _ = run(capsys, "check", "--queue", str(tmp_path))
    assert code == 0 and "20 task(s), canonical: nothing to change" in out


def test_a_file_saved_by_pandas_lists_each_kind_of_change_and_fix_writes_the_canonical_file(tmp_path, capsys):
    tasks = generated_queue(50)
    saved = pandas_round_trip(canonical(tasks), new_row={"id": "new-1", "status": "pending", "model_id": "acme/m",
                                                         "dataset_id": "acme/d"})
    (tmp_path / "tasks.csv").write_bytes(saved)

    code, out, _ = run(capsys, "check", "--queue", str(tmp_path))
    assert code == 1 and "51 task(s) read" in out
    assert "line 1: line endings written as CRLF" in out
    assert "column 7 (priority): '" in out and "more cell(s) in this column" in out
    last_line = saved.rstrip(b"\n").count(b"\n") + 1
    assert f"line {last_line}, column 2 (status): 'pending' -> 'PENDING'" in out
    assert (tmp_path / "tasks.csv").read_bytes() == saved  # nothing written without --fix

    code, out, _ = run(capsys, "check", "--queue", str(tmp_path), "--fix")
    assert code == 0 and "written in the canonical form" in out
    fixed = TaskQueue.open(str(tmp_path)).list()
    assert fixed[:50] == tasks and fixed[50].id == "new-1"
    assert (tmp_path / "tasks.csv").read_bytes() == canonical(fixed)
    assert run(capsys, "check", "--queue", str(tmp_path))[0] == 0


def test_a_refused_file_lists_every_problem_with_line_and_column_and_is_not_touched(tmp_path, capsys):
    data = spreadsheet_save(canonical(generated_queue(5, seed=2)), quoting=csv.QUOTE_MINIMAL, bom=False,
                            blank_rows=())
    bad = data.replace(b",t4-small,", b",t4 small,").replace(b",3600,", b",an hour,", 1)
    (tmp_path / "tasks.csv").write_bytes(bad)
    code, out, _ = run(capsys, "check", "--queue", str(tmp_path), "--fix")
    assert code == 2 and "refused" in out and "nothing was written" in out
    problems = [line for line in out.splitlines() if line.startswith("  tasks.csv line ")]
    assert len(problems) == bad.count(b"t4 small") + 1
    assert any("(timeout_s): expected an integer, got 'an hour'" in line for line in problems)
    assert all(", column " in line for line in problems)
    assert (tmp_path / "tasks.csv").read_bytes() == bad


def test_fix_on_the_hub_is_one_commit_and_leaves_a_canonical_file(hub_emulator, capsys):
    url = make_hub_queue_url(hub_emulator)
    tasks = generated_queue(30, seed=5)
    store = HubStore(url.split("/", 3)[3], token=TOKEN, endpoint=hub_emulator.url)
    store.write({"tasks.csv": spreadsheet_save(canonical(tasks))}, expected=store.read().version, message="by hand")
    api = HfApi(endpoint=hub_emulator.url, token=TOKEN)
    commits = len(api.list_repo_commits(store.repo_id, repo_type="dataset"))

    args = ["--queue", url, "--token", TOKEN, "--endpoint", hub_emulator.url]
    assert run(capsys, "check", *args)[0] == 1
    assert len(api.list_repo_commits(store.repo_id, repo_type="dataset")) == commits
    code, out, err = run(capsys, "check", *args, "--fix")
    assert code == 0, err
    assert len(api.list_repo_commits(store.repo_id, repo_type="dataset")) == commits + 1
    assert store.read().data == canonical(tasks)
    assert TOKEN not in out + err
    archive = f"{url}/{card.empty_archive_path()}"  # any CSV of the queue, by its path
    code, out, _ = run(capsys, "check", "--queue", archive, "--token", TOKEN, "--endpoint", hub_emulator.url)
    assert code == 0 and "0 task(s), canonical" in out
