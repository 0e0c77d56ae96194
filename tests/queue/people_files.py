"""Queues as the tests generate them, and the files pandas and spreadsheets make of them."""

from __future__ import annotations

import csv
import io
import random
from datetime import datetime, timedelta, timezone

import pandas as pd

from scheduler import codec
from scheduler.tasks import Status, Task

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)

# Free text people and workers put in cells: commas, quotes, newlines, formulas, things pandas or a
# spreadsheet would take for a number, a boolean or a missing value, non-ASCII.
TEXTS = ["", "alice", "bob smith", "=HYPERLINK(\"http://x\")", "+1", "-bob", "@cmd", "'quoted", "007", "1e5",
         "12.50", "true", "FALSE", "NA", "None", "nan", "#N/A", "null", "  padded  ", "a,b", "say \"hi\"",
         "two\nlines", "crlf\r\nline", "tab\there", "é ü 日本", " ", "0", "-"]


def generated_queue(n: int, seed: int = 0) -> list[Task]:
    """n tasks in every status, with the values that trip CSV tools up."""
    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        text = lambda: rng.choice(TEXTS)  # noqa: E731
        submitted = T0 + timedelta(seconds=rng.randrange(10**6))
        task = Task.new(rng.choice(["openai-community/gpt2", "acme/model", "a/b.c"]),
                        rng.choice(["stanfordnlp/imdb", "acme/data"]), rng.choice(["t4-small", "a10g-large", "l4x1"]),
                        params=rng.choice([{}, {"epochs": rng.randrange(1, 5)},
                                           {"lr": rng.choice([5e-05, 0.001, 1e-07]), "note": text()},
                                           {"nested": {"list": [1, 2.5, None, True]}}]),
                        priority=rng.randrange(-5, 6), submitted_by=rng.choice(TEXTS[:20]),
                        max_attempts=rng.randrange(1, 5), timeout_s=rng.choice([600, 3600, 7200]), now=submitted)
        status = rng.choice(list(Status))
        started = submitted + timedelta(seconds=rng.randrange(1, 1000))
        if status is Status.RUNNING:
            task = task.replace(status=status, worker=text(), attempts=1, started_at=started, lease_id=f"lease-{i}",
                                lease_until=started + timedelta(minutes=10))
        elif status is not Status.PENDING:
            finished = started + timedelta(seconds=rng.randrange(1, 5000))
            gpu = rng.choice([None, round(rng.uniform(0, 5000), 3), 0.5, 12.0])
            task = task.replace(
                status=status, worker=text(), attempts=rng.randrange(1, 4), started_at=started, finished_at=finished,
                lease_id=rng.choice(["", f"lease-{i}"]), gpu_seconds=gpu,
                cost_usd=None if gpu is None else round(gpu * 0.000167, 6),
                result={"loss": rng.random(), "repo": "acme/out", "ok": True} if status is Status.DONE else None,
                error="" if status is Status.DONE else text(), log=rng.choice(["", "step 1\nstep 2", text()]))
        elif rng.random() < 0.3:
            task = task.replace(not_before=submitted + timedelta(hours=1), error=text())
        tasks.append(task)
    return tasks


def lease_of(task: Task) -> str:
    """What a claimed task's later writes (complete, fail) name: its lease id, else its worker."""
    return task.lease_id or task.worker


def canonical(tasks: list[Task]) -> bytes:
    return codec.dump(codec.Table().appended(tasks))


def pandas_round_trip(data: bytes, new_row: dict | None = None) -> bytes:
    """What a pandas user does: read_csv with its defaults, maybe append a row, to_csv without the index."""
    frame = pd.read_csv(io.BytesIO(data))
    if new_row is not None:
        frame.loc[len(frame)] = new_row  # the other cells are blank: integer columns become floats
    return frame.to_csv(index=False).encode("utf-8")


def spreadsheet_save(data: bytes, *, quoting: int = csv.QUOTE_MINIMAL, newline: str = "\r\n", bom: bool = True,
                     blank_rows: tuple[str, ...] = (",,,,,,,,", "   "), final_newline: bool = True,
                     shuffle: bool = False, upper_header: bool = False, integral_floats: bool = False,
                     lower_status: bool = False) -> bytes:
    """What a spreadsheet (or a person with one) may do on open and save: rewrite every cell with its own
    quoting and line endings, add a BOM and blank rows, move columns, write integers as 3.0, retype a status."""
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    header, body = rows[0], rows[1:]
    order = list(range(len(header)))
    if shuffle:
        random.Random(len(body)).shuffle(order)
    ints = {header.index(name) for name in ("priority", "attempts", "max_attempts", "timeout_s")}
    status = header.index("status")
    out_rows = [[h.upper() if upper_header else h for h in (header[k] for k in order)]]
    for row in body:
        row = list(row)
        if integral_floats:
            row = [f"{cell}.0" if k in ints and cell else cell for k, cell in enumerate(row)]
        if lower_status:
            row[status] = row[status].lower()
        out_rows.append([row[k] for k in order])
    out = io.StringIO()
    # CRLF decides the quoting (the csv module quotes only the line terminator's characters): a cell with
    # either CR or LF is quoted, as spreadsheets do, whatever ends the rows.
    writer = csv.writer(out, quoting=quoting, lineterminator="\r\n")
    records = []
    for row in out_rows:
        out.seek(0)
        out.truncate()
        writer.writerow(row)
        records.append(out.getvalue()[:-2] + newline)
    text = "".join(records) + "".join(blank + newline for blank in blank_rows)
    if not final_newline:
        text = text[: -len(newline)]
    return ("\ufeff" if bom else "").encode() + text.encode("utf-8")
