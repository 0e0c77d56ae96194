"""The real Hub's rules the emulator enforces (hub-facts §11), each with a switch.

All of them are on by default. A test or a benchmark that needs one off (or tuned: a shorter
commit window, smaller quotas) says so:

    start_emulator(data, rules={"commit_quota": False})            # or rules="commit_quota=off"
    start_emulator(data, rules="commit_limit=12,commit_window_s=400")
    space-scheduler emulator --data d --rules quota=off,overlap=0
    POST /_emulator/rules {"sleep": false}                          # at run time; {"reset": true}

| rule | default | what it does |
|---|---|---|
| `commit_quota` | on | at most `commit_limit` commits per `commit_window_s` per repo (all writers share it); else 429 |
| `commit_limit`, `commit_window_s` | 128, 3600 | the Hub's 128 commits per hour |
| `count_412` | on | a commit refused with 412 still counts toward the commit quota (§11 assumes it may) |
| `request_quota` | on | per-account requests per fixed window, in three buckets (api, resolvers, pages); else 429 |
| `request_window_s` | 300 | the Hub's 5-minute windows |
| `quota.<plan>.<bucket>` | hub-docs rate-limits.md | e.g. `quota.free.api=1000`; plans: anonymous, free, pro, team, enterprise |
| `plans` | on | plan gates: Gradio/Docker Spaces need PRO/Team/Enterprise, paid hardware a payment method, Jobs credits |
| `sleep` | on | Spaces sleep after inactivity: cpu-basic after `cpu_basic_sleep_s`, upgraded ones after their sleep time |
| `fixed_cpu_basic_sleep` | on | the sleep time of a cpu-basic Space cannot be set: 400 "Cannot change the sleep time for cpu-basic Spaces" |
| `cpu_basic_sleep_s` | 172800 | 48 h |
| `sleep_stage` | SLEEPING | the stage a slept Space shows: SLEEPING or STOPPED (undocumented on the Hub) |
| `restart_on_config` | on | a change of a Space's secrets or variables restarts its app |
| `replica_overlap_s` (alias `overlap`) | 3 | after a hardware switch the old replica runs on this long; 0 = off |
| `gpu_machine` | on | replicas and Jobs get a fake `nvidia-smi` first on PATH, answering for their flavor's GPUs |
| `webhook_quota` | on | at most `webhook_limit` triggers per `webhook_window_s` per webhook (the rest are dropped) |
| `webhook_limit`, `webhook_window_s` | 1000, 86400 | the Hub's 1,000 per 24 h |

Aliases: `quota` / `quotas` (both quotas), `all` (every switch; `all=off` is the kinder emulator
of earlier versions: no quotas, gates, sleep, config restarts, overlap or fake GPUs).
Per-started-minute billing is not a switch: the billing answer always carries both the per-second
figures and the per-minute bill.
"""

from __future__ import annotations

import copy
import math
import threading
from dataclasses import asdict, dataclass, field, fields
from typing import Any

BUCKETS = ("api", "resolvers", "pages")
PLANS = ("anonymous", "free", "pro", "team", "enterprise")

# hub-docs docs/hub/rate-limits.md ("Rate limit Tiers", September '25), per 5-minute window.
REQUEST_QUOTAS: dict[str, dict[str, int]] = {
    "anonymous": {"api": 500, "resolvers": 3_000, "pages": 100},
    "free": {"api": 1_000, "resolvers": 5_000, "pages": 200},
    "pro": {"api": 2_500, "resolvers": 12_000, "pages": 400},
    "team": {"api": 3_000, "resolvers": 20_000, "pages": 400},
    "enterprise": {"api": 6_000, "resolvers": 50_000, "pages": 600},
}

SLEEP_STAGES = ("SLEEPING", "STOPPED")
_SWITCHES = ("commit_quota", "request_quota", "plans", "sleep", "fixed_cpu_basic_sleep", "restart_on_config",
             "gpu_machine", "webhook_quota")
_ALIASES = {"quota": ("commit_quota", "request_quota"), "quotas": ("commit_quota", "request_quota"),
            "overlap": ("replica_overlap_s",), "all": (*_SWITCHES, "replica_overlap_s")}
DEFAULT_OVERLAP_S = 3.0


