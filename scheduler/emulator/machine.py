"""The machine a replica or a Job runs on: a fake `nvidia-smi` for its flavor, first on its PATH.

A GPU flavor's `nvidia-smi` lists the flavor's GPUs (names and memory as the real tool prints
them on that hardware); a CPU flavor's, and ZeroGPU's (whose GPU only exists inside
`@spaces.GPU` functions of the Gradio process, never in a training child), fails exactly as the
real one does on a machine without an NVIDIA driver. Supported:

    nvidia-smi -L | --list-gpus
    nvidia-smi --query-gpu=name,memory.total[,memory.used,memory.free,index,uuid,count,
               driver_version,utilization.gpu,pci.bus_id] --format=csv[,noheader][,nounits]
    nvidia-smi                                   (a short summary table)

The scripts live in `<data>/machines/<flavor>/nvidia-smi` and are written on first use.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from .hardware import FLAVORS
from .storage import atomic_write

# accelerator model in hardware.FLAVORS -> (name nvidia-smi prints, memory.total in MiB)
GPU_MODELS: dict[str, tuple[str, int]] = {
    "T4": ("Tesla T4", 15360),
    "L4": ("NVIDIA L4", 23034),
    "L40S": ("NVIDIA L40S", 46068),
    "A10G": ("NVIDIA A10G", 23028),
    "A100": ("NVIDIA A100-SXM4-80GB", 81920),
    "H200": ("NVIDIA H200", 143771),
    "RTX PRO 6000": ("NVIDIA RTX PRO 6000 Blackwell Server Edition", 97887),
}
NO_GPU_FLAVORS = {"zero-a10g"}
NO_DRIVER_MESSAGE = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
                     "Make sure that the latest NVIDIA driver is installed and running.")
DRIVER_VERSION = "550.54.15"


def gpus(flavor: str | None) -> list[tuple[str, int]]:
    """[(name, memory MiB)] per GPU of `flavor`; [] for CPU flavors, ZeroGPU and unknown ones."""
    if not flavor or flavor in NO_GPU_FLAVORS or flavor not in FLAVORS:
        return []
    accelerator = FLAVORS[flavor][3]
    if accelerator is None:
        return []
    model, quantity, _ = accelerator
    return [GPU_MODELS[model]] * int(quantity)


def bin_dir(data_dir: Path, flavor: str | None) -> Path:
    """The folder to put first on PATH for a process on `flavor` (its `nvidia-smi` written if missing)."""
    listed = gpus(flavor)
    folder = Path(data_dir) / "machines" / (flavor if listed else "no-gpu")
    script = folder / "nvidia-smi"
    if not script.exists():
        atomic_write(script, _script(listed).encode(), fsync=False)
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder


def path_with_machine(data_dir: Path, flavor: str | None, path: str | None = None) -> str:
    """PATH for a process on `flavor`: its machine folder first, then `path` (default: this PATH)."""
    rest = os.environ.get("PATH", "") if path is None else path
    return os.pathsep.join(filter(None, [str(bin_dir(data_dir, flavor)), rest]))


def _script(listed: list[tuple[str, int]]) -> str:
    # -S: the script needs nothing outside the standard library, and skipping site keeps it quick.
    return f"#!{sys.executable} -S\n" + f"GPUS = {listed!r}\n" + _BODY.replace("@DRIVER@", DRIVER_VERSION).replace(
        "@NO_DRIVER@", NO_DRIVER_MESSAGE)


_BODY = r'''import sys

args = sys.argv[1:]
if not GPUS:
    print("@NO_DRIVER@")
    sys.exit(9)


def uuid(i):
    return "GPU-%08x-5e1a-4c5d-9f0b-%012x" % (0x5ca1ab1e + i, i)


FIELDS = {
    "name": (lambda i, g: g[0], None),
    "memory.total": (lambda i, g: str(g[1]), "MiB"),
    "memory.used": (lambda i, g: "0", "MiB"),
    "memory.free": (lambda i, g: str(g[1]), "MiB"),
    "index": (lambda i, g: str(i), None),
    "uuid": (lambda i, g: uuid(i), None),
    "count": (lambda i, g: str(len(GPUS)), None),
    "driver_version": (lambda i, g: "@DRIVER@", None),
    "utilization.gpu": (lambda i, g: "0", "%"),
    "pci.bus_id": (lambda i, g: "00000000:%02X:00.0" % (i + 1), None),
}

if args and args[0] in ("-L", "--list-gpus"):
    for i, g in enumerate(GPUS):
        print("GPU %d: %s (UUID: %s)" % (i, g[0], uuid(i)))
    sys.exit(0)

query = [a.split("=", 1)[1] for a in args if a.startswith("--query-gpu=")]
fmt = [a.split("=", 1)[1] for a in args if a.startswith("--format=")]
if query:
    names = [f.strip() for f in query[0].split(",") if f.strip()]
    for name in names:
        if name not in FIELDS:
            print('Field "%s" is not a valid field to query.' % name)
            print()
            sys.exit(2)
    options = fmt[0].split(",") if fmt else []
    if "csv" not in options:
        print('"--query-gpu" requires "--format" with "csv".')
        sys.exit(2)
    units = "nounits" not in options
    if "noheader" not in options:
        print(", ".join(n + (" [%s]" % FIELDS[n][1] if FIELDS[n][1] else "") for n in names))
    for i, g in enumerate(GPUS):
        cells = []
        for n in names:
            value, unit = FIELDS[n][0](i, g), FIELDS[n][1]
            cells.append(value + (" " + unit if unit and units else ""))
        print(", ".join(cells))
    sys.exit(0)

if args:
    print("Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.")
    sys.exit(2)
print("+-----------------------------------------------------------------------------------------+")
print("| NVIDIA-SMI @DRIVER@             Driver Version: @DRIVER@     CUDA Version: 12.4     |")
print("|-----------------------------------------+------------------------+----------------------+")
for i, g in enumerate(GPUS):
    print("| %3d  %-34s | %s |" % (i, g[0][:34], ("0MiB / %dMiB" % g[1]).rjust(22)))
print("+-----------------------------------------------------------------------------------------+")
'''
