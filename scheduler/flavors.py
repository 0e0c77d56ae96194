"""Hardware flavors as the Hub offers them, for Spaces and for Jobs, and the accelerator this machine
physically has.

The lists come from the Hub (`list_spaces_hardware()`, `list_jobs_hardware()`: name, accelerator model
and count, price per unit of time), so a flavor the Hub adds after this release is offered at once;
when the Hub cannot be read, the fallback table below stands in. ZeroGPU (`zero-a10g`) is listed by the
Hub for Spaces but is never offered for training: it gives a GPU only inside `@spaces.GPU` functions
of the Gradio process, never to a training callback in a child process (hub-facts §11). It is no Job
flavor either.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from .errors import ValidationError

ZERO_GPU = "zero-a10g"
_UNIT_PER_HOUR = {"second": 3600.0, "minute": 60.0, "hour": 1.0}


@dataclass(frozen=True)
class Flavor:
    """One flavor: USD per hour, and its GPUs (model as the Hub names it, e.g. "T4", and how many)."""

    name: str
    usd_per_hour: float
    gpu_model: str | None = None
    gpu_count: int = 0
    vram_gb: float | None = None

    @property
    def trainable(self) -> bool:
        return self.name != ZERO_GPU


# name: (USD per hour, GPU model, GPU count, VRAM in GB per flavor); public list prices, late 2026.
_TABLE: dict[str, tuple[float, str | None, int, float | None]] = {
    "cpu-basic": (0.0, None, 0, None),
    "cpu-upgrade": (0.03, None, 0, None),
    "zero-a10g": (0.0, "A10G", 1, 24),
    "t4-small": (0.40, "T4", 1, 16),
    "t4-medium": (0.60, "T4", 1, 16),
    "l4x1": (0.80, "L4", 1, 24),
    "l4x4": (3.80, "L4", 4, 96),
    "l40sx1": (1.80, "L40S", 1, 48),
    "l40sx4": (8.30, "L40S", 4, 192),
    "l40sx8": (23.50, "L40S", 8, 384),
    "a10g-small": (1.00, "A10G", 1, 24),
    "a10g-large": (1.50, "A10G", 1, 24),
    "a10g-largex2": (3.00, "A10G", 2, 48),
    "a10g-largex4": (5.00, "A10G", 4, 96),
    "a100-large": (2.50, "A100", 1, 80),
    "a100x4": (10.00, "A100", 4, 320),
    "a100x8": (20.00, "A100", 8, 640),
    "rtx-pro-6000": (2.50, "RTX PRO 6000", 1, 96),
    "rtx-pro-6000x2": (5.00, "RTX PRO 6000", 2, 192),
    "rtx-pro-6000x4": (10.00, "RTX PRO 6000", 4, 384),
    "rtx-pro-6000x8": (20.00, "RTX PRO 6000", 8, 768),
    # Jobs only
    "cpu-performance": (0.20, None, 0, None),
    "cpu-xl": (1.00, None, 0, None),
    "h200": (5.00, "H200", 1, 141),
    "h200x2": (10.00, "H200", 2, 282),
    "h200x4": (20.00, "H200", 4, 564),
    "h200x8": (40.00, "H200", 8, 1128),
}
_JOBS_ONLY = {"cpu-performance", "cpu-xl", "h200", "h200x2", "h200x4", "h200x8"}
FALLBACK_SPACE_FLAVORS = {n: Flavor(n, *v) for n, v in _TABLE.items() if n not in _JOBS_ONLY}
FALLBACK_JOB_FLAVORS = {n: Flavor(n, *v) for n, v in _TABLE.items() if n != ZERO_GPU}
KINDS = {"spaces": ("list_spaces_hardware", FALLBACK_SPACE_FLAVORS), "jobs": ("list_jobs_hardware", FALLBACK_JOB_FLAVORS)}


@dataclass(frozen=True)
class Catalog:
    """The flavors one target offers (`kind`: "spaces" or "jobs"); `source`: "hub" or "fallback"."""

    kind: str
    flavors: dict[str, Flavor]
    source: str

    def prices(self) -> dict[str, float]:
        """USD per hour by flavor."""
        return {name: f.usd_per_hour for name, f in self.flavors.items()}

    def trainable(self) -> list[str]:
        """The flavors a task may ask for, cheapest first (ZeroGPU never)."""
        names = [n for n, f in self.flavors.items() if f.trainable]
        return sorted(names, key=lambda n: (self.flavors[n].usd_per_hour, n))

    def check(self, flavor: str, field: str = "hardware") -> str:
        """`flavor` if a task may run on it here; else ValidationError naming the field and the choices."""
        if flavor == ZERO_GPU and flavor in self.flavors:
            raise ValidationError(field, "zero-a10g (ZeroGPU) gives no GPU to a training process; choose a "
                                         "GPU flavor such as t4-small")
        if flavor not in self.flavors:
            target = "Space" if self.kind == "spaces" else "Job"
            raise ValidationError(field, f"{flavor!r} is not a {target} hardware flavor; choose one of: "
                                         f"{', '.join(self.trainable())}")
        return flavor


_cache: dict[tuple[str, str], tuple[float, Catalog]] = {}  # key -> (monotonic expiry, catalog)
_cache_lock = threading.Lock()
CACHE_S = 3600.0
# After a failed fetch the fallback table serves this long: the page's refresh and the worker's steps
# read the catalog every few seconds, and each fetch may wait out an outage for up to 20 s.
FALLBACK_CACHE_S = 60.0


def catalog(api, kind: str = "spaces") -> Catalog:
    """The flavors `kind` offers, from the Hub (cached an hour per endpoint), else the fallback table
    (for a minute, then the Hub is asked again). `api`: an HfApi, or None for the fallback table alone."""
    method, fallback = KINDS[kind]
    if api is None:
        return Catalog(kind, dict(fallback), "fallback")
    key = (getattr(api, "endpoint", ""), kind)
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None and time.monotonic() < cached[0]:
            return cached[1]
    from . import hub

    hub.ensure_http_timeout()
    try:
        listed = hub.with_retries(getattr(api, method), method.replace("_", " "), deadline_s=20)
    except Exception:
        offline = Catalog(kind, dict(fallback), "fallback")
        with _cache_lock:
            _cache[key] = (time.monotonic() + FALLBACK_CACHE_S, offline)
        return offline
    found = Catalog(kind, {info.name: _flavor(info, fallback.get(info.name)) for info in listed}, "hub")
    with _cache_lock:
        _cache[key] = (time.monotonic() + CACHE_S, found)
    return found


def _flavor(info, known: Flavor | None) -> Flavor:
    per_unit = getattr(info, "unit_cost_usd", None)
    factor = _UNIT_PER_HOUR.get(str(getattr(info, "unit_label", "minute")).lower())
    price = round(float(per_unit) * factor, 6) if per_unit is not None and factor else (known.usd_per_hour if known else 0.0)
    accelerator = getattr(info, "accelerator", None)
    if accelerator is not None:
        try:
            count = int(accelerator.quantity)
        except (TypeError, ValueError):
            count = 1
        vram = _gb(getattr(accelerator, "vram", None))
        return Flavor(info.name, price, accelerator.model, count, vram)
    if known is not None:
        return Flavor(info.name, price, known.gpu_model, known.gpu_count, known.vram_gb)
    return Flavor(info.name, price)


def _gb(text: str | None) -> float | None:
    match = re.search(r"([\d.]+)", text or "")
    return float(match.group(1)) if match else None


def catalog_for(executor: str | None, api=None) -> Catalog:
    """The flavors a task may name when it runs on `executor` ("jobs": Job flavors; else Space flavors)."""
    return catalog(api, "jobs" if executor == "jobs" else "spaces")


# ---------------------------------------------------------------- this machine


@dataclass(frozen=True)
class Accelerators:
    """The GPUs this machine has, as `nvidia-smi` lists them (names, memory in MiB)."""

    names: tuple[str, ...] = ()
    memory_mib: tuple[int, ...] = ()

    @property
    def count(self) -> int:
        return len(self.names)

    def can_run(self, flavor: Flavor | None) -> bool:
        """True when this machine has the flavor's GPUs (at least as many, of its model); a CPU flavor
        runs anywhere; an unknown flavor is not judged."""
        if flavor is None or not flavor.gpu_count or not flavor.gpu_model:
            return True
        wanted = set(_tokens(flavor.gpu_model))
        matching = [n for n in self.names if wanted <= set(_tokens(n))]
        return len(matching) >= flavor.gpu_count


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def probe_accelerators(timeout_s: float = 10.0) -> Accelerators:
    """What `nvidia-smi` reports on this machine; none when it is missing or fails (no driver).
    No torch import: it is read before anything is trained, on the idle flavor too."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return Accelerators()
    try:
        done = subprocess.run([exe, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired):
        return Accelerators()
    if done.returncode != 0:
        return Accelerators()
    names, memory = [], []
    for line in done.stdout.splitlines():
        name, _, mib = line.rpartition(",")
        if not name.strip():
            continue
        names.append(name.strip())
        try:
            memory.append(int(float(mib.strip())))
        except ValueError:
            memory.append(0)
    return Accelerators(tuple(names), tuple(memory))
