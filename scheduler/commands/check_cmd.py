"""`space-scheduler check`: does the queue file read, and what would the next write change? `--fix` writes it.

Exit status: 0 the file reads and is canonical (or `--fix` made it so), 1 it reads but the next write
changes it (nothing written without `--fix`), 2 it is refused (every problem listed; nothing written).
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from .. import codec
from ..errors import Conflict, StoreError
from .common import add_queue_options, open_queue

MAX_TRIES = 10


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="validate the queue file, list what the next write normalises; --fix writes it")
    add_queue_options(p)
    p.add_argument("--fix", action="store_true", help="write the canonical file now, in one commit (only if it reads)")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="list at most N problems and N changes (default 20)")
    p.set_defaults(handler=cmd_check)


def cmd_check(args) -> int:
    store = open_queue(args).store
    where = store.describe()
    for _ in range(MAX_TRIES):
        with store.lock():
            snapshot = store.read()
            if snapshot.data is None:
                print(f"{where}: no such file (create the queue with `space-scheduler init`)")
                return 2
            found = codec.inspect(snapshot.data, store.path)
            if found.problems:
                _report_problems(where, found, args.limit)
                return 2
            rows = len(found.table)
            if found.canonical:
                print(f"{where}: {rows} task(s), canonical: nothing to change")
                return 0
            _report_fixes(where, found, args.limit)
            if not args.fix:
                print(f"{where}: {rows} task(s) read; the next write makes these changes (`--fix` writes them now)")
                return 1
            try:
                store.write({store.path: codec.dump(found.table)}, expected=snapshot.version,
                            message=f"Normalise {store.path} (space-scheduler check --fix)")
            except Conflict:
                print(f"{where}: changed while checking; checking again")
                continue
        print(f"{where}: {rows} task(s), written in the canonical form")
        return 0
    raise StoreError(f"{where}: kept changing while checking; try again")


def _report_problems(where: str, found: codec.Inspection, limit: int) -> None:
    print(f"{where}: refused, {len(found.problems)} problem(s); nothing was written")
    for problem in found.problems[:limit]:
        print(f"  {problem}")
    if len(found.problems) > limit:
        print(f"  ... and {len(found.problems) - limit} more (--limit)")


def _report_fixes(where: str, found: codec.Inspection, limit: int) -> None:
    """File-level changes one by one; cell changes one line per column (pandas changes a column on every row)."""
    lines: list[str] = []
    cells: dict[tuple, list[codec.Fix]] = defaultdict(list)
    for fix in found.fixes:
        if fix.field and fix.column:
            cells[(fix.column, fix.field)].append(fix)
        else:
            lines.append(str(fix))
    for fixes in sorted(cells.values(), key=lambda group: (group[0].line, group[0].column)):
        first = fixes[0]
        more = f" (and {len(fixes) - 1} more cell(s) in this column)" if len(fixes) > 1 else ""
        lines.append(f"{first}{more}")
    for line in lines[:limit]:
        print(f"  {line}")
    if len(lines) > limit:
        print(f"  ... and {len(lines) - limit} more (--limit)")
    if not lines:
        print("  the file's bytes differ from the canonical form (quoting or line endings)")