@dataclass
class Rules:
    """Which of the Hub's rules are on, and their numbers (see the module docstring)."""

    commit_quota: bool = True
    commit_limit: int = 128
    commit_window_s: float = 3600.0
    count_412: bool = True
    request_quota: bool = True
    request_window_s: float = 300.0
    request_quotas: dict[str, dict[str, int]] = field(default_factory=lambda: copy.deepcopy(REQUEST_QUOTAS))
    plans: bool = True
    sleep: bool = True
    fixed_cpu_basic_sleep: bool = True
    cpu_basic_sleep_s: float = 48 * 3600.0
    sleep_stage: str = "SLEEPING"
    restart_on_config: bool = True
    replica_overlap_s: float = DEFAULT_OVERLAP_S
    gpu_machine: bool = True
    webhook_quota: bool = True
    webhook_limit: int = 1000
    webhook_window_s: float = 86400.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_changes(self, changes: "str | dict[str, Any] | None") -> "Rules":
        """A copy with `changes` applied: a dict, or a string `name=value,name=value`.

        Values: on/off/true/false/yes/no/1/0 for switches, numbers for the rest. Raises ValueError
        naming the setting for an unknown name or a bad value.
        """
        out = copy.deepcopy(self)
        for key, value in _items(changes):
            out._set(key, value)
        return out

    def _set(self, key: str, value: Any) -> None:
        key = key.strip()
        if key in _ALIASES:
            for target in _ALIASES[key]:
                if target == "replica_overlap_s":
                    on = _is_switch_word(value)
                    seconds = (DEFAULT_OVERLAP_S if _bool(key, value) else 0.0) if on else _number(key, value)
                    self.replica_overlap_s = seconds
                else:
                    setattr(self, target, _bool(key, value))
            return
        if key.startswith("quota."):
            _, _, rest = key.partition(".")
            plan, _, bucket = rest.partition(".")
            if plan not in PLANS or bucket not in BUCKETS:
                raise ValueError(f"rule {key!r}: expected quota.<{'|'.join(PLANS)}>.<{'|'.join(BUCKETS)}>")
            self.request_quotas[plan][bucket] = _int(key, value, minimum=1)
            return
        if key == "request_quotas":
            if not isinstance(value, dict):
                raise ValueError("rule 'request_quotas' must be {plan: {bucket: n}}")
            for plan, buckets in value.items():
                for bucket, n in (buckets or {}).items():
                    self._set(f"quota.{plan}.{bucket}", n)
            return
        known = {f.name: f for f in fields(self)}
        if key not in known:
            names = sorted([*known, *_ALIASES, "quota.<plan>.<bucket>"])
            raise ValueError(f"unknown rule {key!r}; known: {', '.join(names)}")
        current = getattr(self, key)
        if isinstance(current, bool):
            setattr(self, key, _bool(key, value))
        elif key == "sleep_stage":
            stage = str(value).upper()
            if stage not in SLEEP_STAGES:
                raise ValueError(f"rule 'sleep_stage' must be one of {', '.join(SLEEP_STAGES)}, got {value!r}")
            self.sleep_stage = stage
        elif isinstance(current, int):
            setattr(self, key, _int(key, value, minimum=1))
        else:
            seconds = _number(key, value)
            if key.endswith("_window_s") and seconds <= 0:
                raise ValueError(f"rule {key!r} must be > 0 seconds, got {value!r}")
            setattr(self, key, seconds)


class RuleBook:
    """The emulator's current `Rules`, changed atomically at run time (`/_emulator/rules`)."""

    def __init__(self, rules: "Rules | str | dict | None" = None):
        self._lock = threading.Lock()
        self.current = rules if isinstance(rules, Rules) else Rules().with_changes(rules)

    def update(self, changes: "str | dict[str, Any] | None", reset: bool = False) -> Rules:
        with self._lock:
            base = Rules() if reset else self.current
            self.current = base.with_changes(changes)
            return self.current


def _items(changes: "str | dict[str, Any] | None") -> list[tuple[str, Any]]:
    if not changes:
        return []
    if isinstance(changes, dict):
        return list(changes.items())
    items = []
    for part in str(changes).split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"rules: expected name=value, got {part.strip()!r}")
        items.append((key.strip(), value.strip()))
    return items


_TRUE = {"on", "true", "yes", "1"}
_FALSE = {"off", "false", "no", "0"}


def _is_switch_word(value: Any) -> bool:
    return isinstance(value, bool) or str(value).strip().lower() in ("on", "off", "true", "false", "yes", "no")


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"rule {key!r} is a switch: on or off, got {value!r}")


def _number(key: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"rule {key!r} must be a number of seconds, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"rule {key!r} must be a finite number >= 0, got {value!r}")
    return number


def _int(key: str, value: Any, minimum: int) -> int:
    number = _number(key, value)
    if number != int(number) or number < minimum:
        raise ValueError(f"rule {key!r} must be a whole number >= {minimum}, got {value!r}")
    return int(number)
