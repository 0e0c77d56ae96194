"""The columns are declared once (scheduler.schema): everything that restates them is checked against it."""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scheduler
from scheduler import codec, dashboard, schema
from scheduler.commands import queue_cmds
from scheduler.errors import ValidationError
from scheduler.schema import COLUMNS, NAMES
from scheduler.tasks import Task

ROOT = Path(__file__).resolve().parents[2]


def test_the_task_fields_are_the_schema_columns_in_order_with_its_defaults():
    fields = dataclasses.fields(Task)
    assert tuple(f.name for f in fields) == NAMES
    for f, column in zip(fields, COLUMNS):
        if column.required:
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        assert default == column.default, column.name


def test_tasks_template_csv_is_the_schema_header_and_an_example_row_that_reads():
    text = (ROOT / "tasks_template.csv").read_bytes()
    assert text == codec.template(), (
        "tasks_template.csv drifted from scheduler/schema.py; regenerate it with\n"
        "python -c \"from scheduler import codec; open('tasks_template.csv', 'wb').write(codec.template())\"")
    header = next(csv.reader(io.StringIO(text.decode(), newline="")))
    assert tuple(header) == NAMES
    assert len(codec.parse(text).tasks()) == 1


def test_the_dashboard_and_list_take_their_columns_and_labels_from_the_schema():
    assert set(schema.DASHBOARD_COLUMNS) <= set(NAMES) and set(schema.LIST_COLUMNS) <= set(NAMES)
    assert queue_cmds.TABLE_COLUMNS == schema.LIST_COLUMNS
    labels = [schema.label(name) for name in schema.DASHBOARD_COLUMNS]
    assert [h for h in dashboard.TABLE_HEADERS if h != "duration"] == labels
    task = Task.new("acme/model", "acme/data")
    assert len(dashboard.table_rows([task])[0]) == len(dashboard.TABLE_HEADERS)


def test_the_readme_lists_every_column_with_its_release_and_the_limits():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The queue", 1)[1].split("\n## ", 1)[0]
    for column in COLUMNS:
        row = next((line for line in section.splitlines() if line.startswith(f"| `{column.name}` |")), None)
        assert row is not None, f"README's column table lacks {column.name}"
        assert f"| {column.since} |" in row, column.name
    for limit in ("64 KiB", "16 KiB", "2,000", "4,000", "200", "128"):
        assert limit in section, limit
    assert "space-scheduler check" in section


def test_the_release_is_the_package_version_and_the_new_columns_belong_to_it():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1) == scheduler.__version__ == schema.RELEASE
    assert {c.name for c in COLUMNS if c.since == "0.2.0"} == {"lease_id", "log"}
    for column in COLUMNS:
        assert tuple(map(int, column.since.split("."))) <= tuple(map(int, schema.RELEASE.split("."))), column.name


def test_missing_value_cells_are_the_ones_pandas_reads_as_missing():
    from pandas._libs.parsers import STR_NA_VALUES

    assert schema.NA_CELLS == set(STR_NA_VALUES) - {""}


def test_no_task_id_is_a_missing_value_marker():
    from scheduler import validation

    markers = {token for token in schema.NA_CELLS if re.fullmatch(r"[A-Za-z0-9_-]+", token)}
    for token in markers:
        with pytest.raises(ValidationError, match="missing value"):
            validation.task_id(token)


def test_every_bound_is_well_under_the_csv_modules_field_limit():
    assert csv.field_size_limit() == schema.CSV_FIELD_LIMIT
    for bound in (schema.MAX_PARAMS_BYTES, schema.MAX_RESULT_BYTES, schema.MAX_ERROR_CHARS, schema.MAX_LOG_CHARS,
                  schema.MAX_NAME_CHARS, schema.MAX_LEASE_ID_CHARS, schema.MAX_REPO_ID_CHARS, schema.MAX_TASK_ID_CHARS):
        assert bound + 1 <= schema.CSV_FIELD_LIMIT / 2 + 1  # + 1: the apostrophe in front of neutralised text


# ---------------------------------------------------------------- every column type keeps its contract

# A boolean column as a later release would declare one: no column of this release is boolean yet.
PINNED = schema.Column("pinned", schema.BooleanKind(), False, "9.9.9", "pinned", "kept at the top")
KINDS = [*COLUMNS, PINNED]

