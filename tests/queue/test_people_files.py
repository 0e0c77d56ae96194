"""tasks.csv as pandas, spreadsheets and hand edits leave it: read as meant and written back canonically,
or refused with its line, column and value and left byte-identical."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler import codec
from scheduler.errors import CSVFormatError
from scheduler.queue import TaskQueue
from scheduler.schema import HEADER_LINE
from scheduler.tasks import Status, Task

from ..support import child_env
from .people_files import T0, canonical, generated_queue, pandas_round_trip, spreadsheet_save

OLD_HEADER = ("id,status,model_id,dataset_id,hardware,params,priority,submitted_at,submitted_by,not_before,attempts,"
              "max_attempts,timeout_s,worker,lease_until,started_at,finished_at,gpu_seconds,cost_usd,result,error")


def _queue(tmp_path, data: bytes, name: str = "q") -> tuple[TaskQueue, object]:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "tasks.csv").write_bytes(data)
    return TaskQueue.open(str(folder)), folder / "tasks.csv"


# ---------------------------------------------------------------- integral floats (pandas, spreadsheets)


def test_a_queue_saved_by_pandas_with_floats_in_its_integer_columns_lists_and_runs(tmp_path):
    """A pandas round trip with one blank cell turns every integer column into floats (pandas-dev/pandas#20717)."""
    folder = tmp_path / "q"
    folder.mkdir()
    (folder / "tasks.csv").write_text(
        f"{OLD_HEADER}\nA1,PENDING,openai-community/gpt2,stanfordnlp/imdb,t4-small,{{}},0.0,2026-01-01T00:00:00Z,,,"
        "0.0,3.0,3600.0,,,,,,,,\n")
    result = subprocess.run([sys.executable, "-m", "scheduler", "list", "--queue", str(folder)], capture_output=True,
                            text=True, timeout=120, env=child_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].split()[:7] == ["A1", "PENDING", "openai-community/gpt2", "stanfordnlp/imdb",
                                                          "t4-small", "0", "0"]
    queue = TaskQueue.open(str(folder))
    task = queue.get("A1")
    assert (task.priority, task.attempts, task.max_attempts, task.timeout_s) == (0, 0, 3, 3600)
    assert queue.claim("w", 60).id == "A1"
    assert (folder / "tasks.csv").read_bytes() == canonical([queue.get("A1")])


def test_a_pandas_user_adding_a_row_leaves_a_queue_every_step_still_reads(tmp_path):
    tasks = generated_queue(30, seed=3)
    data = pandas_round_trip(canonical(tasks), new_row={"id": "added-by-hand", "status": "PENDING",
                                                        "model_id": "acme/model", "dataset_id": "acme/data"})
    assert b"3600.0" in data and b",0.0," in data
    queue, path = _queue(tmp_path, data)
    assert queue.list()[:30] == tasks
    added = queue.get("added-by-hand")
    assert (added.priority, added.max_attempts, added.timeout_s, added.hardware, added.params) == (0, 3, 3600, "t4-small", {})
    queue.add(Task.new("acme/new", "acme/data"))
    assert path.read_bytes() == canonical(queue.list())


@pytest.mark.parametrize("value", ["3.5", "1e-1", "three", "1,5", "0x10"])
def test_a_value_that_is_no_integer_is_refused_with_its_line_column_and_value_and_the_file_is_untouched(tmp_path, value):
    data = canonical([Task.new("acme/m", "acme/d", now=T0) for _ in range(3)]).decode().split("\r\n")
    cells = next(csv.reader([data[2]]))
    cells[6] = value
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(cells)
    data[2] = out.getvalue()
    data = "\r\n".join(data).encode()
    queue, path = _queue(tmp_path, data)
    for operation in (queue.list, lambda: queue.add(Task.new("acme/x", "acme/y")), lambda: queue.claim("w", 60)):
        with pytest.raises(CSVFormatError) as info:
            operation()
        assert str(info.value).startswith(f"tasks.csv line 3, column 7 (priority): expected an integer, got {value!r}")
        assert path.read_bytes() == data


# ---------------------------------------------------------------- hand edits


def _quote_all(line: str) -> str:
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="").writerow(next(csv.reader([line])))
    return out.getvalue()


