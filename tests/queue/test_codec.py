"""The CSV codec: exact round trips, spreadsheet safety, the guide's legacy file, and readable errors."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler import codec
from scheduler.errors import CSVFormatError, InvalidTransition, ValidationError
from scheduler.tasks import COLUMNS, Status, Task

def _task(**changes) -> Task:
    return Task.new("acme/base-model", "acme/data", "t4-small").replace(**changes)


def _dump(tasks) -> bytes:
    return codec.dump(codec.Table().appended(tasks))


def test_the_header_comes_from_the_template_file():
    with open(codec.__file__.replace("codec.py", "tasks_template.csv"), encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert tuple(header) == COLUMNS
    assert _dump([]).decode().splitlines()[0] == ",".join(header)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    error=st.text(max_size=200),
    worker=st.text(max_size=60),
    submitted_by=st.text(max_size=60),
    param_key=st.text(max_size=20),
    param_value=st.text(max_size=60),
    result_value=st.one_of(st.text(max_size=40), st.integers(), st.floats(allow_nan=False, allow_infinity=False)),
)
def test_any_text_in_any_field_survives_write_and_read_and_loads_in_pandas_and_dictreader(
    error, worker, submitted_by, param_key, param_value, result_value
):
    task = _task(error=error, worker=worker, submitted_by=submitted_by,
                 params={param_key: param_value}, result={"metric": result_value})
    data = _dump([task])

    back = codec.parse(data).task(0)
    assert back == task

    text = data.decode("utf-8")
    via_csv = list(csv.DictReader(io.StringIO(text, newline="")))
    via_pandas = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, encoding="utf-8")
    assert len(via_csv) == 1 and len(via_pandas) == 1
    assert list(via_pandas.columns) == list(COLUMNS)
    for column in COLUMNS:
        assert via_pandas.loc[0, column] == via_csv[0][column], column
    # What a spreadsheet or pandas shows is the stored text: the original, or it behind one apostrophe.
    for column in ("error", "worker", "submitted_by"):
        stored, original = via_csv[0][column], getattr(task, column)
        assert stored == original or stored == "'" + original


@pytest.mark.parametrize("formula", ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "=HYPERLINK(\"http://x\")", "'quoted"])
def test_spreadsheet_formulas_are_neutralised_on_write_and_restored_on_read(formula):
    task = _task(error=formula, submitted_by=formula)
    data = _dump([task])
    row = next(csv.DictReader(io.StringIO(data.decode(), newline="")))
    assert row["error"] == "'" + formula
    assert codec.parse(data).task(0).error == formula


def test_numbers_stay_numbers_for_a_spreadsheet():
    data = _dump([_task(priority=-5, gpu_seconds=12.5)])
    frame = pd.read_csv(io.BytesIO(data))
    assert frame.loc[0, "priority"] == -5
    assert frame.loc[0, "gpu_seconds"] == 12.5


def test_the_guides_headerless_file_is_read_with_stable_ids():
    data = b"multimodalart/sd-fine-tunable,Wauplin/concept-1,DONE\nmultimodalart/sd-fine-tunable,Wauplin/concept-2,PENDING\n"
    first, second = codec.parse(data), codec.parse(data)
    assert first.legacy
    tasks = first.tasks()
    assert [t.status for t in tasks] == [Status.DONE, Status.PENDING]
    assert [t.dataset_id for t in tasks] == ["Wauplin/concept-1", "Wauplin/concept-2"]
    assert [t.id for t in tasks] == [t.id for t in second.tasks()]
    migrated = codec.parse(codec.dump(first))
    assert not migrated.legacy and migrated.tasks() == tasks


@pytest.mark.parametrize(
    "mutate, line, column, words",
    [
        (lambda t: t.replace("PENDING", "WAITING", 1), 2, 2, "WAITING"),
        (lambda t: t.replace(",model_id,", ",", 1), 1, None, "model_id"),
        (lambda t: t.replace('"{', '"{"x', 1), 2, None, "quote"),
        (lambda t: t + 'x,"never closed\r\n', 4, 3, "never closed"),
        (lambda t: t.replace("\r\n", ",extra\r\n", 2).replace(",extra", "", 1), 2, 24, "expected 23 fields"),
        (lambda t: t.replace(",0,3,3600,", ",zero,3,3600,", 1), 2, 11, "attempts"),
    ],
)
def test_a_malformed_file_names_the_line_and_column(mutate, line, column, words):
    good = _dump([_task(params={"a": 1}), _task(params={"b": 2})]).decode()
    bad = mutate(good).encode()
    assert bad != good.encode()
    with pytest.raises(CSVFormatError) as info:
        codec.parse(bad).tasks()
    error = info.value
    assert error.line == line
    if column is not None:
        assert error.column == column
    assert words in str(error)
    assert f"line {line}" in str(error)


def test_a_file_that_is_not_utf8_is_refused_with_its_position():
    with pytest.raises(CSVFormatError, match="not UTF-8"):
        codec.parse(_dump([_task()]) + b"\xff\xfe,x\r\n")


def test_duplicate_ids_are_refused():
    task = _task()
    data = _dump([task]) + _dump([task]).split(b"\r\n", 1)[1]
    with pytest.raises(CSVFormatError, match="duplicate task id"):
        codec.parse(data)


def test_columns_in_another_order_are_accepted_and_written_back_in_order():
    task = _task(error="boom")
    frame = pd.read_csv(io.BytesIO(_dump([task])), dtype=str, keep_default_na=False)
    shuffled = frame[list(reversed(COLUMNS))].to_csv(index=False).encode()
    table = codec.parse(shuffled)
    assert table.task(0) == task
    assert codec.dump(table).splitlines()[0].decode() == ",".join(COLUMNS)


@pytest.mark.parametrize(
    "field, kwargs, words",
    [
        ("model_id", dict(model_id="no-slash"), "OWNER/NAME"),
        ("model_id", dict(model_id="../etc/passwd"), "model_id"),
        ("dataset_id", dict(dataset_id="a/b--c"), "'--'"),
        ("dataset_id", dict(dataset_id="a/" + "x" * 97), "dataset_id"),
        ("hardware", dict(hardware="H100 giant!"), "not a hardware flavor name"),
        ("priority", dict(priority="high"), "integer"),
        ("priority", dict(priority=10**6), "between"),
        ("timeout_s", dict(timeout_s=0), "between"),
        ("max_attempts", dict(max_attempts=99), "between"),
        ("params", dict(params="[1, 2]"), "JSON object"),
        ("params", dict(params="{bad json"), "not valid JSON"),
        ("params", dict(params="[" * 100 + "]" * 100), "nested too deeply"),
        ("params", dict(params='{"x": "' + "a" * 70000 + '"}'), "too large"),
        ("params", dict(params='{"x": NaN}'), "NaN"),
        ("submitted_by", dict(submitted_by="eve\x1b[31m"), "control characters"),
    ],
)
def test_invalid_fields_are_refused_with_a_message_naming_the_field(field, kwargs, words):
    base = dict(model_id="acme/m", dataset_id="acme/d", hardware="t4-small")
    base.update(kwargs)
    with pytest.raises(ValidationError) as info:
        Task.new(**base)
    assert info.value.field == field
    assert words in str(info.value)
    assert str(info.value).startswith(field)


def test_the_transition_table_refuses_what_it_does_not_list():
    done = _task().transition(Status.RUNNING).transition(Status.DONE)
    for target in Status:
        if target is not Status.DONE:
            with pytest.raises(InvalidTransition):
                done.transition(target)
    assert _task().transition(Status.CANCELLED).transition(Status.PENDING).status is Status.PENDING
    with pytest.raises(InvalidTransition):
        _task().transition(Status.DONE)


def test_unchanged_rows_are_written_back_byte_for_byte_and_changed_ones_canonically():
    tasks = [_task(error="a\r\nb", params={"x": "y,z"}), _task(), _task(submitted_by="=x")]
    data = _dump(tasks)
    table = codec.parse(data)
    assert codec.dump(table) == data
    changed = table.with_task(1, tasks[1].replace(error="now failed"))
    assert codec.parse(codec.dump(changed)).tasks() == [tasks[0], tasks[1].replace(error="now failed"), tasks[2]]
    lf_only = data.replace(b"\r\n", b"\n")  # written by another tool: rewritten in the canonical form
    assert codec.dump(codec.parse(lf_only)).count(b"\r\n") >= 4
