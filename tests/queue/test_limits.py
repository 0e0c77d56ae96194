"""Every cell has a bound the writer enforces and the reader accepts: nothing is committed that the reader refuses."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler import codec, schema
from scheduler.errors import CSVFormatError, ValidationError
from scheduler.queue import TaskQueue
from scheduler.schema import LimitExceeded
from scheduler.tasks import Status, Task

from .people_files import lease_of


def _json_of_bytes(size: int) -> dict:
    """An object whose JSON is exactly `size` UTF-8 bytes (with 2-byte characters in it)."""
    base = len(json.dumps({"x": ""}, ensure_ascii=False).encode())
    return {"x": "é" * ((size - base) // 2) + "a" * ((size - base) % 2)}


BOUNDED = [  # column, a value exactly at its bound, the unit
    ("params", _json_of_bytes(schema.MAX_PARAMS_BYTES), "bytes"),
    ("result", _json_of_bytes(schema.MAX_RESULT_BYTES), "bytes"),
    ("error", "e" * schema.MAX_ERROR_CHARS, "characters"),
    ("log", "line\n" * (schema.MAX_LOG_CHARS // 5), "characters"),
    ("submitted_by", "=" * schema.MAX_NAME_CHARS, "characters"),
    ("worker", "w" * schema.MAX_NAME_CHARS, "characters"),
    ("lease_id", "l" * schema.MAX_LEASE_ID_CHARS, "characters"),
]


def _over(value):
    if isinstance(value, dict):
        return {"x": value["x"] + "a"}
    return value + "x"


@pytest.mark.parametrize("column, at_bound, unit", BOUNDED, ids=[b[0] for b in BOUNDED])
def test_a_value_at_its_bound_is_written_and_read_back_and_one_over_is_refused_naming_task_and_limit(
        tmp_path, column, at_bound, unit):
    queue = TaskQueue.open(str(tmp_path / "q"))
    task = queue.add(Task.new("acme/m", "acme/d").replace(**{column: at_bound}))
    assert getattr(queue.get(task.id), column) == at_bound
    before = (tmp_path / "q" / "tasks.csv").read_bytes()

    with pytest.raises(LimitExceeded) as info:
        queue.add(Task.new("acme/m", "acme/d").replace(**{column: _over(at_bound)}))
    error = info.value
    assert error.field == column and error.unit.startswith(unit) and error.size == error.limit + 1
    assert error.task_id and error.task_id in str(error) and f"{error.limit:,}" in str(error)
    assert (tmp_path / "q" / "tasks.csv").read_bytes() == before


def test_an_oversized_result_is_refused_by_complete_before_anything_is_written(tmp_path):
    queue = TaskQueue.open(str(tmp_path / "q"))
    task = queue.add(Task.new("acme/m", "acme/d"))
    claimed = queue.claim("w", 60)
    before = (tmp_path / "q" / "tasks.csv").read_bytes()
    with pytest.raises(LimitExceeded, match=f"task {task.id}: .* at most 16,384"):
        queue.complete(claimed.id, lease_of(claimed), {"predictions": list(range(10_000))})
    assert (tmp_path / "q" / "tasks.csv").read_bytes() == before
    assert queue.get(task.id).status is Status.RUNNING


@pytest.mark.parametrize("changes, field", [
    ({"result": {"loss": math.nan}}, "result"),
    ({"result": {"loss": math.inf}}, "result"),
    ({"gpu_seconds": math.nan}, "gpu_seconds"),
    ({"cost_usd": -math.inf}, "cost_usd"),
    ({"error": "lone \ud800 surrogate"}, "error"),
    ({"priority": 10**12}, "priority"),
    ({"hardware": "no such/flavor"}, "hardware"),
    ({"params": {"x": object()}}, "params"),
])
def test_a_value_the_reader_would_refuse_is_never_written(tmp_path, changes, field):
    queue = TaskQueue.open(str(tmp_path / "q"))
    queue.init()
    before = (tmp_path / "q" / "tasks.csv").read_bytes()
    task = Task.new("acme/m", "acme/d").replace(**changes)
    with pytest.raises(ValidationError) as info:
        queue.add(task)
    assert info.value.field == field and f"task {task.id}" in str(info.value)
    assert (tmp_path / "q" / "tasks.csv").read_bytes() == before


def test_the_reader_refuses_a_cell_over_its_bound_with_line_column_and_size():
    data = codec.dump(codec.Table().appended([Task.new("acme/m", "acme/d", submitted_by="bob")]))
    data = data.replace(b",bob,", b"," + b"b" * (schema.MAX_NAME_CHARS + 1) + b",")
    with pytest.raises(CSVFormatError) as info:
        codec.parse(data)
    assert (info.value.line, info.value.column, info.value.field) == (2, 9, "submitted_by")
    assert "201 characters, at most 200" in str(info.value)


def test_a_cell_larger_than_the_csv_module_can_read_is_refused_with_its_line():
    good = codec.dump(codec.Table().appended([Task.new("acme/m", "acme/d")]))
    data = good + good.split(b"\r\n")[1].replace(b",t4-small,", b",t4-small," + b"x" * 200_000 + b",", 1) + b"\r\n"
    with pytest.raises(CSVFormatError, match="line 3: a cell longer than 131,072 characters"):
        codec.parse(data)


ANY_VALUE = st.one_of(st.text(max_size=30), st.floats(), st.integers(-10**13, 10**13), st.none(), st.booleans())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.dictionaries(st.sampled_from(["error", "log", "submitted_by", "worker", "lease_id"]),
                         st.one_of(st.text(), st.text(min_size=190, max_size=4100)), max_size=3),
    numbers=st.dictionaries(st.sampled_from(["gpu_seconds", "cost_usd", "priority", "attempts", "timeout_s"]), ANY_VALUE,
                            max_size=2),
    result=st.one_of(st.none(), st.dictionaries(st.text(max_size=10), ANY_VALUE, max_size=4),
                     st.builds(lambda n: {"blob": "x" * n}, st.integers(16_370, 16_390))),
)
def test_whatever_a_task_holds_dump_writes_only_what_parse_reads_back(text, numbers, result):
    task = Task.new("acme/m", "acme/d").replace(**text, **numbers, result=result)
    try:
        data = codec.dump(codec.Table().appended([task]))
    except ValidationError as exc:
        assert exc.field in {*text, *numbers, "result"}
        return
    (back,) = codec.parse(data).tasks()
    assert back.to_cells() == task.to_cells()