def _edits():
    tasks = [Task.new("a/b", "c/d", now=T0, priority=2), Task.new("e/f", "g/h", now=T0, submitted_by="ann")]
    text = canonical(tasks).decode()
    lines = text.split("\r\n")
    header, rows = lines[0], [line for line in lines[1:] if line]

    def reorder(line: str) -> str:
        cells = next(csv.reader([line]))[::-1]
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow(cells)
        return out.getvalue()

    crlf = "\r\n".join
    accepted = {
        "LF line endings": text.replace("\r\n", "\n"),
        "CR line endings": text.replace("\r\n", "\r"),
        "a BOM": "\ufeff" + text,
        "no final newline": text[:-2],
        "an extra column": crlf([header + ",note"] + [row + ",x" for row in rows]) + "\r\n",
        "a trailing comma on every line": crlf([header + ","] + [row + "," for row in rows]) + "\r\n",
        "a trailing comma on one row": crlf([header, rows[0] + ",", rows[1]]) + "\r\n",
        "no error column": crlf([header.replace(",error,", ",")] + [
            ",".join(c for k, c in enumerate(next(csv.reader([row]))) if k != 21) for row in rows]) + "\r\n",
        "columns in reverse order": crlf([reorder(header)] + [reorder(row) for row in rows]) + "\r\n",
        "a lowercase status": text.replace(",PENDING,", ",pending,", 1),
        "CANCELED spelled the US way": text.replace(",PENDING,", ",CANCELED,", 1),
        "empty lines at the end": text + "\r\n\r\n",
        "a whitespace-only line at the end": text + "  \r\n",
        "comma-only rows": crlf([header, rows[0], ",,,,", ",  ,", rows[1]]) + "\r\n",
        "the header in upper case": text.replace(header, header.upper(), 1),
        "NaN where pandas meant empty": text.replace(",ann,", ",NaN,", 1),
        "cells quoted when they need not be": crlf([header] + [_quote_all(row) for row in rows]) + "\r\n",
        "times written another way": text.replace("2026-03-01T12:00:00Z", "2026-03-01 13:00:00+01:00", 1),
    }
    return tasks, text, accepted


TASKS, TEXT, ACCEPTED = _edits()
EXPECTED = {
    "a lowercase status": [TASKS[0], TASKS[1]],
    "CANCELED spelled the US way": [TASKS[0].replace(status=Status.CANCELLED), TASKS[1]],
    "NaN where pandas meant empty": [TASKS[0], TASKS[1].replace(submitted_by="")],
}


@pytest.mark.parametrize("edit", list(ACCEPTED))
def test_a_hand_edit_that_keeps_the_meaning_is_read_as_meant_and_written_back_canonically(tmp_path, edit):
    data = ACCEPTED[edit].encode("utf-8")
    queue, path = _queue(tmp_path, data)
    assert queue.list() == EXPECTED.get(edit, TASKS)
    added = queue.add(Task.new("x/y", "z/w", now=T0))
    claimed = queue.claim("w", 60)
    assert claimed is not None
    written = path.read_bytes()
    table = codec.parse(written)
    if edit == "an extra column":
        assert table.extras == ("note",) and [row[-1] for row in table.rows] == ["x", "x", ""]
        assert written.startswith((HEADER_LINE + ",note\r\n").encode())
    else:
        assert written == canonical(table.tasks())
    assert [t.id for t in table.tasks()] == [TASKS[0].id, TASKS[1].id, added.id]


REFUSED = {
    "a duplicate id": (lambda text, rows: "\r\n".join([text.split("\r\n")[0], rows[0], rows[0], rows[1]]) + "\r\n",
                       3, 1, f"duplicate task id {TASKS[0].id!r}"),
    "a row with one cell too many": (lambda text, rows: text.replace(rows[0], rows[0] + ",x"), 2, 24,
                                     "expected 23 fields (as in the header), found 24"),
    "a status that is none": (lambda text, rows: text.replace(",PENDING,", ",WAITING,", 1), 2, 2, "'WAITING' is not a status"),
    "an id column named twice": (lambda text, rows: text.replace(",status,", ",ID,", 1), 1, 2, "appears twice"),
    "a missing model_id column": (lambda text, rows: text.replace(",model_id,", ",model,", 1), 1, 24,
                                  "missing column(s) 'model_id'"),
    "a bad repo id": (lambda text, rows: text.replace(",a/b,", ",a/b/c,", 1), 2, 3, "'a/b/c' must be OWNER/NAME"),
    "broken JSON": (lambda text, rows: text.replace(",{},", ',"{""a"": }",', 1), 2, 6, "is not valid JSON"),
    "a time that is none": (lambda text, rows: text.replace("2026-03-01T12:00:00Z", "1/3/2026 12:00", 1), 2, 8,
                            "'1/3/2026 12:00' is not an ISO 8601 time"),
    "an unclosed quote": (lambda text, rows: text + 'x,"never closed\r\n', 4, 3, "never closed"),
}


@pytest.mark.parametrize("edit", list(REFUSED))
def test_a_hand_edit_that_loses_the_meaning_is_refused_with_line_column_and_value_and_the_file_stays(tmp_path, edit):
    mutate, line, column, words = REFUSED[edit]
    rows = [row for row in TEXT.split("\r\n")[1:] if row]
    data = mutate(TEXT, rows).encode()
    queue, path = _queue(tmp_path, data)
    for operation in (queue.list, lambda: queue.add(Task.new("x/y", "z/w")), lambda: queue.claim("w", 60)):
        with pytest.raises(CSVFormatError) as info:
            operation()
        assert (info.value.line, info.value.column) == (line, column), str(info.value)
        assert words in str(info.value) and f"line {line}, column {column}" in str(info.value)
        assert path.read_bytes() == data


