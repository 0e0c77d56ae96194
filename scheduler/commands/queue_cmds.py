"""Queue verbs: init, add, list, show, cancel, requeue, archive."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import timedelta
from pathlib import Path

from .. import schema, validation
from ..errors import UserError, ValidationError
from ..schema import LIST_COLUMNS as TABLE_COLUMNS
from ..tasks import DEFAULT_HARDWARE, DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT_S, Status, Task
from .common import add_queue_options, open_queue


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


def cmd_init(args) -> int:
    queue = open_queue(args)
    created = queue.init()
    print(f"{'created' if created else 'already there'}: {queue.store.describe()}")
    return 0


def _params(args) -> dict:
    params = validation.params(args.params) if args.params else {}
    for item in args.param:
        key, value = validation.parse_param_assignment(item)
        params[key] = value
    return validation.params(params)


def _flavors(args, queue):
    """The flavors tasks of this queue may name: the Hub's list for its executor (fallback offline)."""
    import os

    from ..flavors import catalog_for

    executor = args.executor or os.environ.get("SCHEDULER_EXECUTOR") or "space"
    return catalog_for(executor, getattr(queue.store, "api", None))


def cmd_add(args) -> int:
    queue = open_queue(args)
    flavors = _flavors(args, queue)
    if args.from_csv:
        if args.model_id or args.dataset_id:
            raise UserError("give either MODEL DATASET or --from-csv FILE, not both")
        tasks = read_task_file(Path(args.from_csv), flavors)
        stored = queue.add_many(tasks)
    else:
        if not args.model_id or not args.dataset_id:
            raise UserError("add needs MODEL_ID and DATASET_ID (or --from-csv FILE)")
        task = Task.new(
            args.model_id, args.dataset_id, args.hardware, params=_params(args), priority=args.priority,
            max_attempts=args.max_attempts, timeout_s=args.timeout, id=args.id, submitted_by=args.submitted_by,
        )
        flavors.check(task.hardware)
        stored = [queue.add(task)]
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
    queue = open_queue(args)
    tasks = queue.list(args.status) if args.status else queue.list()
    if args.json:
        for task in tasks:
            print(json.dumps(task.to_dict(), ensure_ascii=False))
        return 0
    print_table([{k: _short(task.to_dict()[k]) for k in TABLE_COLUMNS} for task in tasks], TABLE_COLUMNS)
    counts = queue.counts()
    print(", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n) or "no tasks")
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
    task = open_queue(args).get(validation.task_id(args.task_id, "task_id"))
    print(json.dumps(task.to_dict(), ensure_ascii=False, indent=2))
    return 0


def cmd_cancel(args) -> int:
    task = open_queue(args).cancel(validation.task_id(args.task_id, "task_id"), args.reason)
    print(f"{task.id} {task.status.value}")
    return 0


def cmd_requeue(args) -> int:
    task = open_queue(args).requeue(validation.task_id(args.task_id, "task_id"))
    print(f"{task.id} {task.status.value}")
    return 0


def cmd_archive(args) -> int:
    moved = open_queue(args).archive(timedelta(days=args.older_than_days))
    print(f"archived {moved} finished task(s)")
    return 0
