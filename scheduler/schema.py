"""The columns of tasks.csv, declared once: name, type, default, size bound and the release that added each.

Everything else is derived from `COLUMNS`: the order of the Task fields (a test fails when they
drift), how the codec reads and writes each cell, the bounds the worker and the app enforce,
`tasks_template.csv`, the dataset card, and the columns `space-scheduler list` and the dashboard show.

A cell is handled in two forms. The *plain* form is the text a column type reads and writes
(`Column.read` / `Column.write`); the *stored* form is what tasks.csv holds, where free text that a
spreadsheet or pandas would turn into something else (a formula, a number, a boolean, a missing
value) carries a leading apostrophe (see `neutralise`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from enum import Enum
from itertools import filterfalse
from json import scanner as _json_scanner
from typing import Any, Mapping

from . import __version__, validation
from .errors import ValidationError
from .validation import (MAX_ERROR_CHARS, MAX_LEASE_ID_CHARS, MAX_LOG_CHARS, MAX_NAME_CHARS, MAX_PARAMS_BYTES,
                         MAX_PARAMS_DEPTH, MAX_REPO_ID_CHARS, MAX_RESULT_BYTES, MAX_TASK_ID_CHARS, show_value)

# The release whose columns this table lists. A file written by an older release lacks some of them.
RELEASE = __version__

# Python's csv module refuses a field longer than this many characters (csv.field_size_limit()).
# Every bound above stays well under it, so whatever the writer accepts, the reader can read.
CSV_FIELD_LIMIT = 131_072

__all__ = [
    "RELEASE", "CSV_FIELD_LIMIT", "MAX_TASK_ID_CHARS", "MAX_REPO_ID_CHARS", "MAX_NAME_CHARS", "MAX_LEASE_ID_CHARS",
    "MAX_PARAMS_BYTES", "MAX_PARAMS_DEPTH", "MAX_RESULT_BYTES", "MAX_ERROR_CHARS", "MAX_LOG_CHARS",
    "Status", "Column", "COLUMNS", "NAMES", "COLUMN", "HEADER_LINE", "TIME_COLUMNS", "LimitExceeded", "LIST_COLUMNS",
    "DASHBOARD_COLUMNS", "label", "neutralise", "restore", "NA_CELLS", "is_missing",
]


class Status(str, Enum):
    """The status column's values; the transitions between them are in tasks.TRANSITIONS."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    def __str__(self) -> str:
        return self.value


class LimitExceeded(ValidationError):
    """A value too large for its column: `field`, `task_id` (None outside a task), `size` and `limit`
    (in `unit`: "characters" or "bytes")."""

    def __init__(self, field: str, size: int, limit: int, unit: str, task_id: str | None = None):
        self.task_id = task_id
        self.size = size
        self.limit = limit
        self.unit = unit
        where = f"task {task_id}: " if task_id else ""
        super().__init__(field, f"{where}{size:,} {unit}, at most {limit:,} (the {field} column's limit)")


# ---------------------------------------------------------------- stored form: what pandas and spreadsheets see

# Cells pandas reads as a missing value by default (pandas._libs.parsers.STR_NA_VALUES; a test checks
# the copy). Read as an empty cell; free text equal to one of them is stored behind an apostrophe.
NA_CELLS = frozenset({"#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                      "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})
_NA_ALTERNATION = "|".join(re.escape(token) for token in sorted(NA_CELLS, key=len, reverse=True))
# Free text that a spreadsheet would execute (a formula: =, +, -, @ first; tab and CR are what some
# spreadsheets strip), that pandas or a spreadsheet would read as a number, a boolean or a missing
# value, or that starts with the apostrophe itself.
# Fast patterns match one cell. Written with `_ANY` and `_END`, they also stay inside one cell when
# Kind.unknown runs them over a whole column joined by NUL: one regex call per column, not per cell.
_ANY = r"[^\x00]"
_END = r"(?=\x00|\Z)"
_NUMBER = r"[+-]?(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_WORD = r"(?i:[+-]?(?:inf|infinity|nan)|true|false)"
_NEEDS_MARK_RE = re.compile(rf"[=+\-@\t\r'].*|\s*(?:{_NA_ALTERNATION}|{_NUMBER}|{_WORD})\s*", re.DOTALL)
# Stored text that needs no apostrophe, cheaply: no mark, number or word, nothing at either end a mark
# could hide behind (whitespace); exact missing-value markers are taken out by Kind.unknown.
_PLAIN_TEXT_START = rf"(?![=+\-@\t\r'\s])(?!(?:{_NUMBER}|{_WORD}){_END})"


