"""Hostile input: malformed queue files, traversal, bombs and formulas are refused or neutralised,
with a message naming the field, and nothing is written or requested on the way."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler import codec
from scheduler.errors import CSVFormatError, TaskNotFound, UserError, ValidationError
from scheduler.queue import TaskQueue
from scheduler.stores import FileStore, HubStore, open_store
from scheduler.tasks import Status, Task

from scheduler.hardware import SpaceController

from .conftest import TOKEN, child_env

VALID = codec.dump(codec.Table().appended([
    Task.new("acme/model", "acme/data", "t4-small", params={"epochs": 3, "note": 'a "quoted", comma'}),
    Task.new("acme/other", "acme/data", "a10g-small", submitted_by="=HYPERLINK(\"x\")", priority=5),
    Task.new("acme/third", "acme/data", params={"text": "line one\nline two"}),
]))
CSV_ALPHABET = st.sampled_from(list(b'",\r\n\'=;-+@ \x00\xff\xc3abcPENDINGRUNNING0123456789{}:'))


def _parse_fully(data: bytes) -> None:
    """The reader's whole promise: tasks, or CSVFormatError. Anything else escapes and fails the test."""
    try:
        table = codec.parse(data)
        table.tasks()
    except CSVFormatError as exc:
        assert exc.line >= 1 and str(exc).startswith("tasks.csv line ")


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "duplicate-line"]))
        if kind == "insert":
            data[at:at] = bytes(draw(st.lists(CSV_ALPHABET, min_size=1, max_size=4)))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        elif kind == "replace" and at < len(data):
            data[at] = draw(CSV_ALPHABET)
        else:
            lines = bytes(data).split(b"\r\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            data = bytearray(b"\r\n".join(lines))
    return bytes(data)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=mutated())
def test_an_operation_refused_for_a_malformed_file_leaves_it_byte_identical(tmp_path_factory, data):
    try:
        codec.parse(data)
        unreadable = False
    except CSVFormatError:
        unreadable = True
    folder = tmp_path_factory.mktemp("queue")
    (folder / "tasks.csv").write_bytes(data)
    queue = TaskQueue(FileStore(folder))
    operations = [
        lambda: queue.add(Task.new("acme/new", "acme/data")),
        lambda: queue.claim("w1", 60),
        lambda: queue.recover_expired(),
        lambda: queue.archive(),
        lambda: queue.cancel("anything"),
        lambda: queue.list(),
        lambda: queue.init(),
    ]
    for operation in operations:
        before = (folder / "tasks.csv").read_bytes()
        try:
            operation()
        except (CSVFormatError, TaskNotFound):
            assert (folder / "tasks.csv").read_bytes() == before
        else:
            # Rows are checked when they are used, so a file whose structure is sound but with a bad cell in
            # one row can still take writes that do not touch that row; one that does not parse never can.
            assert not unreadable
    if unreadable:
        assert (folder / "tasks.csv").read_bytes() == data
        assert sorted(p.name for p in folder.iterdir()) == [".tasks.csv.lock", "tasks.csv"]


# ---------------------------------------------------------------- form and CLI fields


@pytest.mark.parametrize("fields, field", [
    ({"model_id": "../../etc/passwd"}, "model_id"),
    ({"model_id": "acme/../secrets"}, "model_id"),
    ({"dataset_id": "acme/..", }, "dataset_id"),
    ({"dataset_id": "/etc/passwd"}, "dataset_id"),
    ({"model_id": "acme\\..\\x/y"}, "model_id"),
    ({"id": "../tasks"}, "id"),
    ({"id": "a/b"}, "id"),
    ({"id": "x" * 65}, "id"),
    ({"model_id": "a" * 97 + "/b"}, "model_id"),
    ({"model_id": "acme/" + "n" * 200}, "model_id"),
    ({"submitted_by": "x" * 5000}, "submitted_by"),
    ({"submitted_by": "mallory\r\nid,status"}, "submitted_by"),
    ({"submitted_by": "bell\x07"}, "submitted_by"),
    ({"model_id": "acme/mo\x00del"}, "model_id"),
    ({"hardware": "t4-small; rm -rf /"}, "hardware"),
    ({"priority": "1e309"}, "priority"),
    ({"timeout_s": 10**12}, "timeout_s"),
    ({"params": "[" * 100_000 + "]" * 100_000}, "params"),
    ({"params": '{"a":' * 5000 + "1" + "}" * 5000}, "params"),
    ({"params": json.dumps({"blob": "x" * 200_000})}, "params"),
    ({"params": '{"n": NaN}'}, "params"),
    ({"params": '{"a": 1'}, "params"),
    ({"params": "[1, 2]"}, "params"),
])
def test_hostile_form_fields_are_refused_with_a_message_naming_the_field(fields, field):
    base = {"model_id": "acme/model", "dataset_id": "acme/data", "hardware": "t4-small"}
    with pytest.raises(ValidationError) as info:
        Task.new(**{**base, **fields})
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert len(str(info.value)) < 400  # the refusal does not echo a megabyte back


