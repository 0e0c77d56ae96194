"""Across releases: a file from an older release reads with defaults and is upgraded on the next write; a
file with columns this release does not know keeps them, cells included, through every operation."""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

from scheduler import codec, schema
from scheduler.queue import ARCHIVE_DIR, TaskQueue
from scheduler.tasks import Status, Task

from .people_files import lease_of

FIXTURES = Path(__file__).with_name("fixtures")
PREVIOUS = FIXTURES / "tasks-0.1.0.csv"  # written by release 0.1.0 (see fixtures/make_previous_release.py)
NEW_IN_0_2_0 = {"lease_id": "", "log": ""}
_names = itertools.count()


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_a_tasks_csv_written_by_the_previous_release_reads_as_that_release_read_it():
    assert PREVIOUS.read_bytes().split(b"\n", 1)[0].decode().count(",") == 20  # its 21 columns
    expected = json.loads((FIXTURES / "tasks-0.1.0.json").read_text())
    tasks = codec.parse(PREVIOUS.read_bytes()).tasks()
    assert [t.to_dict() for t in tasks] == [{**record, **NEW_IN_0_2_0} for record in expected]
    statuses = [t.status for t in tasks]
    assert statuses == [Status.DONE, Status.DONE, Status.RUNNING, Status.CANCELLED, Status.PENDING]
    assert tasks[1].submitted_by == '=HYPERLINK("x")' and tasks[1].params["note"] == 'commas, "quotes"\nand a newline'


def test_the_previous_releases_file_is_upgraded_by_the_next_write_and_archives_whole(tmp_path):
    folder = tmp_path / "queue"
    folder.mkdir()
    (folder / "tasks.csv").write_bytes(PREVIOUS.read_bytes())
    before = codec.parse(PREVIOUS.read_bytes()).tasks()
    clock = Clock(datetime(2026, 12, 1, tzinfo=timezone.utc))
    queue = TaskQueue.open(str(folder), clock=clock)
    assert queue.list() == before

    claimed = queue.claim("new-worker", 600)  # the RUNNING task's lease ran out long ago: taken over
    written = (folder / "tasks.csv").read_bytes()
    assert written.split(b"\r\n", 1)[0].decode() == schema.HEADER_LINE
    after = codec.parse(written).tasks()
    assert [t for t in after if t.id != claimed.id] == [t for t in before if t.id != claimed.id]
    assert written == codec.dump(codec.Table().appended(after))

    queue.complete(claimed.id, lease_of(claimed), {"loss": 0.2})
    clock.now += timedelta(days=30)
    moved = queue.archive(timedelta(days=7))
    assert moved == 4
    archived = [t for path in sorted((folder / ARCHIVE_DIR).glob("*.csv")) for t in codec.parse(path.read_bytes()).tasks()]
    assert sorted(t.id for t in archived + queue.list()) == sorted(t.id for t in before)
    assert [t for t in archived if t.id != claimed.id] == [t for t in before if t.is_terminal]


def _rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(), newline="")))


def _csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode()


def _with_extra_column(data: bytes, name: str, values: list[str], at: int) -> bytes:
    """The file with one more column at position `at`, as a person or a later release adds it."""
    rows = _rows(data)
    rows[0].insert(at, name)
    for row, value in zip(rows[1:], values):
        row.insert(at, value)
    return _csv(rows)


def test_a_column_this_release_does_not_know_is_kept_across_claim_complete_and_archive(open_queue, caplog):
    name = f"reviewer_{next(_names)}"  # the warning is said once per process and set of columns
    clock = Clock(datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc))
    queue = open_queue(clock=clock)
    tasks = [Task.new(f"acme/m{i}", "acme/data", now=clock.now - timedelta(hours=3 - i)) for i in range(3)]
    queue.add_many(tasks)
    store = queue.store
    snapshot = store.read()
    notes = ["ann, \"lead\"", "=SUM(A1)", "multi\nline"]
    store.write({store.path: _with_extra_column(snapshot.data, name, notes, at=2)}, expected=snapshot.version,
                message="a column added by hand")

    with caplog.at_level(logging.WARNING, logger="scheduler.codec"):
        first = open_queue(clock=clock)
        assert first.list() == tasks
        task = first.claim("w", 600)
        assert task.id == tasks[0].id
        open_queue(clock=clock).complete(task.id, lease_of(task), {"loss": 0.5})
        open_queue(clock=clock).cancel(tasks[1].id, "not needed")
    said = [r for r in caplog.records if name in r.getMessage()]
    assert len(said) == 1 and "kept" in said[0].getMessage()

    table = codec.parse(store.read().data)
    assert table.extras == (name,)
    assert {row[0]: row[-1] for row in table.rows} == {t.id: note for t, note in zip(tasks, notes)}
    assert table.tasks()[2] == tasks[2]

    clock.now += timedelta(days=10)
    assert open_queue(clock=clock).archive(timedelta(days=7)) == 2
    version = store.read().version
    month = f"{ARCHIVE_DIR}/tasks-{clock.now - timedelta(days=10):%Y-%m}.csv"
    archive = codec.parse(store.read_at(month, version))
    assert archive.extras == (name,)
    assert {row[0]: row[-1] for row in archive.rows} == {tasks[0].id: notes[0], tasks[1].id: notes[1]}
    remaining = codec.parse(store.read().data)
    assert remaining.extras == (name,) and [row[-1] for row in remaining.rows] == [notes[2]]


def test_an_archive_keeps_the_columns_of_rows_it_already_holds_and_of_rows_it_receives():
    old = codec.parse(_with_extra_column(codec.dump(codec.Table().appended([Task.new("a/b", "c/d")])), "a", ["1"], 23))
    new = codec.parse(_with_extra_column(codec.dump(codec.Table().appended([Task.new("e/f", "g/h")])), "b", ["2"], 1))
    merged = codec.parse(codec.dump(old.merged(new)))
    assert merged.extras == ("a", "b")
    assert [row[-2:] for row in merged.rows] == [["1", ""], ["", "2"]]
    assert codec.parse(codec.dump(merged.merged(new))).rows == merged.rows  # a re-sent row is not added twice


def test_a_file_missing_columns_lists_them_and_reads_them_as_their_defaults():
    rows = _rows(PREVIOUS.read_bytes())
    at = rows[0].index("priority")
    found = codec.inspect(_csv([row[:at] + row[at + 1:] for row in rows]))
    assert found.problems == [] and found.table is not None
    changes = {fix.field: fix.change for fix in found.fixes if fix.line == 1 and fix.field}
    assert set(changes) == {"lease_id", "log", "priority"}
    assert "new in 0.2.0" in changes["log"] and "'0' in every row" in changes["priority"]
    assert [t.priority for t in found.table.tasks()] == [0] * 5