def neutralise(plain: str) -> str:
    """The stored form of free text: behind an apostrophe when a spreadsheet or pandas would not keep it as
    text. Spreadsheets show the text after the apostrophe; `restore` removes it."""
    return "'" + plain if plain and _NEEDS_MARK_RE.fullmatch(plain) else plain


def restore(stored: str) -> str:
    return stored[1:] if stored.startswith("'") else stored


def is_missing(stored: str) -> bool:
    """A cell pandas would read as missing (NaN, <NA>, None...): read as empty."""
    return stored.strip() in NA_CELLS


# ---------------------------------------------------------------- column types


class Kind:
    """How one column's cells are read, written and recognised as already canonical.

    `read(plain)` accepts what people and their tools write (lenient) and raises ValidationError for
    anything else; `write(value)` gives the canonical plain text and raises ValidationError for a value
    that must not be stored. `canonical(plain)` is the canonical text of a cell. `unknown(cells)` returns
    the stored cells it cannot vouch for cheaply (a compiled pattern or a set, so a 100k-row read stays
    fast); those go through `canonical` one by one.
    """

    name = "text"
    free_text = False  # neutralised for spreadsheets, never stripped
    fast: re.Pattern | frozenset = frozenset()

    def read(self, plain: str, field: str) -> Any:
        raise NotImplementedError

    def write(self, value: Any, field: str) -> str:
        raise NotImplementedError

    def canonical(self, plain: str, field: str) -> str:
        return self.write(self.read(plain, field), field)

    def unknown(self, cells: set[str]) -> set[str]:
        # A missing-value marker is an empty cell whatever its column's pattern says ("NA" looks like an id).
        missing = cells & NA_CELLS
        if isinstance(self.fast, frozenset):
            return (cells - self.fast) | missing
        if len(cells) < 100:
            return set(filterfalse(self.fast.fullmatch, cells)) | missing
        joined = "\x00".join(cells) + "\x00"
        if joined.count("\x00") != len(cells):  # a cell holds a NUL itself: one by one
            return set(filterfalse(self.fast.fullmatch, cells)) | missing
        # Each match is one cell: a canonical one, or (captured) one the pattern cannot vouch for.
        bad = set(filter(None, _column_pattern(self.fast).findall(joined)))
        if "" in cells and not self.fast.fullmatch(""):
            bad.add("")
        return bad | missing

    def describe(self) -> str:
        return self.name


_COLUMN_PATTERNS: dict[str, re.Pattern] = {}


def _column_pattern(cell: re.Pattern) -> re.Pattern:
    """The pattern of a cell, for NUL-joined cells: a canonical cell, or the cell captured."""
    if cell.pattern not in _COLUMN_PATTERNS:
        _COLUMN_PATTERNS[cell.pattern] = re.compile(rf"(?:{cell.pattern})\x00|({_ANY}*)\x00")
    return _COLUMN_PATTERNS[cell.pattern]


class TaskIdKind(Kind):
    name = "task id"
    fast = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_TASK_ID_CHARS}}}")

    def read(self, plain: str, field: str) -> str:
        return validation.task_id(plain.strip(), field)

    def write(self, value: Any, field: str) -> str:
        return validation.task_id(value, field)

    def describe(self) -> str:
        return f"1-{MAX_TASK_ID_CHARS} letters, digits, '-' or '_'"


