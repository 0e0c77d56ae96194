"""Queue verbs: init, add, list, show, cancel, requeue, archive."""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, TypeVar

from .. import schema, validation
from ..errors import SchedulerError, UserError, ValidationError
from ..schema import LIST_COLUMNS as TABLE_COLUMNS
from ..tasks import DEFAULT_HARDWARE, DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT_S, Status, Task
from .common import add_queue_options, hub_endpoint, open_queue, wait_for_hub

T = TypeVar("T")
_PARAM_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# Python spellings that JSON would read as text: almost always a typo for true/false/null.
_PYTHON_LITERALS = {"True": "true", "False": "false", "None": "null", "nan": None, "NaN": None, "inf": None,
                    "Infinity": None, "-Infinity": None}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="create the queue (a private dataset with an empty tasks.csv) if missing")
    add_queue_options(p)
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser("add", help="add a task (or many with --from-csv)")
    add_queue_options(p)
    p.add_argument("model_id", nargs="?", help="base model, OWNER/NAME")
    p.add_argument("dataset_id", nargs="?", help="dataset, OWNER/NAME")
    p.add_argument("--hardware", default=DEFAULT_HARDWARE,
                   help=f"hardware flavor (default {DEFAULT_HARDWARE}): a Space flavor, or a Job flavor with "
                        f"--executor jobs")
    p.add_argument("--executor", choices=["space", "jobs", "local"], default=None,
                   help="where the queue's tasks run, which decides the flavors a task may name "
                        "(default: $SCHEDULER_EXECUTOR, else space)")
    p.add_argument("--params", default=None, help='JSON object, e.g. \'{"epochs": 3}\'')
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="one parameter (repeatable)")
    p.add_argument("--priority", default=0, help="higher runs first (default 0)")
    p.add_argument("--max-attempts", default=DEFAULT_MAX_ATTEMPTS)
    p.add_argument("--timeout", default=DEFAULT_TIMEOUT_S, help="seconds (default 3600)")
    p.add_argument("--id", default=None, help="task id (default: a new ULID); re-adding an id adds nothing")
    p.add_argument("--submitted-by", default="", help="who submits (default: empty)")
    p.add_argument("--from-csv", metavar="FILE", help="add every row of FILE (columns model_id,dataset_id[,hardware,params,priority,max_attempts,timeout_s,id]) in one commit")
    p.add_argument("--json", action="store_true", help="print the stored task(s) as JSON")
    p.set_defaults(handler=cmd_add)

    p = sub.add_parser("list", help="list tasks")
    add_queue_options(p)
    p.add_argument("--status", action="append", choices=[s.value for s in Status], help="only these statuses (repeatable)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("show", help="show one task")
    add_queue_options(p)
    p.add_argument("task_id")
    p.set_defaults(handler=cmd_show)

    for verb, text in (("cancel", "cancel a pending or running task"), ("requeue", "put a failed or cancelled task back")):
        p = sub.add_parser(verb, help=text)
        add_queue_options(p)
        p.add_argument("task_id")
        if verb == "cancel":
            p.add_argument("--reason", default="", help="why (stored in the task's error)")
        p.set_defaults(handler=cmd_cancel if verb == "cancel" else cmd_requeue)

    p = sub.add_parser("archive", help="move finished tasks to archive/tasks-YYYY-MM.csv")
    add_queue_options(p)
    p.add_argument("--older-than-days", type=float, default=7.0)
    p.set_defaults(handler=cmd_archive)


def _hub(queue, fn: Callable[[], T], what: str) -> T:
    """`fn` against the queue's store; on the Hub, bounded and with a spinner (see wait_for_hub)."""
    endpoint = hub_endpoint(queue) if queue.store.describe().startswith("hf://") else None
    return wait_for_hub(fn, what, endpoint)


def cmd_init(args) -> int:
    queue = open_queue(args, short_deadlines=True)
    created = _hub(queue, queue.init, "creating the queue")
    print(f"{'created' if created else 'already there'}: {queue.store.describe()}")
    return 0


def parse_param(item: str) -> tuple[str, Any]:
    """One `--param KEY=VALUE`: VALUE is JSON when it parses (3, 0.5, true, [1, 2], "text"), else text.

    Stricter than JSON-or-text, because a wrong value here runs (and bills) a whole training:
    an empty VALUE (most often an unset shell variable: `epochs=$EPOCHS`), a VALUE that starts
    like JSON but does not parse, Python's True/False/None/nan, and odd keys are refused."""
    key, sep, raw = item.partition("=")
    if not sep:
        raise ValidationError("params", f"--param {item!r} must look like key=value")
    if not _PARAM_KEY.match(key):
        raise ValidationError("params", f"--param {item!r}: the key must be a name like epochs or learning_rate")
    if not raw.strip():
        raise ValidationError("params", f"--param {item!r} has no value (an unset shell variable?); "
                                        f"for an empty text write {key}='\"\"'")
    stripped = raw.strip()
    if stripped in _PYTHON_LITERALS:
        json_word = _PYTHON_LITERALS[stripped]
        hint = f"write {key}={json_word}" if json_word else "JSON has no NaN or infinity"
        raise ValidationError("params", f"--param {item!r}: {stripped} is Python, not JSON ({hint})")
    key, value = validation.parse_param_assignment(item)
    if isinstance(value, str) and stripped[:1] in '[{"':
        try:
            json.loads(stripped)
        except ValueError as exc:
            raise ValidationError("params", f"--param {item!r}: the value starts like JSON but is not valid JSON "
                                            f"({exc})") from None
    return key, value


def _params(args) -> dict:
    params = validation.params(args.params) if args.params else {}
    given: dict[str, str] = {}
    for item in args.param:
        key, value = parse_param(item)
        if key in given:
            raise ValidationError("params", f"--param {key} is given twice ({given[key]!r} and {item!r})")
        if key in params:
            raise ValidationError("params", f"{key} is set both by --params and by --param {item!r}")
        given[key] = item
        params[key] = value
    return validation.params(params)


class _Flavors:
    """The flavors tasks of this queue may name: the Hub's list for its executor (the fallback table
    for a local queue or offline), fetched at the first task that passed every other check, so bad
    input sends nothing to the Hub and opens no queue."""

    def __init__(self, args):
        self._args, self._catalog = args, None

    def check(self, hardware: str) -> None:
        if self._catalog is None:
            self._catalog = self._load()
        self._catalog.check(hardware)

    def _load(self):
        import os

        from ..flavors import catalog_for
        from .common import HUB_PREFIX, _endpoint, resolve_queue

        executor = self._args.executor or os.environ.get("SCHEDULER_EXECUTOR") or "space"
        api = None
        if resolve_queue(self._args.queue or "").startswith(HUB_PREFIX):
            from huggingface_hub import HfApi

            api = HfApi(endpoint=_endpoint(self._args), token=self._args.token)
        return catalog_for(executor, api)


def cmd_add(args) -> int:
    flavors = _Flavors(args)
    if args.from_csv:
        if args.model_id or args.dataset_id:
            raise UserError("give either MODEL DATASET or --from-csv FILE, not both")
        tasks = read_task_file(Path(args.from_csv), flavors)
    else:
        if not args.model_id or not args.dataset_id:
            raise UserError("add needs MODEL_ID and DATASET_ID (or --from-csv FILE)")
        tasks = [Task.new(
            args.model_id, args.dataset_id, args.hardware, params=_params(args), priority=args.priority,
            max_attempts=args.max_attempts, timeout_s=args.timeout, id=args.id, submitted_by=args.submitted_by,
        )]
        flavors.check(tasks[0].hardware)
    # Validated before anything is opened: a mistake creates no folder and sends nothing.
    queue = open_queue(args, short_deadlines=True)
    try:
        stored = _hub(queue, lambda: [queue.add(tasks[0])] if len(tasks) == 1 else queue.add_many(tasks),
                      f"adding {len(tasks)} task(s)")
    except SchedulerError as exc:
        if len(tasks) > 1:
            raise
        # The ids are ours: re-running with the same one can never make a second task.
        raise SchedulerError(f"{exc} (the task may or may not be stored: run the same command with "
                             f"--id {tasks[0].id} to add it at most once)") from None
    for task in stored:
        print(json.dumps(task.to_dict(), ensure_ascii=False) if args.json else f"{task.id} {task.status.value} {task.model_id} {task.dataset_id} {task.hardware}")
    attention = getattr(queue.last_wake, "attention", None)
    if attention:
        print(f"warning: {attention}", file=sys.stderr)
    elif isinstance(queue.last_wake, Exception):
        from ..hub import describe

        print(f"warning: the task is stored, but its Space could not be woken ({describe(queue.last_wake)}); "
              f"it runs at the Space's next look at the queue", file=sys.stderr)
    return 0


def read_task_file(path: Path, flavors=None) -> list[Task]:
    """Rows of a user's CSV, each validated (the hardware against `flavors`, a flavors.Catalog, when
    given); the first bad one stops everything before anything is written."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    reader = csv.DictReader(text.splitlines(keepends=True))
    known = {"model_id", "dataset_id", "hardware", "params", "priority", "max_attempts", "timeout_s", "id", "submitted_by"}
    if reader.fieldnames:
        reader.fieldnames = [name.strip().lower() for name in reader.fieldnames]
    if not reader.fieldnames or not {"model_id", "dataset_id"} <= set(reader.fieldnames):
        raise UserError(f"{path} line 1: the header must name at least model_id and dataset_id")
    unknown = [name for name in reader.fieldnames if name not in known]
    if unknown:
        raise UserError(f"{path} line 1: unknown column(s) {', '.join(unknown)}")
    tasks = []
    try:
        for row in reader:
            line = reader.line_num
            if None in row:  # cells beyond the header's columns would be dropped without a word
                width = len(reader.fieldnames)
                raise UserError(f"{path} line {line}, column {width + 1}: expected {width} fields, found "
                                f"{width + len(row[None])}")
            # As in tasks.csv: pandas' missing-value markers are empty cells, blank rows are no rows.
            row = {k: "" if v is None or schema.is_missing(v) else v for k, v in row.items() if k is not None}
            if not any(v.strip() for v in row.values()):
                continue
            try:
                for name in ("priority", "max_attempts", "timeout_s"):  # 3.0 from pandas or a spreadsheet is 3
                    if row.get(name, "").strip():
                        row[name] = schema.COLUMN[name].read(row[name])
                task = Task.new(
                    row["model_id"], row["dataset_id"], row.get("hardware") or DEFAULT_HARDWARE,
                    params=row.get("params") or None, priority=row.get("priority") or 0,
                    max_attempts=row.get("max_attempts") or DEFAULT_MAX_ATTEMPTS,
                    timeout_s=row.get("timeout_s") or DEFAULT_TIMEOUT_S, id=row.get("id") or None,
                    submitted_by=row.get("submitted_by") or "",
                )
                if flavors is not None:
                    flavors.check(task.hardware)
                tasks.append(task)
            except ValidationError as exc:
                column = reader.fieldnames.index(exc.field) + 1 if exc.field in reader.fieldnames else None
                where = f"line {line}" + (f", column {column}" if column else "")
                raise UserError(f"{path} {where} ({exc.field}): {exc.message}") from None
    except csv.Error as exc:
        raise UserError(f"{path} line {reader.line_num}: {exc}") from None
    if not tasks:
        raise UserError(f"{path}: no tasks in the file")
    return tasks


def cmd_list(args) -> int:
    queue = open_queue(args, read_only=True, short_deadlines=True)
    every = _hub(queue, queue.list, "reading the queue")
    wanted = set(args.status or ())
    tasks = [t for t in every if not wanted or t.status.value in wanted]
    if args.json:
        for task in tasks:
            print(json.dumps(task.to_dict(), ensure_ascii=False))
        return 0
    print_table([{k: _short(task.to_dict()[k]) for k in TABLE_COLUMNS} for task in tasks], TABLE_COLUMNS)
    counts = Counter(t.status.value for t in every)
    print(", ".join(f"{counts[s.value]} {s.value.lower()}" for s in Status if counts[s.value]) or "no tasks")
    return 0


def _short(value, limit: int = 40) -> str:
    text = "" if value is None else str(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def print_table(rows: list[dict], columns, out=None) -> None:
    out = out or sys.stdout  # looked up at call time: stdout may have been replaced since import
    widths = {c: max([len(c)] + [len(str(r[c])) for r in rows]) for c in columns}
    print("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip(), file=out)
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns).rstrip(), file=out)


def cmd_show(args) -> int:
    task_id = validation.task_id(args.task_id, "task_id")
    queue = open_queue(args, read_only=True, short_deadlines=True)
    task = _hub(queue, lambda: queue.get(task_id), "reading the queue")
    print(json.dumps(task.to_dict(), ensure_ascii=False, indent=2))
    return 0


def cmd_cancel(args) -> int:
    task_id = validation.task_id(args.task_id, "task_id")
    queue = open_queue(args, must_exist=True, short_deadlines=True)
    task = _hub(queue, lambda: queue.cancel(task_id, args.reason), f"cancelling {task_id}")
    print(f"{task.id} {task.status.value}")
    return 0


def cmd_requeue(args) -> int:
    task_id = validation.task_id(args.task_id, "task_id")
    queue = open_queue(args, must_exist=True, short_deadlines=True)
    task = _hub(queue, lambda: queue.requeue(task_id), f"requeueing {task_id}")
    print(f"{task.id} {task.status.value}")
    return 0


def cmd_archive(args) -> int:
    queue = open_queue(args, must_exist=True, short_deadlines=True)
    moved = _hub(queue, lambda: queue.archive(timedelta(days=args.older_than_days)), "archiving finished tasks")
    print(f"archived {moved} finished task(s)")
    return 0
