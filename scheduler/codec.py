"""tasks.csv <-> Table: the file as people and their tools write it, read into the schema's columns.

`parse` reads what pandas, spreadsheets and text editors produce: a BOM, CRLF/LF/CR line endings, a
missing final newline, quoted newlines, blank and comma-only rows, columns in any order and any case,
columns of an older release missing (their defaults) or of a newer one present (kept as they are),
integral floats in integer columns, `NaN`/`None` where pandas meant an empty cell, status in another
case. Everything else is refused with its line, column and value (CSVFormatError): a file that does
not parse is never overwritten. `dump` writes the canonical form: the schema's columns in order, then
the unknown ones, CRLF, minimal quoting, free text behind an apostrophe where a spreadsheet or pandas
would not keep it as text. `inspect` lists every problem and every change the next write makes.

A Table keeps rows as stored text and turns a row into a Task only when asked. A read is one C-level
CSV parse plus a check of each column's distinct values against the patterns of its canonical form
(schema.Kind.unknown): Python works only on the distinct cells those patterns cannot vouch for, and
on each distinct JSON object, not on every cell of a 100k-row queue.
"""

from __future__ import annotations

import csv
import gc
import hashlib
import io
import logging
import operator
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import accumulate, compress, repeat
from typing import Iterable, Iterator, Sequence

from . import schema
from .errors import CSVFormatError, ValidationError
from .schema import HEADER_LINE, NAMES, Status, is_missing, neutralise, restore
from .tasks import Task
from .validation import show_value

COLUMNS = NAMES  # the column names, in the order the file is written
NCOLS = len(NAMES)
COL = {name: i for i, name in enumerate(NAMES)}
I_ID, I_STATUS = COL["id"], COL["status"]
TEXT_COLUMNS = frozenset(i for i, c in enumerate(schema.COLUMNS) if c.free_text)
LEGACY_HARDWARE = "t4-medium"  # what the guide's sketch requested for every task
_STATUS_VALUES = frozenset(s.value for s in Status)
_BLANKISH = re.compile(r'[\s,"]*')
_EXOTIC_BREAKS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_log = logging.getLogger(__name__)
_told: set[tuple] = set()


@dataclass(frozen=True)
class Fix:
    """One thing the next write changes: `line` and `column` (1-based, in the file as read; column None
    for the whole line), the column's `field` name when it is about one cell, and what changes."""

    line: int
    column: int | None
    field: str | None
    change: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", column {self.column}" if self.column else "")
        return f"{where}{f' ({self.field})' if self.field else ''}: {self.change}"