class StatusKind(Kind):
    name = "status"
    fast = frozenset(s.value for s in Status)
    _aliases = {"CANCELED": Status.CANCELLED.value}

    def read(self, plain: str, field: str) -> Status:
        text = plain.strip().upper()
        try:
            return Status(self._aliases.get(text, text))
        except ValueError:
            raise ValidationError(field, f"{show_value(plain)} is not a status "
                                         f"(expected one of {', '.join(sorted(self.fast))})") from None

    def write(self, value: Any, field: str) -> str:
        if isinstance(value, Status):
            return value.value
        return self.read(str(value), field).value

    def describe(self) -> str:
        return ", ".join(s.value for s in Status)


class RepoIdKind(Kind):
    name = "repo id"
    free_text = True
    _part = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
    # Conservative: what it accepts is valid (validation.repo_id has the whole rule and the messages).
    fast = re.compile(rf"(?={_ANY}{{3,{MAX_REPO_ID_CHARS}}}{_END})(?!{_ANY}*--)(?!{_ANY}*\.\.)(?!{_ANY}*\.git{_END})"
                      rf"{_part}/{_part}")

    def read(self, plain: str, field: str) -> str:
        return validation.repo_id(plain, field)

    def write(self, value: Any, field: str) -> str:
        return validation.repo_id(value, field)

    def describe(self) -> str:
        return "OWNER/NAME (the Hub's rules)"


class HardwareKind(Kind):
    """A flavor name, of any flavor the Hub lists: which ones a task may name depends on where it runs
    (Space or Job flavors: flavors.Catalog.check, at add and in the worker), so a flavor the Hub adds
    later does not make an older reader refuse the queue (the worker fails a task whose flavor it
    does not offer)."""

    name = "hardware flavor"
    fast = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")

    def read(self, plain: str, field: str) -> str:
        return self.write(plain.strip().lower(), field)

    def write(self, value: Any, field: str) -> str:
        if not isinstance(value, str) or not self.fast.fullmatch(value):
            raise ValidationError(field, f"{show_value(value)} is not a hardware flavor name like t4-small")
        return value

    def describe(self) -> str:
        return "a hardware flavor name (a Space flavor, or a Job flavor with the jobs executor)"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


_scan_json = _json_scanner.c_make_scanner(json.JSONDecoder(parse_constant=_no_constant))


class JsonObjectKind(Kind):
    """A JSON object, bounded in UTF-8 bytes (and depth). A valid cell is kept as written (key order,
    spacing): re-encoding every row on every read would cost more than the read itself."""

    name = "JSON object"
    free_text = True

    def __init__(self, max_bytes: int, none_when_empty: bool):
        self.max_bytes = max_bytes
        # True: an empty cell and {} are None, and None and {} are written as an empty cell (a result);
        # False: they are {} and written as {} (params).
        self.none_when_empty = none_when_empty
        # The common cell, recognised without parsing it: a flat object as json.dumps writes it, short
        # enough that neither its size nor its depth can exceed the bounds, with no escapes and no NaN.
        string = r'"[^"\\\x00-\x1f]*"'
        value = rf"(?:-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|{string}|true|false|null)"
        members = rf"{string}: {value}(?:, {string}: {value})*"
        body = members if none_when_empty else rf"(?:{members})?"  # {} as a result is written as an empty cell
        self.fast = re.compile(rf"(?={_ANY}{{2,1024}}{_END})\{{{body}\}}")

    def read(self, plain: str, field: str) -> dict | None:
        text = plain.strip()
        if not text:
            return None if self.none_when_empty else {}
        size = len(text.encode("utf-8"))
        if size > self.max_bytes:
            raise LimitExceeded(field, size, self.max_bytes, "bytes of JSON")
        if text.count("{") + text.count("[") > MAX_PARAMS_DEPTH:
            validation.check_json_depth(text, field)  # json recurses once per level: a deep enough text overflows the stack
        try:
            value, end = _scan_json(text, 0)
        except StopIteration as exc:
            raise ValidationError(field, f"is not valid JSON (expecting a value at character {exc.value + 1})") from None
        except json.JSONDecodeError as exc:
            raise ValidationError(field, f"is not valid JSON ({exc.msg} at character {exc.pos + 1})") from None
        except ValueError as exc:
            raise ValidationError(field, f"is not valid JSON ({exc})") from None
        if end != len(text):
            raise ValidationError(field, f"is not valid JSON (extra text at character {end + 1})")
        if not isinstance(value, dict):
            raise ValidationError(field, f"must be a JSON object like {{\"epochs\": 3}}, got {type(value).__name__}")
        return None if not value and self.none_when_empty else value

    def write(self, value: Any, field: str) -> str:
        if value is None or (not value and self.none_when_empty):
            if self.none_when_empty:
                return ""
            value = {}
        if not isinstance(value, Mapping):
            raise ValidationError(field, f"must be a JSON object (a dict), got {type(value).__name__}")
        try:
            text = json.dumps(dict(value), ensure_ascii=False, sort_keys=True, allow_nan=False)
        except RecursionError:
            raise ValidationError(field, f"is nested too deeply (more than {MAX_PARAMS_DEPTH} levels)") from None
        except ValueError as exc:  # NaN or Infinity: not JSON, and pandas would not read it back either
            raise ValidationError(field, f"cannot be stored: {exc} (use null for a missing number)") from None
        except TypeError as exc:
            raise ValidationError(field, f"cannot be stored as JSON: {exc}") from None
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:  # a lone surrogate, from a JSON escape like "\ud800"
            raise ValidationError(field, f"cannot be stored as UTF-8 ({exc.reason})") from None
        if size > self.max_bytes:
            raise LimitExceeded(field, size, self.max_bytes, "bytes of JSON")
        if text.count("{") + text.count("[") > MAX_PARAMS_DEPTH:
            validation.check_json_depth(text, field)
        return text

    def canonical(self, plain: str, field: str) -> str:
        value = self.read(plain, field)
        if not value:
            return self.write(value, field)
        return plain.strip()

    def describe(self) -> str:
        return f"JSON object, at most {self.max_bytes // 1024} KiB"