VALUES = {
    "id": st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True).filter(lambda v: v not in schema.NA_CELLS),
    "status": st.sampled_from(list(schema.Status)),
    "model_id": st.from_regex(r"[a-z0-9]{1,8}/[a-z0-9][a-z0-9._-]{0,6}[a-z0-9]", fullmatch=True).filter(
        lambda repo: ".." not in repo and "--" not in repo and not repo.endswith(".git")),
    "dataset_id": st.sampled_from(["acme/data", "stanfordnlp/imdb", "a/b.c_d-e"]),
    "hardware": st.sampled_from(["t4-small", "a100-large", "cpu-basic", "h200x8"]),
    "params": st.dictionaries(st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=8), st.booleans(),
                                                              st.floats(allow_nan=False, allow_infinity=False)),
                              max_size=4),
    "priority": st.integers(-10**9, 10**9),
    "attempts": st.integers(0, 10**6),
    "max_attempts": st.integers(0, 10**6),
    "timeout_s": st.integers(0, 10**9),
    "gpu_seconds": st.one_of(st.none(), st.floats(0, 1e9, allow_nan=False)),
    "cost_usd": st.one_of(st.none(), st.floats(0, 1e6, allow_nan=False)),
    "result": st.one_of(st.none(), st.dictionaries(st.text(max_size=8), st.floats(allow_nan=False, allow_infinity=False),
                                                   min_size=1, max_size=4)),
    "pinned": st.booleans(),
}
TIMES = st.one_of(st.none(), st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2999, 1, 1),
                                          timezones=st.just(timezone.utc)).map(lambda d: d.replace(microsecond=0)))
TEXTS = st.text(max_size=40)


def _values(column):
    if column.name in VALUES:
        return VALUES[column.name]
    return TIMES if isinstance(column.kind, schema.TimeKind) else TEXTS


@pytest.mark.parametrize("column", KINDS, ids=lambda c: c.name)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_written_value_reads_back_and_its_stored_cell_is_canonical(column, data):
    value = data.draw(_values(column))
    plain = column.write(value)
    back = column.read(plain)
    if column.name == "gpu_seconds" or column.name == "cost_usd":
        assert back == (None if value is None else round(value, 6))
    else:
        assert back == value
    stored = schema.neutralise(plain) if column.free_text else plain
    assert codec.canonical_cell(column, stored) == stored
    assert schema.restore(stored) == plain if column.free_text else stored == plain


@pytest.mark.parametrize("column", KINDS, ids=lambda c: c.name)
@settings(max_examples=80, deadline=None)
@given(cell=st.one_of(st.text(max_size=30), st.sampled_from(["", " ", "0", "0.0", "3.0", "1e3", "-1", "nan", "NaN",
                                                             "None", "TRUE", "false", "pending", " Done ", "{}",
                                                             "{\"a\": 1}", "2026-01-01T00:00:00Z", "2026-02-29T00:00:00Z",
                                                             "2024-02-29 10:00:00+01:00", "=1+1", "'x", "12.5"])))
def test_normalising_a_cell_is_idempotent_and_the_fast_path_only_passes_canonical_cells(column, cell):
    try:
        canonical = codec.canonical_cell(column, cell)
    except ValidationError as exc:
        assert exc.field == column.name
        assert column.kind.unknown({cell}) == {cell}  # the fast path never waves a refused cell through
        return
    assert codec.canonical_cell(column, canonical) == canonical
    if not column.kind.unknown({cell}):
        assert canonical == cell


@pytest.mark.parametrize("text, value", [("true", True), ("TRUE", True), ("True", True), (" yes ", True), ("1", True),
                                         ("1.0", True), ("FALSE", False), ("False", False), ("no", False), ("0", False)])
def test_a_boolean_cell_reads_as_pandas_and_spreadsheets_write_it_and_is_written_true_or_false(text, value):
    assert PINNED.read(text) is value
    assert codec.canonical_cell(PINNED, text) == ("true" if value else "false")
    assert PINNED.read("") is False
    with pytest.raises(ValidationError, match="expected true or false, got 'maybe'"):
        PINNED.read("maybe")
