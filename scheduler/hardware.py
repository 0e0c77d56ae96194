"""Hardware flavors, their prices, and the Space's own hardware as seen and driven through the Hub.

Every request that changes hardware restarts the Space, and a paid flavor bills by the minute
until someone asks for `cpu-basic` again; so requests are made once, checked by reading the
runtime back, and always carry a sleep time on paid hardware.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Callable

from huggingface_hub import HfApi, SpaceHardware
from huggingface_hub.hf_api import SpaceRuntime

from . import hub
from .errors import UserError
from .flavors import FALLBACK_JOB_FLAVORS, FALLBACK_SPACE_FLAVORS, catalog
from .redact import redact

IDLE_FLAVOR = SpaceHardware.CPU_BASIC.value
LOCAL = "local"
FLAVORS: tuple[str, ...] = tuple(h.value for h in SpaceHardware)

# List prices in USD per hour, used when the Hub's price list cannot be read (flavors.py's table).
FALLBACK_PRICES: dict[str, float] = {n: f.usd_per_hour for n, f in FALLBACK_SPACE_FLAVORS.items()}
FALLBACK_JOB_PRICES: dict[str, float] = {n: f.usd_per_hour for n, f in FALLBACK_JOB_FLAVORS.items()}

# Stages during which the Space is on its way somewhere; polling continues through them.
INTERMEDIATE_STAGES = frozenset({"BUILDING", "RUNNING_BUILDING", "APP_STARTING", "RUNNING_APP_STARTING"})
# Stages in which the app cannot come up on the requested hardware without someone acting.
ERROR_STAGES = frozenset({"BUILD_ERROR", "RUNTIME_ERROR", "CONFIG_ERROR", "NO_APP_FILE"})
# A Space that slept after inactivity: the Hub's stage for it is undocumented (hub-facts §11), both are
# handled. A restart or a visit wakes it; a PAUSED Space stays paused until its owner restarts it.
SLEEPING_STAGES = frozenset({"SLEEPING", "STOPPED"})
STOPPED_STAGES = frozenset({"PAUSED", "DELETING"})
# The app process is up (it may still be finishing its start) on `hardware`.
APP_UP_STAGES = frozenset({"RUNNING", "APP_STARTING", "RUNNING_APP_STARTING"})

def hourly_prices(api: HfApi | None = None) -> dict[str, float]:
    """USD per hour by Space flavor, from the Hub's list when it answers, else the fallback table."""
    return catalog(api, "spaces").prices()


def job_prices(api: HfApi | None = None) -> dict[str, float]:
    """USD per hour by Job flavor, from the Hub's list when it answers, else the fallback table."""
    return catalog(api, "jobs").prices()


def is_paid(flavor: str | None, idle: str = IDLE_FLAVOR) -> bool:
    """Anything but the idle flavor counts as paid: even a free GPU flavor must be given back."""
    return bool(flavor) and flavor not in (idle, LOCAL)


@dataclass(frozen=True)
class Runtime:
    """What the worker needs from `SpaceRuntime`, frozen so decisions are pure functions of it."""

    stage: str
    hardware: str | None
    requested_hardware: str | None
    sleep_time: int | None = None
    error: str | None = None

    @classmethod
    def from_space_runtime(cls, runtime: SpaceRuntime) -> "Runtime":
        raw = getattr(runtime, "raw", None) or {}
        message = raw.get("errorMessage") if isinstance(raw, dict) else None
        return cls(
            stage=str(runtime.stage),
            hardware=str(runtime.hardware) if runtime.hardware else None,
            requested_hardware=str(runtime.requested_hardware) if runtime.requested_hardware else None,
            sleep_time=runtime.sleep_time,
            error=redact(message) if message else None,
        )

    @property
    def local(self) -> bool:
        return self.hardware == LOCAL

    @property
    def switching(self) -> bool:
        """A hardware change (or restart) has been asked for and is not finished."""
        if self.requested_hardware and self.requested_hardware != self.hardware:
            return True
        return self.stage in ("BUILDING", "RUNNING_BUILDING")

    def settled_on(self, flavor: str) -> bool:
        return self.hardware == flavor and self.requested_hardware in (None, flavor) and self.stage in APP_UP_STAGES

    def to_dict(self) -> dict:
        return {"stage": self.stage, "hardware": self.hardware, "requested_hardware": self.requested_hardware,
                "sleep_time": self.sleep_time, "error": self.error}