class IntegerKind(Kind):
    name = "integer"
    _lenient = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,4})?")

    def __init__(self, lo: int, hi: int):
        self.lo, self.hi = lo, hi
        digits = len(str(hi)) - 1  # every integer of up to that many digits is <= hi
        sign = "-?" if lo <= -(10 ** digits - 1) else ""
        self.fast = re.compile(rf"0|{sign}[1-9]\d{{0,{digits - 1}}}")

    def read(self, plain: str, field: str) -> int:
        text = plain.strip()
        # pandas writes an integer column with a blank cell as floats (3.0); spreadsheets may write 3e3.
        if not self._lenient.fullmatch(text):
            raise ValidationError(field, f"expected an integer, got {show_value(plain)}")
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise ValidationError(field, f"expected an integer, got {show_value(plain)}") from None
        if number != number.to_integral_value():
            raise ValidationError(field, f"expected an integer, got {show_value(plain)}")
        if not self.lo <= number <= self.hi:
            raise ValidationError(field, f"must be between {self.lo} and {self.hi}, got {show_value(plain)}")
        return int(number)

    def write(self, value: Any, field: str) -> str:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(field, f"expected an integer, got {show_value(value)}")
        if not self.lo <= value <= self.hi:
            raise ValidationError(field, f"must be between {self.lo} and {self.hi}, got {value}")
        return str(value)

    def describe(self) -> str:
        return f"integer, {self.lo:,} to {self.hi:,}"


def format_time(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str, field_name: str) -> datetime | None:
    """ISO 8601 (a `Z`, an offset, a space for the `T`, fractions of a second); no zone means UTC."""
    text = value.strip()
    if not text:
        return None
    try:
        # Python < 3.11 reads neither a trailing Z nor every ISO form: the Space's default is 3.10.
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "zZ" else text)
    except ValueError:
        raise ValidationError(field_name, f"{show_value(value)} is not an ISO 8601 time like 2026-01-31T12:00:00Z") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


