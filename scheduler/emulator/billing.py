"""What the Hub bills: paid periods of Space replicas and Jobs, per started minute (hub-facts §11).

A period is one replica of a Space, or one Job, on one flavor:

- A Space replica's period starts when its boot is over and the replica starts (the stage becomes
  APP_STARTING for a supervised app, RUNNING otherwise), or at once when a secret or variable
  change restarts the app (the Space stays APP_STARTING through the boot delay). It ends when the
  replica is told to stop (SIGTERM: replaced by a new replica, after the overlap of a hardware
  switch; paused; slept; restarted; deleted), or when its app exits on its own. The grace time
  between SIGTERM and the process's end is not billed. Building is not billed (nothing runs on the
  new flavor; the old replica, if any, is billed until it stops), nor is a sleeping or paused Space.
- A Job's period starts when it leaves SCHEDULING (its process starts) and ends when it reaches a
  terminal stage (exit, cancel, timeout).

Each period is billed `ceil(seconds / 60)` minutes at the flavor's price per minute (Jobs have
their own cpu-basic price). The per-second figures (`billed_seconds`, `cost_usd`,
`total_cost_usd`) are kept alongside: they are what the time on paid hardware costs without the
rounding.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from .hardware import price_per_hour


def figures(period: dict, now: float, jobs: bool = False) -> dict[str, Any]:
    """One period with its seconds, billed minutes and USD (`end` None = still running, up to `now`)."""
    end = period["end"] if period.get("end") is not None else now
    seconds = max(0.0, end - period["start"])
    per_hour = price_per_hour(period["flavor"], jobs=jobs)
    minutes = math.ceil(seconds / 60) if seconds > 0 else 0
    return {**period, "running": period.get("end") is None, "seconds": round(seconds, 3),
            "billed_minutes": minutes, "usd": round(minutes * per_hour / 60, 6),
            "usd_per_second_figure": round(seconds / 3600 * per_hour, 10)}


def summarize(periods: Iterable[dict], now: float, jobs: bool = False) -> dict[str, Any]:
    """Paid periods with their figures, per flavor and in total."""
    out: list[dict] = []
    seconds: dict[str, float] = {}
    minutes: dict[str, int] = {}
    usd: dict[str, float] = {}
    per_second_usd: dict[str, float] = {}
    for period in periods:
        if price_per_hour(period["flavor"], jobs=jobs) <= 0:
            continue
        item = figures(period, now, jobs)
        out.append(item)
        flavor = item["flavor"]
        seconds[flavor] = seconds.get(flavor, 0.0) + item["seconds"]
        minutes[flavor] = minutes.get(flavor, 0) + item["billed_minutes"]
        usd[flavor] = usd.get(flavor, 0.0) + item["usd"]
        per_second_usd[flavor] = per_second_usd.get(flavor, 0.0) + item["usd_per_second_figure"]
    return {
        "periods": out,
        "billed_seconds": {k: round(v, 3) for k, v in seconds.items()},
        "cost_usd": {k: round(v, 10) for k, v in per_second_usd.items()},
        "total_cost_usd": round(sum(per_second_usd.values()), 10),
        "billed_minutes": minutes,
        "billed_usd": {k: round(v, 6) for k, v in usd.items()},
        "totals": {"periods": len(out), "seconds": round(sum(seconds.values()), 3),
                   "billed_minutes": sum(minutes.values()), "usd": round(sum(usd.values()), 6)},
    }