class SpaceController:
    """The hardware of one Space, through the Hub API (timeouts on every call, retries on reads)."""

    local = False

    def __init__(self, space_id: str, *, api: HfApi | None = None, token: str | None = None,
                 endpoint: str | None = None, idle_flavor: str = IDLE_FLAVOR, poll_s: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep, retry_deadline_s: float = 120.0):
        from . import validation

        # Checked here, not left to the client: its refusal is an HFValidationError with a traceback.
        space_id = validation.repo_id(space_id, "space")
        hub.ensure_http_timeout()
        self.space_id = space_id
        self.api = api or HfApi(token=token, endpoint=endpoint)
        self.idle_flavor = idle_flavor
        self.poll_s = poll_s
        self.retry_deadline_s = retry_deadline_s  # how long one runtime read retries transient failures
        self._sleep = sleep
        self._prices: dict[str, float] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, **kwargs) -> "SpaceController":
        """Inside a Space the Hub sets SPACE_ID to the Space's own id."""
        space_id = os.environ.get("SPACE_ID")
        if not space_id:
            raise UserError("SPACE_ID is not set: pass --space OWNER/NAME, or --hardware local")
        return cls(space_id, **kwargs)

    def __repr__(self) -> str:
        return f"SpaceController({self.space_id!r})"

    def prices(self) -> dict[str, float]:
        with self._lock:
            if self._prices is None:
                self._prices = hourly_prices(self.api)
            return self._prices

    def price(self, flavor: str | None) -> float:
        return self.prices().get(flavor or "", 0.0)

    def runtime(self) -> Runtime:
        raw = hub.with_retries(lambda: self.api.get_space_runtime(self.space_id), f"read {self.space_id} runtime",
                               deadline_s=self.retry_deadline_s)
        return Runtime.from_space_runtime(raw)

    def request(self, flavor: str, sleep_time: int | None = None) -> Runtime:
        """Ask for `flavor` once. A lost answer is settled by reading the runtime back, not by asking
        again: each accepted request restarts the Space."""
        if flavor not in FLAVORS:
            raise UserError(f"{flavor!r} is not a Space hardware flavor; choose one of: {', '.join(FLAVORS)}")
        if is_paid(flavor, self.idle_flavor) and not sleep_time:
            raise ValueError(f"paid hardware ({flavor}) is only requested with a sleep time")
        deadline = time.monotonic() + 60
        attempt = 0
        while True:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # the client warns about sleep_time on cpu-basic
                    raw = self.api.request_space_hardware(self.space_id, flavor, sleep_time=sleep_time)
                return Runtime.from_space_runtime(raw)
            except Exception as exc:
                if not hub.is_transient(exc) or time.monotonic() > deadline:
                    raise
                try:
                    current = self.runtime()
                except Exception:
                    current = None
                if current is not None and current.requested_hardware == flavor:
                    return current
                self._sleep(hub.backoff_delay(attempt))
                attempt += 1

    def downgrade(self) -> Runtime:
        return self.request(self.idle_flavor)

    def set_sleep_time(self, seconds: int) -> Runtime:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Runtime.from_space_runtime(self.api.set_space_sleep_time(self.space_id, seconds))

    def pause(self) -> Runtime:
        return Runtime.from_space_runtime(self.api.pause_space(self.space_id))

    def restart(self, factory_reboot: bool = False) -> Runtime:
        return Runtime.from_space_runtime(self.api.restart_space(self.space_id, factory_reboot=factory_reboot))

    def wait(self, predicate: Callable[[Runtime], bool], deadline_s: float,
             should_stop: Callable[[], bool] = lambda: False) -> Runtime | None:
        """Poll the runtime through intermediate stages until `predicate` holds. None on deadline or stop;
        the last runtime is kept in `last_seen`."""
        end = time.monotonic() + deadline_s
        self.last_seen: Runtime | None = None
        while True:
            try:
                current = self.runtime()
                self.last_seen = current
                if predicate(current):
                    return current
            except Exception:
                pass  # a failed poll is not an answer; keep polling until the deadline
            pause_until = min(end, time.monotonic() + self.poll_s)
            while True:
                # Short naps: a stopping worker (SIGTERM) has only seconds before it is killed.
                if should_stop() or time.monotonic() >= end:
                    return None
                if time.monotonic() >= pause_until:
                    break
                self._sleep(min(0.1, max(0.0, pause_until - time.monotonic())))


class LocalController:
    """This machine, whatever it is: every task runs here and the hardware never changes."""

    local = True
    space_id = None
    idle_flavor = LOCAL

    def __init__(self, price_per_hour: float = 0.0):
        self._price = price_per_hour

    def __repr__(self) -> str:
        return "LocalController()"

    def prices(self) -> dict[str, float]:
        return {LOCAL: self._price}

    def price(self, flavor: str | None) -> float:
        return self._price

    def runtime(self) -> Runtime:
        return Runtime(stage="RUNNING", hardware=LOCAL, requested_hardware=LOCAL)

    def request(self, flavor: str, sleep_time: int | None = None) -> Runtime:
        raise UserError("a local worker cannot change its hardware")

    def downgrade(self) -> Runtime:
        return self.runtime()

    def wait(self, predicate, deadline_s: float, should_stop=lambda: False) -> Runtime | None:
        current = self.runtime()
        return current if predicate(current) else None