class TimeKind(Kind):
    name = "time"
    # Canonical UTC times whose day exists in every year (29 February goes the slow way).
    fast = re.compile(r"|\d{4}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)"
                      r"|(?:0[13578]|1[02])-31)T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\dZ")

    def read(self, plain: str, field: str) -> datetime | None:
        return parse_time(plain, field)

    def write(self, value: Any, field: str) -> str:
        if value is not None and not isinstance(value, datetime):
            raise ValidationError(field, f"expected a datetime, got {show_value(value)}")
        return format_time(value)

    def describe(self) -> str:
        return "UTC time, ISO 8601 (2026-01-31T12:00:00Z)"


class NumberKind(Kind):
    name = "number"
    # repr(round(x, 6)) of a value with at most 15 significant digits, which floats represent exactly.
    fast = re.compile(rf"|(?={_ANY}{{3,16}}{_END})(?:0|[1-9]\d*)\.(?:0|\d{{0,5}}[1-9])")

    def read(self, plain: str, field: str) -> float | None:
        return validation.finite_number(plain.strip(), field) if plain.strip() else None

    def write(self, value: Any, field: str) -> str:
        if value is None:
            return ""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValidationError(field, f"expected a number, got {show_value(value)}")
        number = validation.finite_number(value, field)
        return repr(round(number, 6))

    def describe(self) -> str:
        return "number >= 0, or empty"


class TextKind(Kind):
    name = "text"
    free_text = True

    def __init__(self, max_chars: int):
        self.max_chars = max_chars
        # Stored text that needs no apostrophe and is within the bound is canonical as it is.
        self.fast = re.compile(rf"|{_PLAIN_TEXT_START}{_ANY}{{1,{max_chars}}}(?<!\s)")

    def read(self, plain: str, field: str) -> str:
        if len(plain) > self.max_chars:
            raise LimitExceeded(field, len(plain), self.max_chars, "characters")
        return plain

    def write(self, value: Any, field: str) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise ValidationError(field, f"expected text, got {type(value).__name__}")
        if len(value) > self.max_chars:
            raise LimitExceeded(field, len(value), self.max_chars, "characters")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValidationError(field, f"cannot be stored as UTF-8 ({exc.reason} at character {exc.start + 1})") from None
        return value

    def describe(self) -> str:
        return f"text, at most {self.max_chars:,} characters"


class BooleanKind(Kind):
    """true/false; reads what pandas (True) and spreadsheets (TRUE) write, and 1/0, yes/no."""

    name = "boolean"
    fast = frozenset({"true", "false"})
    _words = {"true": True, "t": True, "yes": True, "y": True, "1": True, "1.0": True,
              "false": False, "f": False, "no": False, "n": False, "0": False, "0.0": False}

    def read(self, plain: str, field: str) -> bool:
        try:
            return self._words[plain.strip().lower()]
        except KeyError:
            raise ValidationError(field, f"expected true or false, got {show_value(plain)}") from None

    def write(self, value: Any, field: str) -> str:
        if not isinstance(value, bool):
            raise ValidationError(field, f"expected true or false, got {show_value(value)}")
        return "true" if value else "false"


# ---------------------------------------------------------------- the table


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()  # a column without a default: a file without it is refused


@dataclass(frozen=True)
class Column:
    """One column: `default` is the value of an empty cell and of a missing column (REQUIRED: refused)."""

    name: str
    kind: Kind
    default: Any
    since: str
    label: str
    doc: str

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def free_text(self) -> bool:
        return self.kind.free_text

    def read(self, plain: str) -> Any:
        """The value of a plain cell ('' = empty). Raises ValidationError naming the column."""
        if not plain or (not self.kind.free_text and not plain.strip()):
            if self.required:
                raise ValidationError(self.name, "is empty (every task needs one)")
            return _copy(self.default)
        return self.kind.read(plain, self.name)

    def write(self, value: Any) -> str:
        """The canonical plain text of a value. Raises ValidationError (LimitExceeded when too large)."""
        return self.kind.write(value, self.name)

    @property
    def default_cell(self) -> str:
        """The stored cell of a missing column."""
        return "" if self.required else neutralise(self.write(self.default)) if self.free_text else self.write(self.default)


