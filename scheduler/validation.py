"""Field validators and the size bounds of tasks.csv's cells (scheduler.schema exposes both per column).

Each validator raises ValidationError naming the field, before anything is sent or stored.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from .errors import ValidationError


# Hub rules: ASCII letters, digits, '-', '_', '.'; no leading/trailing '-' or '.', no '--' or '..',
# names up to 96 characters, not ending in '.git'.
_REPO_PART = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# What a new task may ask for (Task.new); tasks.csv itself holds wider ranges (scheduler.schema).
PRIORITY_RANGE = (-1000, 1000)
MAX_ATTEMPTS_RANGE = (1, 20)
TIMEOUT_RANGE = (1, 7 * 24 * 3600)

# Size bounds of tasks.csv's cells: the writer refuses more, the reader accepts up to this much.
MAX_TASK_ID_CHARS = 64
MAX_REPO_ID_CHARS = 96 + 1 + 42  # the Hub: names up to 96 characters, owners up to 42
MAX_NAME_CHARS = 200  # submitted_by, worker
MAX_LEASE_ID_CHARS = 128
MAX_PARAMS_BYTES = 64 * 1024  # UTF-8 bytes of JSON
MAX_PARAMS_DEPTH = 16
MAX_RESULT_BYTES = 16 * 1024  # UTF-8 bytes of JSON
MAX_ERROR_CHARS = 2000
MAX_LOG_CHARS = 4000
MAX_TEXT = MAX_NAME_CHARS

_TASK_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_TASK_ID_CHARS}}}")
# The ids pandas would read as a missing value (scheduler.schema.NA_CELLS has them all).
_MISSING_MARKERS = frozenset({"NA", "NULL", "NaN", "None", "nan", "null", "-NaN", "-nan"})


def repo_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, "is required (expected OWNER/NAME)")
    value = value.strip()
    if len(value) > MAX_REPO_ID_CHARS:
        raise ValidationError(field, f"is too long ({len(value)} characters)")
    parts = value.split("/")
    if len(parts) != 2:
        raise ValidationError(field, f"{show_value(value)} must be OWNER/NAME (exactly one '/')")
    for part, what in zip(parts, ("owner", "name")):
        if part in (".", "..") or not _REPO_PART.match(part):
            raise ValidationError(
                field,
                f"{show_value(value)}: the {what} may use only letters, digits, '-', '_' and '.', "
                "and must start and end with a letter or digit",
            )
        if "--" in part or ".." in part:
            raise ValidationError(field, f"{show_value(value)}: '--' and '..' are not allowed")
    if parts[1].endswith(".git"):
        raise ValidationError(field, f"{show_value(value)}: a name cannot end with '.git'")
    return value


_FLAVOR_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def hardware(value: Any, field: str = "hardware") -> str:
    """A flavor name. Which flavors a task may name depends on where it runs (the Hub's list for
    Spaces, or for Jobs): flavors.Catalog.check decides that where the target is known (add, submit,
    the worker); here only the shape is checked."""
    if not isinstance(value, str) or not _FLAVOR_NAME.fullmatch(value.strip()):
        # No list here: which flavors exist depends on the executor (flavors.Catalog.check lists them).
        raise ValidationError(field, f"{show_value(value)} is not a hardware flavor name like t4-small "
                                     f"(lowercase letters, digits, '.', '_' and '-')")
    return value.strip()


def integer(value: Any, field: str, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise ValidationError(field, f"expected an integer, got {show_value(value)}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"[+-]?\d{1,12}", text):
            raise ValidationError(field, f"expected an integer, got {show_value(value)}")
        value = int(text)
    if not isinstance(value, int):
        raise ValidationError(field, f"expected an integer, got {show_value(value)}")
    if not lo <= value <= hi:
        raise ValidationError(field, f"must be between {lo} and {hi}, got {value}")
    return value


def priority(value: Any) -> int:
    return integer(value, "priority", *PRIORITY_RANGE)


def max_attempts(value: Any) -> int:
    return integer(value, "max_attempts", *MAX_ATTEMPTS_RANGE)


def timeout_s(value: Any) -> int:
    return integer(value, "timeout_s", *TIMEOUT_RANGE)


def task_id(value: Any, field: str = "id") -> str:
    if not isinstance(value, str) or not _TASK_ID.fullmatch(value):
        raise ValidationError(field, f"{show_value(value)} must be 1-{MAX_TASK_ID_CHARS} letters, digits, '-' or '_'")
    if value in _MISSING_MARKERS:
        raise ValidationError(field, f"{show_value(value)} is what pandas reads as a missing value; choose another id")
    return value


def text(value: Any, field: str, max_len: int = MAX_TEXT) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError(field, f"expected text, got {type(value).__name__}")
    if len(value) > max_len:
        raise ValidationError(field, f"is too long ({len(value)} characters, at most {max_len})")
    if _CONTROL.search(value) or "\n" in value or "\r" in value:
        raise ValidationError(field, "contains control characters")
    return value


def params(value: Any) -> dict:
    """A JSON object (or its text): bounded in size and depth so a hostile one cannot exhaust memory."""
    if value is None or value == "":
        return {}
    if isinstance(value, (str, bytes)):
        raw = value.decode() if isinstance(value, bytes) else value
        if len(raw.encode()) > MAX_PARAMS_BYTES:
            raise ValidationError("params", f"is too large ({len(raw.encode())} bytes, at most {MAX_PARAMS_BYTES})")
        check_json_depth(raw)
        try:
            value = json.loads(raw, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            raise ValidationError("params", f"is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
        except ValueError as exc:
            raise ValidationError("params", str(exc)) from None
    if not isinstance(value, dict):
        raise ValidationError("params", f"must be a JSON object like {{\"epochs\": 3}}, got {type(value).__name__}")
    try:
        encoded = json.dumps(value, ensure_ascii=False, sort_keys=True, allow_nan=False)
    except RecursionError:
        # A dict built in Python (API or form) never went through the text depth check above.
        raise ValidationError("params", f"is nested too deeply (more than {MAX_PARAMS_DEPTH} levels)") from None
    except (TypeError, ValueError) as exc:
        raise ValidationError("params", f"cannot be stored as JSON: {exc}") from None
    if len(encoded.encode()) > MAX_PARAMS_BYTES:
        raise ValidationError("params", f"is too large ({len(encoded.encode())} bytes, at most {MAX_PARAMS_BYTES})")
    check_json_depth(encoded)
    return value


def parse_param_assignment(item: str) -> tuple[str, Any]:
    """`k=v` from the CLI: v is read as JSON when it parses (numbers, booleans, lists), else as text."""
    if "=" not in item:
        raise ValidationError("params", f"{show_value(item)} must look like key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ValidationError("params", f"{show_value(item)} has an empty key")
    check_json_depth(raw)  # json.loads recurses once per level: a deep enough value overflows the stack
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except ValueError:
        value = raw
    return key, value


def finite_number(value: Any, field: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValidationError(field, f"expected a number, got {show_value(value)}") from None
    if not math.isfinite(number) or number < 0:
        raise ValidationError(field, f"must be a finite number >= 0, got {show_value(value)}")
    return number


def check_json_depth(raw: str, field: str = "params") -> None:
    """Refuse JSON text nested deeper than MAX_PARAMS_DEPTH without parsing it (json recurses per level)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in raw:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_PARAMS_DEPTH:
                raise ValidationError(field, f"is nested too deeply (more than {MAX_PARAMS_DEPTH} levels)")
        elif ch in "]}":
            depth -= 1


def _reject_constant(name: str) -> Any:
    raise ValueError(f"params: {name} is not allowed in JSON")


def show_value(value: Any) -> str:
    """A value quoted for an error message, cut to 60 characters: a refusal never echoes a megabyte back."""
    text_value = repr(value)
    return text_value if len(text_value) <= 60 else text_value[:57] + "...'"