@dataclass
class Table:
    """The rows of tasks.csv in stored form. Transforms build new Tables; they never mutate one."""

    rows: list[list[str]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # physical line where each row starts; 0 for new rows
    legacy: bool = False  # read from the guide's headerless file: the next write migrates it
    _index: dict[str, int] | None = field(default=None, repr=False, compare=False)
    # Each row's text as read, reused on write when the row is canonical and did not change: rewriting
    # 100k unchanged rows through the csv module would cost more than everything else a claim does.
    raw: list[str | None] | None = field(default=None, repr=False, compare=False)
    # Columns this release does not know, kept after the schema's in every row (cells rows[i][NCOLS:]).
    extras: tuple[str, ...] = ()

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
            return Task.from_cells({name: restore(row[j]) if j in TEXT_COLUMNS else row[j]
                                    for j, name in enumerate(NAMES)})
        except ValidationError as exc:
            raise CSVFormatError(exc.message, self.lines[i] or 0, COL.get(exc.field, -1) + 1 or None, exc.field) from None

    def tasks(self, indices: Iterable[int] | None = None) -> list[Task]:
        return [self.task(i) for i in (range(len(self.rows)) if indices is None else indices)]

    def indices_with_status(self, statuses: Iterable[Status | str]) -> list[int]:
        wanted = {Status(s).value for s in statuses}
        return list(compress(range(len(self.rows)), map(wanted.__contains__, map(operator.itemgetter(I_STATUS), self.rows))))

    # -- pure updates --

    def with_task(self, i: int, task: Task) -> "Table":
        return self.with_tasks({i: task})

    def with_tasks(self, updates: dict[int, Task]) -> "Table":
        """The table with these rows replaced; a row's cells in unknown columns stay as they were."""
        rows = list(self.rows)
        raw = list(self.raw) if self.raw is not None else None
        for i, task in updates.items():
            rows[i] = to_row(task) + rows[i][NCOLS:]
            if raw is not None:
                raw[i] = None
        return Table(rows, self.lines, self.legacy, self._index, raw, self.extras)

    def appended(self, tasks: Sequence[Task]) -> "Table":
        raw = self.raw + [None] * len(tasks) if self.raw is not None else None
        blank = [""] * len(self.extras)
        return Table(self.rows + [to_row(t) + blank for t in tasks], self.lines + [0] * len(tasks), self.legacy,
                     None, raw, self.extras)

    def without(self, indices: Iterable[int]) -> "Table":
        drop = set(indices)
        keep = [i for i in range(len(self.rows)) if i not in drop]
        return self.take(keep)

    def take(self, indices: Iterable[int]) -> "Table":
        """These rows (whole, unknown columns included), in this order."""
        keep = list(indices)
        raw = [self.raw[i] for i in keep] if self.raw is not None else None
        return Table([self.rows[i] for i in keep], [self.lines[i] for i in keep], self.legacy, None, raw, self.extras)

    def merged(self, other: "Table") -> "Table":
        """This table plus the rows of `other` whose id it does not have yet, unknown columns united by name
        (an archive receiving rows: re-sending rows an unacknowledged write already stored adds nothing)."""
        extras = self.extras + tuple(name for name in other.extras if name not in self.extras)
        table = self if extras == self.extras else self._widened(extras)
        position = {name: NCOLS + k for k, name in enumerate(extras)}
        fresh = [i for i, row in enumerate(other.rows) if row[I_ID] not in table.index]
        rows = []
        for i in fresh:
            row = other.rows[i]
            out = row[:NCOLS] + [""] * len(extras)
            for k, name in enumerate(other.extras):
                out[position[name]] = row[NCOLS + k]
            rows.append(out)
        same_layout = other.extras == extras and other.raw is not None
        raw = (table.raw + ([other.raw[i] for i in fresh] if same_layout else [None] * len(fresh))
               if table.raw is not None else None)
        return Table(table.rows + rows, table.lines + [0] * len(fresh), table.legacy, None, raw, extras)

    def _widened(self, extras: tuple[str, ...]) -> "Table":
        pad = [""] * (len(extras) - len(self.extras))
        return Table([row + pad for row in self.rows], self.lines, self.legacy, self._index, None, extras)

    def as_written(self) -> "Table":
        """The table as reading back what `dump` wrote gives it (the guide's format migrated)."""
        return Table(self.rows, self.lines, False, self._index, self.raw, self.extras)


def to_row(task: Task) -> list[str]:
    """The stored cells of a task. Raises ValidationError (LimitExceeded for an oversized value) naming the
    column and the task before anything is written: dump never writes what parse would refuse."""
    cells = task.to_cells()
    for j in TEXT_COLUMNS:
        cells[j] = neutralise(cells[j])
    return cells


def dump(table: Table) -> bytes:
    """The canonical bytes of a table: header, then each row (CRLF, minimal quoting, UTF-8, no BOM)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if table.extras:
        writer.writerow(list(NAMES) + list(table.extras))
    else:
        out.write(HEADER_LINE + "\r\n")
    if table.raw is None:
        writer.writerows(table.rows)
        return out.getvalue().encode("utf-8")
    header = out.getvalue()
    texts = list(table.raw)
    for i in compress(range(len(texts)), map(operator.is_, texts, repeat(None))):
        out.seek(0)
        out.truncate()
        writer.writerow(table.rows[i])
        texts[i] = out.getvalue()
    return (header + "".join(texts)).encode("utf-8")


def template() -> bytes:
    """tasks_template.csv: the header and one example row (never run: it is CANCELLED)."""
    from datetime import datetime, timezone

    example = Task(id="01JEXAMPLE0000000000000000", status=Status.CANCELLED, model_id="openai-community/gpt2",
                   dataset_id="stanfordnlp/imdb", params={"epochs": 1, "learning_rate": 5e-05},
                   submitted_at=datetime(2026, 1, 1, tzinfo=timezone.utc), submitted_by="example-user",
                   finished_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
                   error="example row: the header above is the format; this row is never run")
    return dump(Table().appended([example]))


# ---------------------------------------------------------------- reading


@dataclass
class Inspection:
    """What `inspect` found: the table (None when the file is refused), every problem (CSVFormatError,
    in file order), what the next write changes, and whether the file is already canonical."""

    table: Table | None
    problems: list[CSVFormatError]
    fixes: list[Fix]
    canonical: bool


def parse(data: bytes | None, name: str = "tasks.csv") -> Table:
    """Read tasks.csv. Raises CSVFormatError naming the line, the column and the value of the first problem."""
    reader = _Reader(data, name, collect=False)
    table = reader.read()
    if reader.problems:
        raise min(reader.problems, key=_position)
    return table


def inspect(data: bytes | None, name: str = "tasks.csv") -> Inspection:
    """Every problem of the file and every change the next write makes (for `space-scheduler check`)."""
    reader = _Reader(data, name, collect=True)
    try:
        table = reader.read()
    except CSVFormatError as exc:  # the structure is broken: nothing further can be read
        return Inspection(None, [exc], [], False)
    problems = sorted(reader.problems, key=_position)
    if problems:
        return Inspection(None, problems, sorted(reader.fixes, key=_position), False)
    return Inspection(table, [], sorted(reader.fixes, key=_position), dump(table) == (data or b""))


def _position(item) -> tuple[int, int]:
    return item.line, item.column or 0


@contextmanager
def _no_gc() -> Iterator[None]:
    # The parse allocates one list per row and no cycles: collecting in between only costs time (a third).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Reader:
    """One read of one file. `problems` collects cell-level errors; a broken structure raises at once."""

    def __init__(self, data: bytes | None, name: str, collect: bool):
        self.data = data or b""
        self.name = name
        self.collect = collect  # record every change (for inspect), not only problems
        self.problems: list[CSVFormatError] = []
        self.fixes: list[Fix] = []

    def fix(self, line: int, column: int | None, field: str | None, change: str) -> None:
        if self.collect:
            self.fixes.append(Fix(line, column, field, change))

    def read(self) -> Table:
        if not self.data:
            self.fix(1, None, None, "the file is empty: the header is written")
            return Table(raw=[])
        text = self._decode()
        with _no_gc():
            rows, lines, raw = self._records(text)
        rows, lines, raw = self._drop_blank(rows, lines, raw)
        if not rows:
            self.fix(1, None, None, "no header: the header is written")
            return Table(raw=[])
        header = rows[0]
        if _looks_legacy(header):
            self.fix(1, None, None, "the guide's headerless model_id,dataset_id,STATUS file: migrated to the full header")
            return _from_legacy(rows, lines)
        if self.collect and any(not text.endswith("\r\n") for text in raw if text.endswith(("\n", "\r"))):
            self.fix(lines[0], None, None, "line endings written as CRLF")
        layout = _Layout(header, lines[0], self)
        body, body_lines, body_raw = layout.arrange(rows[1:], lines[1:], raw[1:])
        with _no_gc():
            self._check_cells(body, body_lines, body_raw, layout)
        index = self._check_ids(body, body_lines, layout)
        self._tell(layout)
        return Table(body, body_lines, False, index, body_raw, layout.extras)

    def _decode(self) -> str:
        try:
            text = self.data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            before = self.data[: exc.start].decode("utf-8", "replace")
            line, column = _offset_position(before, len(before))
            raise CSVFormatError(f"{self.name} is not UTF-8 text (byte 0x{self.data[exc.start]:02x}); "
                                 "save it as UTF-8 (a spreadsheet's 'CSV UTF-8')", line, column) from None
        if self.data.startswith(b"\xef\xbb\xbf"):
            self.fix(1, None, None, "byte order mark removed")
        return text

    def _records(self, text: str) -> tuple[list[list[str]], list[int], list[str]]:
        """Records, the physical line each starts on, and each record's text (line ending included)."""
        # str.splitlines is the csv module's own split (LF, CRLF, CR) unless the text holds one of the other
        # characters it also splits on.
        exotic = _EXOTIC_BREAKS.search(text) if not text.isascii() else any(c in text for c in "\x0b\x0c\x1c\x1d\x1e")
        physical = io.StringIO(text, newline="").readlines() if exotic else text.splitlines(keepends=True)
        if physical and not physical[-1].endswith(("\n", "\r")):
            self.fix(len(physical), None, None, "final line ending added")
        try:
            rows = list(csv.reader(physical, strict=True))
        except csv.Error:
            raise self._syntax_error(text, physical) from None
        if len(rows) == len(physical):  # no record spans lines: record i is line i + 1
            return rows, list(range(1, len(rows) + 1)), physical
        # A line starts a record when the quotes before it are balanced (an escaped quote counts twice).
        quotes = accumulate(map(operator.methodcaller("count", '"'), physical), initial=0)
        firsts = list(compress(range(len(physical)), map(operator.not_, map(operator.and_, quotes, repeat(1)))))
        if len(firsts) != len(rows):  # a quote inside an unquoted cell: count the way the csv module does
            return self._records_slowly(physical)
        raw = list(map("".join, map(physical.__getitem__, map(slice, firsts, [*firsts[1:], len(physical)]))))
        return rows, list(map(operator.add, firsts, repeat(1))), raw

    def _records_slowly(self, physical: list[str]) -> tuple[list[list[str]], list[int], list[str]]:
        reader = csv.reader(physical, strict=True)
        rows, starts, raw = [], [], []
        start = 1
        for row in reader:
            end = reader.line_num
            rows.append(row)
            starts.append(start)
            raw.append("".join(physical[start - 1:end]))
            start = end + 1
        return rows, starts, raw

    def _syntax_error(self, text: str, physical: list[str]) -> CSVFormatError:
        reader = csv.reader(physical, strict=True)
        start = 1
        try:
            for _ in reader:
                start = reader.line_num + 1
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                return CSVFormatError(f"a cell longer than {csv.field_size_limit():,} characters (no column "
                                      f"allows more than {schema.MAX_PARAMS_BYTES + 1:,})", start)
            line, column, reason = _locate_quote_error(text, start)
            return CSVFormatError(reason or str(exc), line, column)
        return CSVFormatError("could not parse this file", start)

    def _drop_blank(self, rows, lines, raw):
        """Empty, whitespace-only and comma-only rows (spreadsheets save them) are not records."""
        blank = [i for i in compress(range(len(raw)), map(_BLANKISH.fullmatch, raw))
                 if all(not cell.strip() for cell in rows[i])]
        if not blank:
            return rows, lines, raw
        for i in blank:
            self.fix(lines[i], None, None, "blank row dropped")
        drop = set(blank)
        keep = [i for i in range(len(rows)) if i not in drop]
        return [rows[i] for i in keep], [lines[i] for i in keep], [raw[i] for i in keep]

    def _check_cells(self, body: list[list[str]], lines: list[int], raw: list[str | None] | None,
                     layout: "_Layout") -> None:
        """Each column's distinct cells: the canonical ones pass at C speed; the others are normalised
        (`fix`) or refused (`problems`)."""
        for j, column in enumerate(schema.COLUMNS):
            if layout.source[j] is None:
                continue  # a missing column: every cell is its default, canonical already
            cells = set(map(operator.itemgetter(j), body))
            changes: dict[str, str] = {}
            errors: dict[str, ValidationError] = {}
            for cell in column.kind.unknown(cells):
                try:
                    canonical = canonical_cell(column, cell)
                except ValidationError as exc:
                    errors[cell] = exc
                else:
                    if canonical != cell:
                        changes[cell] = canonical
            if not changes and not errors:
                continue
            file_column = layout.source[j] + 1
            for i, row in enumerate(body):
                cell = row[j]
                if cell in changes:
                    row[j] = changes[cell]
                    if raw is not None:
                        raw[i] = None
                    self.fix(lines[i], file_column, column.name, f"{show_value(cell)} -> {show_value(changes[cell])}")
                elif cell in errors:
                    self.problems.append(CSVFormatError(errors[cell].message, lines[i], file_column, column.name))
                    if not self.collect:
                        errors.pop(cell)  # the first line of each bad value is enough to refuse the file

    def _check_ids(self, body, lines, layout) -> dict[str, int]:
        index = {row[I_ID]: i for i, row in enumerate(body)}
        if len(index) == len(body):
            return index
        index = {}
        for i, row in enumerate(body):
            first = index.setdefault(row[I_ID], i)
            if first != i and row[I_ID]:
                self.problems.append(CSVFormatError(
                    f"duplicate task id {row[I_ID]!r} (also on line {lines[first]})", lines[i],
                    layout.file_column(I_ID), "id"))
        return index

    def _tell(self, layout: "_Layout") -> None:
        """Say once per process and file what this release does with columns it does not know or lacks."""
        if layout.extras and (self.name, "extras", layout.extras) not in _told:
            _told.add((self.name, "extras", layout.extras))
            _log.warning("%s has column(s) %s that release %s does not know: kept as they are on every write",
                         self.name, ", ".join(map(repr, layout.extras)), schema.RELEASE)
        missing = tuple(c.name for j, c in enumerate(schema.COLUMNS) if layout.source[j] is None)
        if missing and (self.name, "missing", missing) not in _told:
            _told.add((self.name, "missing", missing))
            _log.info("%s has no column(s) %s (an older release, or a person, wrote it): read with their defaults; "
                      "the next write adds them", self.name, ", ".join(missing))


class _Layout:
    """Where each schema column is in the file, which columns are unknown, and which are dropped."""

    def __init__(self, header: list[str], line: int, reader: _Reader):
        self.reader = reader
        self.line = line  # of the header: 1 unless blank lines come first
        self.width = len(header)
        self.source: list[int | None] = [None] * NCOLS  # file column (0-based) of each schema column
        self.extra_sources: list[int] = []
        self.unnamed: list[int] = []
        for k, cell in enumerate(header):
            key = cell.strip().lower()
            if key in COL:
                j = COL[key]
                if self.source[j] is not None:
                    raise CSVFormatError(f"column {NAMES[j]!r} appears twice in the header (columns "
                                         f"{self.source[j] + 1} and {k + 1})", line, k + 1)
                self.source[j] = k
                if cell != key:
                    reader.fix(line, k + 1, None, f"column {cell!r} written as {key!r}")
            elif not cell.strip():
                self.unnamed.append(k)
            else:
                self.extra_sources.append(k)
        missing = [schema.COLUMNS[j] for j in range(NCOLS) if self.source[j] is None]
        required = [c.name for c in missing if c.required]
        if required:
            hint = (" (a list of new tasks? add it with `space-scheduler add --from-csv FILE`)"
                    if {"model_id", "dataset_id"} - set(required) == {"model_id", "dataset_id"} else "")
            raise CSVFormatError(f"missing column(s) {', '.join(map(repr, required))} in the header "
                                 f"(expected: {HEADER_LINE}){hint}", line, len(header) + 1)
        for column in missing:
            cells = f"{show_value(column.default_cell)} in every row" if column.default_cell else "empty"
            reader.fix(line, None, column.name, f"column added (new in {column.since}), {cells}")
        self.header = header
        self.extras: tuple[str, ...] = ()

    def file_column(self, j: int) -> int | None:
        return None if self.source[j] is None else self.source[j] + 1

    def arrange(self, rows: list[list[str]], lines: list[int], raw: list[str]):
        """Rows in the canonical layout (schema columns, then unknown ones), and which raw texts stay valid."""
        refitted = self._fit_widths(rows, lines)
        # An unnamed column with values is kept like any unknown column; an empty one (trailing commas) goes.
        kept_unnamed = [k for k in self.unnamed if any(row[k].strip() for row in rows)]
        for k in self.unnamed:
            if k not in kept_unnamed:
                self.reader.fix(self.line, k + 1, None, "empty column without a name dropped")
        extra_sources = sorted(self.extra_sources + kept_unnamed)
        self.extras = tuple(self.header[k] for k in extra_sources)
        order = [*self.source, *extra_sources]
        canonical = order == list(range(len(order))) and len(order) == self.width
        if not canonical:
            if [k for k in order if k is not None] != sorted(k for k in order if k is not None):
                self.reader.fix(self.line, None, None, "columns written in the schema's order, unknown ones last")
            defaults = [c.default_cell for c in schema.COLUMNS]
            tail = self.width
            positions = [k if k is not None else tail + j for j, k in enumerate(order[:NCOLS])] + extra_sources
            getter = operator.itemgetter(*positions)
            rows = [list(getter(row + defaults)) for row in rows]
        body_raw: list[str | None] | None = None
        if canonical:
            body_raw = list(raw)
            not_crlf = map(operator.not_, map(operator.methodcaller("endswith", "\r\n"), raw))
            # A quoted first cell means a writer that quotes everything (the id never needs quotes).
            quoted = list(compress(range(len(raw)), map(operator.methodcaller("startswith", '"'), raw)))
            for i in [*compress(range(len(raw)), not_crlf), *quoted, *refitted]:
                body_raw[i] = None
            if quoted:
                self.reader.fix(lines[quoted[0]], None, None, "cells quoted only where needed")
        return rows, lines, body_raw

    def _fit_widths(self, rows: list[list[str]], lines: list[int]) -> list[int]:
        """A row may lack trailing cells of unnamed columns, or have extra trailing cells that are blank.
        Returns the rows changed."""
        widths = set(map(len, rows))
        if widths <= {self.width}:
            return []
        refitted = []
        unnamed_tail = 0
        for k in reversed(range(self.width)):
            if k not in self.unnamed:
                break
            unnamed_tail += 1
        for i, row in enumerate(rows):
            if len(row) == self.width:
                continue
            if len(row) > self.width and not any(cell.strip() for cell in row[self.width:]):
                self.reader.fix(lines[i], self.width + 1, None, f"{len(row) - self.width} blank trailing cell(s) dropped")
                del row[self.width:]
            elif self.width - unnamed_tail <= len(row) < self.width:
                row.extend([""] * (self.width - len(row)))
            else:
                raise CSVFormatError(f"expected {self.width} fields (as in the header), found {len(row)}", lines[i],
                                     min(len(row), self.width) + 1)
            refitted.append(i)
        return refitted


def canonical_cell(column: schema.Column, stored: str) -> str:
    """The canonical stored form of a cell. Raises ValidationError (with the value) for a cell the column refuses."""
    plain = "" if is_missing(stored) else restore(stored) if column.free_text else stored
    if not plain or (not column.free_text and not plain.strip()):
        column.read(plain)  # raises for a required column
        return column.default_cell
    try:
        canonical = column.kind.canonical(plain, column.name)
    except schema.LimitExceeded:
        raise
    except ValidationError as exc:
        # The reader shows the value; the message of a kind may not (JSON, sizes).
        message = exc.message if show_value(plain) in exc.message else f"{exc.message}: {show_value(plain)}"
        raise ValidationError(column.name, message) from None
    return neutralise(canonical) if column.free_text else canonical


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
        task = Task(id=f"legacy-{n:06d}-{digest}", model_id=model_id, dataset_id=dataset_id,
                    hardware=LEGACY_HARDWARE, status=Status(status.upper()))
        try:
            to_row(task)
        except ValidationError as exc:
            raise CSVFormatError(exc.message.split(": ", 1)[-1], line, 1 + (exc.field == "dataset_id"), exc.field) from None
        tasks.append(task)
    table = Table().appended(tasks)
    return Table(table.rows, list(lines), True)


def _offset_position(text: str, offset: int) -> tuple[int, int]:
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
                return (*_offset_position(text, i), "could not parse this record")
        elif state == "quoted":
            if ch == '"':
                state = "quote"
        elif state == "quote":
            if ch == '"':
                state = "quoted"
            elif ch == ",":
                state = "start"
            elif ch in "\r\n":
                return (*_offset_position(text, i), "could not parse this record")
            else:
                line, column = _offset_position(text, i)
                return line, column, f"unexpected {ch!r} after a closing quote (a quote inside a quoted field must be doubled)"
        i += 1
    if state == "quoted":
        line, column = _offset_position(text, opened)
        return line, column, "a quoted field opened here is never closed"
    return start_line, None, "could not parse this record"
