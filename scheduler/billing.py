"""What the Hub bills for the Space's paid hardware, as the worker sees it: one paid period per replica.

The Hub bills a Space per started minute while it is Starting or Running (hub-facts §11): every boot,
every task, every idle wait on paid hardware, the old replica's overlap during a switch. No API reports
that bill, so the worker writes it down: each replica of the Space on a paid flavor is one period,
from its process's start to the SIGTERM that ends it, in `billing/periods.csv` of the queue dataset
(the start rides on a commit the worker makes anyway; the end costs one commit as the replica stops).
A replica that could not write its end (killed outright) is closed by the next boot with its own start
time, marked `estimated`.

The bill is `ceil(seconds / 60)` minutes per period at the flavor's price per minute. Each task's share
is its own run time at that price (its `cost_usd`); the overhead is the rest (boots, waits, switches,
the rounding to whole minutes).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Iterable, Mapping

from .tasks import Task, format_time, parse_time

PERIODS_PATH = "billing/periods.csv"
COLUMNS = ("replica", "space", "flavor", "start", "end", "ended_by")


@dataclass(frozen=True)
class Period:
    """One replica on one flavor. Times are the Hub's (UTC); `end` None: still running."""

    replica: str
    space: str
    flavor: str
    start: datetime
    end: datetime | None = None
    ended_by: str = ""  # "stop" (written by the replica), "estimated" (by its successor)

    def seconds(self, now: datetime) -> float:
        return max(0.0, ((self.end or now) - self.start).total_seconds())

    def billed_minutes(self, now: datetime) -> int:
        seconds = self.seconds(now)
        return math.ceil(seconds / 60) if seconds > 0 else 0

    def billed_usd(self, usd_per_hour: float, now: datetime) -> float:
        """Per started minute (the Hub's rule), in USD."""
        return self.billed_minutes(now) * usd_per_hour / 60


def parse(data: bytes | None) -> list[Period]:
    if not data:
        return []
    rows = csv.DictReader(io.StringIO(data.decode("utf-8")))
    return [Period(r["replica"], r["space"], r["flavor"], parse_time(r["start"], "start"),
                   parse_time(r["end"], "end"), r.get("ended_by") or "") for r in rows]


def dump(periods: Iterable[Period]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for p in periods:
        writer.writerow([p.replica, p.space, p.flavor, format_time(p.start), format_time(p.end), p.ended_by])
    return out.getvalue().encode("utf-8")


def opened(period: Period):
    """A file update (for `Change.files`): record `period` as running, and close any other running
    period of the same Space with this one's start (its replica is gone: the Space runs one replica
    at a time once a switch is over), marked estimated. Re-applying it changes nothing."""

    def update(existing: bytes | None) -> bytes:
        periods = parse(existing)
        if any(p.replica == period.replica for p in periods):
            return dump(periods)
        closed = [replace(p, end=period.start, ended_by="estimated")
                  if p.space == period.space and p.end is None else p for p in periods]
        return dump([*closed, period])

    return update


def closed(replica: str, end: datetime):
    """A file update: the period of `replica` ends at `end` (the replica is stopping)."""

    def update(existing: bytes | None) -> bytes:
        return dump([replace(p, end=end, ended_by="stop") if p.replica == replica and p.end is None else p
                     for p in parse(existing)])

    return update


@dataclass(frozen=True)
class Bill:
    """Totals in USD: what the Hub bills (`billed_usd`), the tasks' shares and the overhead."""

    billed_usd: float
    tasks_usd: float
    overhead_usd: float
    periods: int
    paid_seconds: float


def bill(periods: Iterable[Period], tasks: Iterable[Task], prices: Mapping[str, float],
         now: datetime | None = None, space: str | None = None) -> Bill:
    """The bill of `periods` (only `space`'s, if given) with the tasks' shares (their `cost_usd`)."""
    now = now or datetime.now(timezone.utc)
    chosen = [p for p in periods if space is None or p.space == space]
    billed = sum(p.billed_usd(prices.get(p.flavor, 0.0), now) for p in chosen)
    shares = sum(t.cost_usd or 0.0 for t in tasks)
    return Bill(round(billed, 6), round(shares, 6), round(max(0.0, billed - shares), 6), len(chosen),
                round(sum(p.seconds(now) for p in chosen), 1))