def test_a_deeply_nested_params_object_is_refused_without_recursing_into_it():
    bomb: dict = {}
    for _ in range(50_000):
        bomb = {"a": bomb}
    with pytest.raises(ValidationError) as info:
        Task.new("acme/model", "acme/data", params=bomb)
    assert info.value.field == "params"


@pytest.mark.parametrize("formula", ["=1+1", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "=HYPERLINK(\"http://x\")"])
def test_spreadsheet_formulas_are_stored_inert_and_read_back_exactly(tmp_path, formula):
    queue = TaskQueue.open(str(tmp_path / "q"))
    task = queue.add(Task.new("acme/model", "acme/data", submitted_by=formula, params={"note": formula}))
    raw = (tmp_path / "q" / "tasks.csv").read_text()
    rows = list(__import__("csv").reader(raw.splitlines()))
    for cell in rows[1]:
        assert not cell.startswith(("=", "+", "-", "@")), cell
    stored = queue.get(task.id)
    assert stored.submitted_by == formula and stored.params == {"note": formula}


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scheduler", *args], capture_output=True, text=True, timeout=120,
                          env=child_env(**env))


@pytest.fixture(scope="module")
def shared_hub(tmp_path_factory):
    from scheduler.emulator import start_emulator

    with start_emulator(tmp_path_factory.mktemp("hub"), boot_delay=0.1, fsync=False) as handle:
        yield handle


HOSTILE_CLI = [
    (["../../x/y", "acme/data"], "model_id"),
    (["acme/model", "acme/data", "--params", "[" * 50_000], "params"),
    (["acme/model", "acme/data", "--id", "../../../tmp/x"], "id"),
    (["acme/model", "acme/data", "--submitted-by", "a\x1bb"], "submitted_by"),
    (["acme/model", "acme/data", "--hardware", "../gpu"], "hardware"),
    (["acme/model", "acme/data", "--param", "x=" + "[" * 5000], "params"),
]


def test_hostile_cli_input_is_refused_naming_the_field_and_sends_nothing_to_the_hub(shared_hub):
    url = "hf://datasets/demo/hostile"
    TaskQueue.open(url, token=TOKEN, endpoint=shared_hub.url).init()
    for args, field in HOSTILE_CLI:
        before = shared_hub.stats["requests"]
        result = _cli("add", "--queue", url, *args, HF_ENDPOINT=shared_hub.url, HF_TOKEN=TOKEN)
        assert result.returncode != 0, args
        assert f"{field}:" in result.stderr + result.stdout, (args, result.stderr[-500:])
        assert "Traceback" not in result.stderr, result.stderr[-2000:]
        assert shared_hub.stats["requests"] == before, args
    assert TaskQueue.open(url, token=TOKEN, endpoint=shared_hub.url).list() == []


BAD_REPOS = ["../etc", "acme/../../x", "-acme/x", "acme/x.git", "acme/" + "a" * 120, "acme/x y", "acme/x%2f..",
             "acme//x"]


@pytest.mark.parametrize("repo", BAD_REPOS + [""])
def test_bad_repo_ids_are_refused_by_the_library_before_any_request(shared_hub, repo):
    before = shared_hub.stats["requests"]
    with pytest.raises(UserError):
        HubStore(repo, token=TOKEN, endpoint=shared_hub.url)
    with pytest.raises(UserError):
        open_store(f"hf://datasets/{repo}", token=TOKEN, endpoint=shared_hub.url)
    with pytest.raises(UserError):
        SpaceController(repo, token=TOKEN, endpoint=shared_hub.url)
    assert shared_hub.stats["requests"] == before


def test_bad_space_and_queue_ids_given_to_the_cli_are_refused_before_any_request(shared_hub):
    env = dict(HF_ENDPOINT=shared_hub.url, HF_TOKEN=TOKEN)
    before = shared_hub.stats["requests"]
    for argv in (["space", "status", "--space", "../etc"], ["space", "hardware", "t4-small", "--space", "acme/x.git"],
                 ["list", "--queue", "hf://datasets/../etc"], ["worker", "--space", "a/../b", "--queue", "hf://datasets/demo/q"]):
        result = _cli(*argv, **env)
        assert result.returncode != 0, argv
        assert "Traceback" not in result.stderr, (argv, result.stderr[-2000:])
    assert shared_hub.stats["requests"] == before


def test_a_queue_created_on_the_hub_is_a_private_dataset(shared_hub):
    from huggingface_hub import HfApi

    result = _cli("init", "--queue", "hf://datasets/demo/fresh", HF_ENDPOINT=shared_hub.url, HF_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    TaskQueue.open("hf://datasets/demo/fresh2", token=TOKEN, endpoint=shared_hub.url).init()
    api = HfApi(endpoint=shared_hub.url, token=TOKEN)
    assert api.dataset_info("demo/fresh").private is True
    assert api.dataset_info("demo/fresh2").private is True
    assert TaskQueue.open("hf://datasets/demo/fresh", token=TOKEN, endpoint=shared_hub.url).list(Status.PENDING) == []