def test_columns_in_any_order_read_equal_and_the_next_write_puts_them_in_order(tmp_path):
    queue0 = TaskQueue.open(str(tmp_path / "s"))
    queue0.init()
    queue0.add(model_id="a/b", dataset_id="c/d", params={"x": "=1+1, \"q\"\nnl"}, priority=5, submitted_by="-bob")
    original = queue0.list()
    frame = pd.read_csv(tmp_path / "s" / "tasks.csv", dtype=str, keep_default_na=False)
    queue, path = _queue(tmp_path, frame[frame.columns[::-1]].to_csv(index=False).encode())
    assert queue.list() == original
    queue.add(model_id="x/y", dataset_id="z/w")
    assert TaskQueue.open(str(path.parent)).list()[0] == original[0]
    assert path.read_bytes().startswith((HEADER_LINE + "\r\n").encode())


# ---------------------------------------------------------------- round trips of whole queues


def test_a_thousand_task_queue_survives_a_pandas_round_trip_and_a_spreadsheet_save(tmp_path):
    tasks = generated_queue(1000)
    data = canonical(tasks)
    for name, saved in [("pandas", pandas_round_trip(data)),
                        ("spreadsheet", spreadsheet_save(data)),
                        ("spreadsheet quoting everything, LF, columns moved", spreadsheet_save(
                            data, quoting=csv.QUOTE_ALL, newline="\n", shuffle=True, upper_header=True,
                            integral_floats=True, lower_status=True, final_newline=False))]:
        assert saved != data
        queue, path = _queue(tmp_path, saved, name.replace(" ", "-").replace(",", ""))
        assert queue.list() == tasks, name
        pending = [t for t in tasks if t.status is Status.PENDING and t.not_before is None]
        assert queue.claim("w", 60) is not None or not pending
        written = path.read_bytes()
        assert written == canonical(TaskQueue.open(str(path.parent)).list()), name


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), size=st.integers(1, 25),
       quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
       newline=st.sampled_from(["\r\n", "\n", "\r"]), bom=st.booleans(),
       blank_rows=st.lists(st.sampled_from(["", ",,,", "  ", ",", '"",""']), max_size=3),
       final_newline=st.booleans(), shuffle=st.booleans(), upper_header=st.booleans(), integral_floats=st.booleans(),
       lower_status=st.booleans())
def test_any_valid_queue_reads_back_equal_after_a_spreadsheet_save_and_is_written_canonically(
        seed, size, quoting, newline, bom, blank_rows, final_newline, shuffle, upper_header, integral_floats, lower_status):
    tasks = generated_queue(size, seed)
    saved = spreadsheet_save(canonical(tasks), quoting=quoting, newline=newline, bom=bom, blank_rows=tuple(blank_rows),
                             final_newline=final_newline, shuffle=shuffle, upper_header=upper_header,
                             integral_floats=integral_floats, lower_status=lower_status)
    table = codec.parse(saved)
    assert table.tasks() == tasks
    assert codec.dump(table) == canonical(tasks)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), size=st.integers(1, 25), add_row=st.booleans())
def test_any_valid_queue_reads_back_equal_after_a_pandas_round_trip_and_is_written_canonically(seed, size, add_row):
    tasks = generated_queue(size, seed)
    new_row = {"id": "by-pandas", "status": "PENDING", "model_id": "acme/m", "dataset_id": "acme/d"} if add_row else None
    table = codec.parse(pandas_round_trip(canonical(tasks), new_row))
    read = table.tasks()
    assert read[:size] == tasks
    assert codec.dump(table) == canonical(read)


def test_a_list_of_new_tasks_saved_by_pandas_or_a_spreadsheet_is_added_as_meant(tmp_path):
    from scheduler.commands.queue_cmds import read_task_file

    jobs = tmp_path / "jobs.csv"
    frame = pd.DataFrame({"model_id": ["acme/a", "acme/b"], "dataset_id": ["acme/d", "acme/d"],
                          "priority": [2, None], "timeout_s": [600, 7200], "hardware": ["a10g-small", None]})
    jobs.write_bytes(b"\xef\xbb\xbf" + frame.to_csv(index=False).replace("model_id", "Model_ID").encode() + b",,,,\n")
    assert b",2.0," in jobs.read_bytes()  # an integer column with a blank cell is written as floats
    tasks = read_task_file(jobs)
    assert [(t.model_id, t.priority, t.timeout_s, t.hardware) for t in tasks] == [
        ("acme/a", 2, 600, "a10g-small"), ("acme/b", 0, 7200, "t4-small")]
