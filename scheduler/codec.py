"""tasks.csv <-> Table: RFC 4180 text, spreadsheet-formula neutralisation, the guide's legacy format.

A Table keeps rows as stored text and turns a row into a Task only when asked, so a queue of
100k finished tasks costs one C-level CSV parse per read, not 100k objects.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .errors import CSVFormatError, ValidationError
from .tasks import COLUMNS, HEADER_LINE, Status, Task

NCOLS = len(COLUMNS)
COL = {name: i for i, name in enumerate(COLUMNS)}
I_ID, I_STATUS = COL["id"], COL["status"]
_STATUS_VALUES = frozenset(s.value for s in Status)
# Only free text can carry a formula; numbers and times are written by us and stay numeric.
TEXT_COLUMNS = frozenset(
    COL[name] for name in ("model_id", "dataset_id", "params", "submitted_by", "worker", "result", "error", "log")
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")
LEGACY_HARDWARE = "t4-medium"  # what the guide's sketch requested for every task


def neutralise(cell: str) -> str:
    """A leading apostrophe makes a spreadsheet show the text instead of running it (and escapes itself)."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def restore(cell: str) -> str:
    return cell[1:] if cell.startswith("'") else cell


@dataclass
class Table:
    """The rows of tasks.csv in stored form. Transforms build new Tables; they never mutate one."""

    rows: list[list[str]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # physical line where each row starts; 0 for new rows
    legacy: bool = False  # read from the guide's headerless file: the next write migrates it
    _index: dict[str, int] | None = field(default=None, repr=False, compare=False)
    # Each row's text as read, reused on write when the row did not change: rewriting 100k unchanged
    # rows through the csv module would cost more than everything else a claim does.
    raw: list[str | None] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def index(self) -> dict[str, int]:
        if self._index is None:
            self._index = {row[I_ID]: i for i, row in enumerate(self.rows)}
        return self._index

    def find(self, task_id: str) -> int | None:
        return self.index.get(task_id)

    def task(self, i: int) -> Task:
        row = self.rows[i]
        try:
            return Task.from_cells({name: restore(row[j]) if j in TEXT_COLUMNS else row[j] for j, name in enumerate(COLUMNS)})
        except ValidationError as exc:
            raise CSVFormatError(exc.message, self.lines[i] or 0, COL.get(exc.field, -1) + 1 or None, exc.field) from None

    def tasks(self, indices: Iterable[int] | None = None) -> list[Task]:
        return [self.task(i) for i in (range(len(self.rows)) if indices is None else indices)]

    def indices_with_status(self, statuses: Iterable[Status | str]) -> list[int]:
        wanted = {Status(s).value for s in statuses}
        return [i for i, row in enumerate(self.rows) if row[I_STATUS] in wanted]

    # -- pure updates --

    def with_task(self, i: int, task: Task) -> "Table":
        return self.with_tasks({i: task})

    def with_tasks(self, updates: dict[int, Task]) -> "Table":
        rows = list(self.rows)
        raw = list(self.raw) if self.raw is not None else None
        for i, task in updates.items():
            rows[i] = to_row(task)
            if raw is not None:
                raw[i] = None
        return Table(rows, self.lines, self.legacy, self._index, raw)

    def appended(self, tasks: Sequence[Task]) -> "Table":
        raw = self.raw + [None] * len(tasks) if self.raw is not None else None
        return Table(self.rows + [to_row(t) for t in tasks], self.lines + [0] * len(tasks), self.legacy, None, raw)

    def without(self, indices: Iterable[int]) -> "Table":
        drop = set(indices)
        keep = [i for i in range(len(self.rows)) if i not in drop]
        raw = [self.raw[i] for i in keep] if self.raw is not None else None
        return Table([self.rows[i] for i in keep], [self.lines[i] for i in keep], self.legacy, None, raw)


def to_row(task: Task) -> list[str]:
    cells = task.to_cells()
    for j in TEXT_COLUMNS:
        cells[j] = neutralise(cells[j])
    return cells


def dump(table: Table) -> bytes:
    out = io.StringIO()
    out.write(HEADER_LINE + "\r\n")
    writer = csv.writer(out, lineterminator="\r\n")
    if table.raw is None:
        writer.writerows(table.rows)
    else:
        for row, text in zip(table.rows, table.raw):
            if text is None:
                writer.writerow(row)
            else:
                out.write(text)
    return out.getvalue().encode("utf-8")


def parse(data: bytes | None, name: str = "tasks.csv") -> Table:
    """Parse and check every row's shape, id and status. Raises CSVFormatError with line and column."""
    if not data:
        return Table()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line, column = _position(data[: exc.start].decode("utf-8", "replace"), len(data[: exc.start].decode("utf-8", "replace")))
        raise CSVFormatError(f"{name} is not UTF-8 text (byte 0x{data[exc.start]:02x})", line, column) from None
    physical = io.StringIO(text, newline="").readlines()  # the same line split the csv module sees
    reader = csv.reader(physical, strict=True)
    rows: list[list[str]] = []
    lines: list[int] = []
    raw: list[str] = []
    start = 1
    try:
        for row in reader:
            end = reader.line_num
            if row:
                rows.append(row)
                lines.append(start)
                raw.append(physical[start - 1] if end == start else "".join(physical[start - 1:end]))
            start = end + 1
    except csv.Error as exc:
        line, column, reason = _locate_quote_error(text, start)
        raise CSVFormatError(f"{reason or exc}", line, column) from None
    if not rows:
        return Table()
    header = [cell.strip() for cell in rows[0]]
    if _looks_legacy(header):
        return _from_legacy(rows, lines)
    order = _check_header(header)
    body, body_lines = rows[1:], lines[1:]
    # Rows are reused verbatim only when they are already in our canonical form (order, line ending).
    body_raw: list[str | None] | None = raw[1:] if raw[0].endswith("\r\n") else None
    if order is not None:
        body = [[row[k] for k in order] if len(row) == NCOLS else row for row in body]
        body_raw = None
    index: dict[str, int] = {}
    for i, row in enumerate(body):
        line = body_lines[i]
        if len(row) != NCOLS:
            raise CSVFormatError(
                f"expected {NCOLS} fields, found {len(row)}", line, min(len(row), NCOLS) + 1
            )
        status = row[I_STATUS]
        if status not in _STATUS_VALUES:
            raise CSVFormatError(
                f"{status!r} is not a status (expected one of {', '.join(sorted(_STATUS_VALUES))})",
                line, I_STATUS + 1, "status",
            )
        task_id = row[I_ID]
        if not task_id:
            raise CSVFormatError("the task id is empty", line, I_ID + 1, "id")
        if task_id in index:
            raise CSVFormatError(f"duplicate task id {task_id!r} (also on line {body_lines[index[task_id]]})", line, I_ID + 1, "id")
        index[task_id] = i
        if body_raw is not None and not body_raw[i].endswith("\r\n"):
            body_raw[i] = None
    return Table(body, body_lines, False, index, body_raw)


def _check_header(header: list[str]) -> list[int] | None:
    """None when the header is canonical, else the permutation that makes it so."""
    if header == list(COLUMNS):
        return None
    for j, name in enumerate(header):
        if name not in COL:
            raise CSVFormatError(f"unknown column {name!r} in the header (expected: {HEADER_LINE})", 1, j + 1)
        if header.index(name) != j:
            raise CSVFormatError(f"column {name!r} appears twice in the header", 1, j + 1)
    missing = [name for name in COLUMNS if name not in header]
    if missing:
        raise CSVFormatError(f"missing column(s) {', '.join(map(repr, missing))} in the header", 1, len(header) + 1)
    return [header.index(name) for name in COLUMNS]


def _looks_legacy(first: list[str]) -> bool:
    return len(first) == 3 and first[2].strip().upper() in _STATUS_VALUES


def _from_legacy(rows: list[list[str]], lines: list[int]) -> Table:
    """The guide's `model_id,dataset_id,STATUS` rows, with ids derived from their place so every reader agrees."""
    tasks = []
    for n, (row, line) in enumerate(zip(rows, lines)):
        if len(row) != 3:
            raise CSVFormatError(f"expected 3 fields (model_id,dataset_id,STATUS), found {len(row)}", line, min(len(row), 3) + 1)
        model_id, dataset_id, status = (cell.strip() for cell in row)
        if status.upper() not in _STATUS_VALUES:
            raise CSVFormatError(f"{status!r} is not a status", line, 3, "status")
        digest = hashlib.sha1(f"{model_id},{dataset_id}".encode()).hexdigest()[:8]
        tasks.append(Task(id=f"legacy-{n:06d}-{digest}", model_id=model_id, dataset_id=dataset_id,
                          hardware=LEGACY_HARDWARE, status=Status(status.upper())))
    table = Table().appended(tasks)
    return Table(table.rows, list(lines), True)


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _locate_quote_error(text: str, start_line: int) -> tuple[int, int | None, str]:
    """Find the exact character the csv module choked on, scanning from the record's first line."""
    offset = 0
    for _ in range(start_line - 1):
        nl = text.find("\n", offset)
        if nl < 0:
            break
        offset = nl + 1
    state = "start"
    opened = offset
    i = offset
    while i < len(text):
        ch = text[i]
        if state == "start":
            if ch == '"':
                state, opened = "quoted", i
            elif ch in "\r\n":
                return start_line, None, "could not parse this record"
            elif ch != ",":
                state = "plain"
        elif state == "plain":
            if ch == ",":
                state = "start"
            elif ch in "\r\n":
                return (*_position(text, i), "could not parse this record")
        elif state == "quoted":
            if ch == '"':
                state = "quote"
        elif state == "quote":
            if ch == '"':
                state = "quoted"
            elif ch == ",":
                state = "start"
            elif ch in "\r\n":
                return (*_position(text, i), "could not parse this record")
            else:
                line, column = _position(text, i)
                return line, column, f"unexpected {ch!r} after a closing quote (a quote inside a quoted field must be doubled)"
        i += 1
    if state == "quoted":
        line, column = _position(text, opened)
        return line, column, "a quoted field opened here is never closed"
    return start_line, None, "could not parse this record"
