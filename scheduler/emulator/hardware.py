"""Hardware flavors and hourly prices, shaped like the Hub's `/api/spaces/hardware` and
`/api/jobs/hardware` answers.

Prices are the public list prices in USD per hour at the time of writing; they only have to be
realistic enough for cost estimates. The Hub bills per minute, so the JSON carries
`unitCostUSD`/`unitCostMicroUSD` per minute and `unitLabel: "minute"`, as `JobHardwareInfo`
(what `list_spaces_hardware` and `list_jobs_hardware` return) parses them.

Space flavors are those of huggingface_hub's `SpaceHardware`, ZeroGPU (`zero-a10g`, $0) first as the
Hub offers it; Job flavors are those of `JobHardware`: no ZeroGPU, plus cpu-performance, cpu-xl and
the H200 flavors. A Space request or a Job is refused (400) for a flavor outside its list.
"""

from __future__ import annotations

# name: (pretty name, cpu, ram, accelerator (model, quantity, vram) or None, USD per hour)
FLAVORS: dict[str, tuple[str, str, str, tuple[str, str, str] | None, float]] = {
    "cpu-basic": ("CPU basic", "2 vCPU", "16 GB", None, 0.0),
    "cpu-upgrade": ("CPU upgrade", "8 vCPU", "32 GB", None, 0.03),
    "cpu-performance": ("CPU performance", "32 vCPU", "256 GB", None, 0.20),
    "cpu-xl": ("CPU XL", "16 vCPU", "124 GB", None, 1.00),
    "zero-a10g": ("ZeroGPU", "2 vCPU", "16 GB", ("A10G", "1", "24 GB"), 0.0),
    "t4-small": ("Nvidia T4 - small", "4 vCPU", "15 GB", ("T4", "1", "16 GB"), 0.40),
    "t4-medium": ("Nvidia T4 - medium", "8 vCPU", "30 GB", ("T4", "1", "16 GB"), 0.60),
    "l4x1": ("1x Nvidia L4", "8 vCPU", "30 GB", ("L4", "1", "24 GB"), 0.80),
    "l4x4": ("4x Nvidia L4", "48 vCPU", "186 GB", ("L4", "4", "96 GB"), 3.80),
    "l40sx1": ("1x Nvidia L40S", "8 vCPU", "62 GB", ("L40S", "1", "48 GB"), 1.80),
    "l40sx4": ("4x Nvidia L40S", "48 vCPU", "382 GB", ("L40S", "4", "192 GB"), 8.30),
    "l40sx8": ("8x Nvidia L40S", "192 vCPU", "1534 GB", ("L40S", "8", "384 GB"), 23.50),
    "a10g-small": ("Nvidia A10G - small", "4 vCPU", "15 GB", ("A10G", "1", "24 GB"), 1.00),
    "a10g-large": ("Nvidia A10G - large", "12 vCPU", "46 GB", ("A10G", "1", "24 GB"), 1.50),
    "a10g-largex2": ("2x Nvidia A10G - large", "24 vCPU", "92 GB", ("A10G", "2", "48 GB"), 3.00),
    "a10g-largex4": ("4x Nvidia A10G - large", "48 vCPU", "184 GB", ("A10G", "4", "96 GB"), 5.00),
    "a100-large": ("Nvidia A100 - large", "12 vCPU", "142 GB", ("A100", "1", "80 GB"), 2.50),
    "a100x4": ("4x Nvidia A100", "48 vCPU", "568 GB", ("A100", "4", "320 GB"), 10.00),
    "a100x8": ("8x Nvidia A100", "96 vCPU", "1136 GB", ("A100", "8", "640 GB"), 20.00),
    "h200": ("Nvidia H200", "23 vCPU", "256 GB", ("H200", "1", "141 GB"), 5.00),
    "h200x2": ("2x Nvidia H200", "46 vCPU", "512 GB", ("H200", "2", "282 GB"), 10.00),
    "h200x4": ("4x Nvidia H200", "92 vCPU", "1024 GB", ("H200", "4", "564 GB"), 20.00),
    "h200x8": ("8x Nvidia H200", "184 vCPU", "2048 GB", ("H200", "8", "1128 GB"), 40.00),
    "rtx-pro-6000": ("Nvidia RTX PRO 6000", "12 vCPU", "96 GB", ("RTX PRO 6000", "1", "96 GB"), 2.50),
    "rtx-pro-6000x2": ("2x Nvidia RTX PRO 6000", "24 vCPU", "192 GB", ("RTX PRO 6000", "2", "192 GB"), 5.00),
    "rtx-pro-6000x4": ("4x Nvidia RTX PRO 6000", "48 vCPU", "384 GB", ("RTX PRO 6000", "4", "384 GB"), 10.00),
    "rtx-pro-6000x8": ("8x Nvidia RTX PRO 6000", "96 vCPU", "768 GB", ("RTX PRO 6000", "8", "768 GB"), 20.00),
}

# Jobs have no free tier: cpu-basic costs a cent an hour there.
JOB_PRICE_OVERRIDES = {"cpu-basic": 0.01}
SPACE_ONLY = {"zero-a10g"}
JOB_ONLY = {"cpu-performance", "cpu-xl", "h200", "h200x2", "h200x4", "h200x8"}


SPACE_FLAVORS = ["zero-a10g", *(f for f in FLAVORS if f not in SPACE_ONLY | JOB_ONLY)]
JOB_FLAVORS = [f for f in FLAVORS if f not in SPACE_ONLY]


def price_per_hour(flavor: str | None, jobs: bool = False) -> float:
    if flavor is None or flavor not in FLAVORS:
        return 0.0
    if jobs and flavor in JOB_PRICE_OVERRIDES:
        return JOB_PRICE_OVERRIDES[flavor]
    return FLAVORS[flavor][4]


def is_paid(flavor: str | None) -> bool:
    return price_per_hour(flavor) > 0


def hardware_list(jobs: bool = False) -> list[dict]:
    """The Hub's hardware list for Jobs or Spaces: name, prettyName, cpu, ram, accelerator, prices."""
    out = []
    for name in JOB_FLAVORS if jobs else SPACE_FLAVORS:
        pretty, cpu, ram, acc, _ = FLAVORS[name]
        per_minute = price_per_hour(name, jobs) / 60
        item = {
            "name": name,
            "prettyName": pretty,
            "cpu": cpu,
            "ram": ram,
            "ephemeralStorage": "50 GB",
            "accelerator": None,
            "unitCostMicroUSD": round(per_minute * 1_000_000),
            "unitCostUSD": round(per_minute, 6),
            "unitLabel": "minute",
            "pricePerHourUSD": price_per_hour(name, jobs),
        }
        if acc:
            model, qty, vram = acc
            item["accelerator"] = {"type": "gpu", "model": model, "quantity": qty, "vram": vram,
                                   "manufacturer": "Nvidia"}
        out.append(item)
    return out