def _copy(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else value


COLUMNS: tuple[Column, ...] = (
    Column("id", TaskIdKind(), REQUIRED, "0.1.0", "id",
           "the task's id, unique in the file; generated by the client (a ULID), so adding it again adds nothing"),
    Column("status", StatusKind(), REQUIRED, "0.1.0", "status", "waiting, running, or finished and how"),
    Column("model_id", RepoIdKind(), REQUIRED, "0.1.0", "model", "the base model, a Hub repo id"),
    Column("dataset_id", RepoIdKind(), REQUIRED, "0.1.0", "dataset", "the dataset, a Hub repo id"),
    Column("hardware", HardwareKind(), "t4-small", "0.1.0", "hardware", "the Space hardware flavor the task runs on"),
    Column("params", JsonObjectKind(MAX_PARAMS_BYTES, none_when_empty=False), {}, "0.1.0", "params",
           "the training callback's parameters"),
    Column("priority", IntegerKind(-10**9, 10**9), 0, "0.1.0", "priority", "higher runs first"),
    Column("submitted_at", TimeKind(), None, "0.1.0", "submitted", "when the task was added"),
    Column("submitted_by", TextKind(MAX_NAME_CHARS), "", "0.1.0", "submitted by", "who added it"),
    Column("not_before", TimeKind(), None, "0.1.0", "not before", "not run before this time (a retry's backoff)"),
    Column("attempts", IntegerKind(0, 10**6), 0, "0.1.0", "attempts", "runs started so far"),
    Column("max_attempts", IntegerKind(0, 10**6), 3, "0.1.0", "max attempts", "runs allowed before FAILED"),
    Column("timeout_s", IntegerKind(0, 10**9), 3600, "0.1.0", "timeout (s)", "seconds one run may take"),
    Column("worker", TextKind(MAX_NAME_CHARS), "", "0.1.0", "worker", "the worker that holds (or held) the task"),
    Column("lease_until", TimeKind(), None, "0.1.0", "lease until",
           "when the running task's lease ends unless renewed; then another worker may take it"),
    Column("lease_id", TextKind(MAX_LEASE_ID_CHARS), "", "0.2.0", "lease id",
           "the fencing token of the current (or last) run: every write about that run names it"),
    Column("started_at", TimeKind(), None, "0.1.0", "started", "when the last run started"),
    Column("finished_at", TimeKind(), None, "0.1.0", "finished", "when the task reached DONE, FAILED or CANCELLED"),
    Column("gpu_seconds", NumberKind(), None, "0.1.0", "GPU seconds", "seconds billed on paid hardware, all runs"),
    Column("cost_usd", NumberKind(), None, "0.1.0", "cost (USD)", "what those seconds cost, in US dollars"),
    Column("result", JsonObjectKind(MAX_RESULT_BYTES, none_when_empty=True), None, "0.1.0", "result",
           "what the callback returned (metrics, the pushed repo)"),
    Column("error", TextKind(MAX_ERROR_CHARS), "", "0.1.0", "error",
           "why the last attempt failed, or why the task was cancelled"),
    Column("log", TextKind(MAX_LOG_CHARS), "", "0.2.0", "log", "the redacted tail of the last run's log"),
)

NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
COLUMN: dict[str, Column] = {c.name: c for c in COLUMNS}
HEADER_LINE = ",".join(NAMES)
TIME_COLUMNS: tuple[str, ...] = tuple(c.name for c in COLUMNS if isinstance(c.kind, TimeKind))

# What `space-scheduler list` and the dashboard's queue table show, by column name.
LIST_COLUMNS: tuple[str, ...] = ("id", "status", "model_id", "dataset_id", "hardware", "priority", "attempts",
                                 "submitted_at", "error")
DASHBOARD_COLUMNS: tuple[str, ...] = ("id", "status", "model_id", "dataset_id", "hardware", "submitted_by", "attempts",
                                      "cost_usd", "error")


def label(name: str) -> str:
    """The column's name as people read it (table headers)."""
    return COLUMN[name].label


for _name in LIST_COLUMNS + DASHBOARD_COLUMNS:
    assert _name in COLUMN, _name
