"""How a fine-tune runs on the hardware it is given: precision, memory, launcher. Pure functions.

`make_plan(device, shape, request)` decides, from the device (GPU generation, memory, count), the
model's shape and the task's params:

- precision: bf16 autocast on Ampere and newer (compute capability >= 8.0), fp16 autocast with
  loss scaling on older GPUs (T4), fp32 on CPU; trained weights are always fp32 master weights
  (a checkpoint stored in fp16 is upcast), a LoRA's frozen base is kept in the autocast dtype;
- method: full fine-tune, LoRA on a 16-bit base, or QLoRA (a 4-bit base through bitsandbytes)
  when asked or when a LoRA's 16-bit base does not fit;
- memory: the largest per-device batch (a power of two up to the asked batch) whose estimate fits,
  gradient accumulation up to the asked effective batch, gradient checkpointing when without it
  the per-device batch would fall below min(4, asked);
- launcher: in process on one device, `accelerate launch` (DDP, one process per GPU) on several.

The memory estimate (`estimate_bytes`) is deliberately simple and documented term by term; on a
GPU the recipe also measures one step at the planned batch before training (`search_batch_size`).
`flavor_table()` and `plan_table()` render what each flavor can fine-tune from the same rules,
for the README and `space-scheduler recipe plan`.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Iterable

from ..flavors import FALLBACK_JOB_FLAVORS, FALLBACK_SPACE_FLAVORS, ZERO_GPU
from .errors import ParamError

MIB = 1024 ** 2
GIB = 1024 ** 3


@dataclass(frozen=True)
class GPU:
    """A GPU model: `capability` is CUDA's (major, minor), `memory_bytes` the total the driver reports."""

    name: str
    capability: tuple[int, int]
    memory_bytes: int


# Total memory as nvidia-smi reports it (MiB), compute capability from NVIDIA's CUDA GPU list.
GPUS: dict[str, GPU] = {
    "T4": GPU("Tesla T4", (7, 5), 15_360 * MIB),
    "A10G": GPU("NVIDIA A10G", (8, 6), 23_028 * MIB),
    "L4": GPU("NVIDIA L4", (8, 9), 23_034 * MIB),
    "L40S": GPU("NVIDIA L40S", (8, 9), 46_068 * MIB),
    "A100": GPU("NVIDIA A100 80GB", (8, 0), 81_920 * MIB),
    "H200": GPU("NVIDIA H200", (9, 0), 143_771 * MIB),
    "RTX PRO 6000": GPU("NVIDIA RTX PRO 6000", (12, 0), 97_887 * MIB),
}
# Every GPU flavor the Hub lists for Spaces or Jobs (flavors.py's table): (GPU, how many). ZeroGPU is
# not one: its GPU never reaches a training process.
FLAVOR_GPUS: dict[str, tuple[str, int]] = {
    name: (flavor.gpu_model, flavor.gpu_count)
    for name, flavor in {**FALLBACK_SPACE_FLAVORS, **FALLBACK_JOB_FLAVORS}.items()
    if flavor.gpu_count and flavor.gpu_model and name != ZERO_GPU
}
# Flavors without a GPU for the callback, with their RAM. ZeroGPU attaches its GPU only inside
# `@spaces.GPU` functions of the Gradio process, never to a training callback's process.
CPU_FLAVORS: dict[str, int] = {"cpu-basic": 16 * 10 ** 9, "cpu-upgrade": 32 * 10 ** 9, "zero-a10g": 16 * 10 ** 9,
                               "cpu-xl": 124 * 10 ** 9, "cpu-performance": 256 * 10 ** 9}

# Bytes of optimizer state per trained parameter, by transformers `optim` name (first match wins).
_OPTIMIZER_STATE = (("8bit", 2), ("lion", 4), ("adafactor", 0), ("sgd", 4), ("adagrad", 4), ("rmsprop", 4),
                    ("lomo", 0), ("", 8))
# Activations kept for the backward pass per layer, token and hidden unit, in elements: 34 bytes in
# 16-bit (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models"),
# without their attention-score term, which SDPA/flash attention does not materialise.
_ACTIVATION_ELEMENTS = 17
# A LoRA's trained share of the parameters (r 8-16 on every linear layer of a 7B model is 0.3-0.6%).
_LORA_SHARE = 0.01
# NF4 with double quantization: 4 bits per weight plus ~0.5 bit of block constants.
_FOUR_BIT_BYTES = 4.5 / 8
# The CUDA context, cuBLAS workspaces and allocator fragmentation are not in any term above.
_CUDA_RESERVE = (0.10, GIB // 2)
_CPU_SHARE = 0.8  # the rest of the RAM belongs to the Space's app and the OS


@dataclass(frozen=True)
class Device:
    """What the training processes run on: `count` devices of one kind, `memory_bytes` each (RAM on CPU)."""

    kind: str
    name: str
    memory_bytes: int
    count: int = 1
    capability: tuple[int, int] | None = None

    @property
    def cuda(self) -> bool:
        return self.kind == "cuda"

    @property
    def budget_bytes(self) -> int:
        """What a plan may use per device."""
        if self.cuda:
            share, floor = _CUDA_RESERVE
            return int(self.memory_bytes * (1 - share) - floor)
        return int(self.memory_bytes * _CPU_SHARE)

    def describe(self) -> str:
        what = f"{self.count} x {self.name}" if self.count > 1 else self.name
        cap = f", compute {self.capability[0]}.{self.capability[1]}" if self.capability else ""
        return f"{what} ({gb(self.memory_bytes)}{' each' if self.count > 1 else ''}{cap})"


def device_for_flavor(flavor: str) -> Device:
    """The device a Space or Job of `flavor` gives a training process. Raises ParamError if unknown."""
    if flavor in FLAVOR_GPUS:
        gpu_key, count = FLAVOR_GPUS[flavor]
        gpu = GPUS[gpu_key]
        return Device("cuda", gpu.name, gpu.memory_bytes, count, gpu.capability)
    if flavor in CPU_FLAVORS:
        return Device("cpu", f"{flavor} CPU", CPU_FLAVORS[flavor])
    raise ParamError(f"unknown hardware flavor {flavor!r}; known: {', '.join([*CPU_FLAVORS, *FLAVOR_GPUS])}")


@dataclass(frozen=True)
class ModelShape:
    """What memory depends on: parameters (with the task's head), hidden size, layers, vocabulary;
    `lm_head` when the model computes logits over the vocabulary (a causal LM)."""

    n_params: int
    hidden: int
    layers: int
    vocab: int
    lm_head: bool = True

    @classmethod
    def from_size(cls, n_params: int, lm_head: bool = True) -> "ModelShape":
        """A typical decoder of that size (hidden size of the nearest common model, layers from
        12 x hidden^2 parameters per layer) when only the size is known."""
        size, hidden, vocab = min(_REFERENCE_SHAPES, key=lambda ref: abs(math.log(ref[0] / n_params)))
        layers = max(1, round((n_params - vocab * hidden) / (12 * hidden * hidden)))
        return cls(int(n_params), hidden, layers, vocab, lm_head)

    @property
    def embedding_params(self) -> int:
        """Input embeddings (and an untied LM head): what 4-bit loading keeps in 16 bits."""
        return min(self.n_params, self.vocab * self.hidden * (2 if self.lm_head else 1))


# (parameters, hidden size, vocabulary) of common models: GPT-2/RoBERTa, OPT-350M, TinyLlama,
# Llama-3.2-3B, Llama-2-7B, Llama-2-13B, CodeLlama-34B, Llama-2-70B.
_REFERENCE_SHAPES = ((125e6, 768, 50_257), (350e6, 1024, 50_272), (1.1e9, 2048, 32_000), (3.2e9, 3072, 128_256),
                     (6.7e9, 4096, 32_000), (13e9, 5120, 32_000), (34e9, 8192, 32_000), (70e9, 8192, 32_000))


def parse_size(text: str | int | float) -> int:
    """`7B`, `1.5b`, `125M`, `350k` or a plain number of parameters."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMbBtT]?)\s*", str(text))
        if not match:
            raise ParamError(f"model size {text!r} is not like 125M, 1.5B or 7B")
        value = float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[match.group(2).lower()]
    if value < 1:
        raise ParamError(f"model size {text!r} must be at least one parameter")
    return int(value)


def size_label(n_params: int) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n_params >= scale:
            return f"{n_params / scale:.3g}{unit}"
    return str(n_params)


def gb(n_bytes: float) -> str:
    """Bytes for people: GB (10^9) with one decimal, MB or kB below."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if n_bytes >= scale / 10:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes / 1e3:.1f} kB"


@dataclass(frozen=True)
class Request:
    """What the task asks for (from its params); None means "choose"."""

    lora: bool = False
    quantization: str = "auto"
    precision: str = "auto"
    batch_size: int = 8
    per_device: int | None = None
    accumulation: int | None = None
    checkpointing: bool | None = None
    max_length: int = 256
    optim: str | None = None

    @classmethod
    def from_params(cls, params: dict, max_length: int | None = None) -> "Request":
        """From `read_params()` output; `max_length` is the capped one when known."""
        return cls(lora=params["lora"] is not None, quantization=params["quantization"],
                   precision=params["precision"], batch_size=params["batch_size"],
                   per_device=params["per_device_train_batch_size"],
                   accumulation=params["gradient_accumulation_steps"],
                   checkpointing=params["gradient_checkpointing"],
                   max_length=max_length or params["max_length"], optim=params["optim"])


@dataclass(frozen=True)
class Plan:
    """The decisions for one run. `estimated_bytes` is the peak per device; `fits` whether it is
    within the device's budget; `notes` say why a choice was made (shown in the log and card)."""

    device: Device
    shape: ModelShape
    method: str
    precision: str
    weights: str
    per_device_batch: int
    accumulation: int
    checkpointing: bool
    max_length: int
    estimated_bytes: int
    fits: bool
    notes: tuple[str, ...] = field(default=())

    @property
    def processes(self) -> int:
        return self.device.count

    @property
    def effective_batch(self) -> int:
        return self.per_device_batch * self.accumulation * self.processes

    @property
    def launcher(self) -> str:
        if self.processes > 1:
            return f"accelerate launch (DDP, {self.processes} processes)"
        return "in process"

    @property
    def precision_text(self) -> str:
        return {"bf16": "bf16 autocast, fp32 master weights", "fp16": "fp16 autocast + loss scaling, fp32 master weights",
                "fp32": "fp32"}[self.precision]

    @property
    def method_text(self) -> str:
        return {"full": "full fine-tune", "lora": f"LoRA ({self.weights} base)", "qlora": "QLoRA (4-bit base)"}[self.method]

    def summary(self) -> str:
        """One line for the task log and the CLI."""
        if not self.fits:
            return (f"does not fit: {self.method_text} needs about {gb(self.estimated_bytes)} per device, "
                    f"{gb(self.device.budget_bytes)} usable on {self.device.describe()}")
        return (f"{self.method_text}, {self.precision_text}, batch {self.per_device_batch} x {self.accumulation} "
                f"accumulation x {self.processes} process{'es' if self.processes > 1 else ''} = {self.effective_batch}, "
                f"gradient checkpointing {'on' if self.checkpointing else 'off'}, max_length {self.max_length}, "
                f"{self.launcher}, ~{gb(self.estimated_bytes)} of {gb(self.device.budget_bytes)} per device")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["device"] = {**asdict(self.device), "description": self.device.describe()}
        out.update(processes=self.processes, effective_batch=self.effective_batch, launcher=self.launcher)
        return out


# ---------------------------------------------------------------- the memory model


def optimizer_state_bytes(optim: str | None) -> int:
    name = (optim or "adamw_torch").lower()
    return next(size for key, size in _OPTIMIZER_STATE if key in name)


def estimate_bytes(shape: ModelShape, method: str, precision: str, per_device: int, seq: int,
                   checkpointing: bool, optim: str | None = None) -> int:
    """Peak bytes per device: weights + gradients + optimizer state + activations + logits.

    - full: fp32 weights, fp32 gradients and the optimizer's state for every parameter;
    - lora: the frozen base in the autocast dtype (fp32 on CPU), and fp32 weights, gradients and
      state for the adapter (`_LORA_SHARE` of the parameters);
    - qlora: the base in 4 bits except embeddings and LM head (16-bit), adapter as for lora;
    - activations: `_ACTIVATION_ELEMENTS` per layer, token and hidden unit; with gradient
      checkpointing one hidden state per layer plus one layer's full set (the one recomputed);
    - logits (causal LM): 16-bit logits, their fp32 copy for the loss and its gradient.
    """
    elem = 2 if precision in ("bf16", "fp16") else 4
    state = optimizer_state_bytes(optim)
    if method == "full":
        static = shape.n_params * (4 + 4 + state)
    else:
        adapter = shape.n_params * _LORA_SHARE * (4 + 4 + state)
        if method == "qlora":
            base = (shape.n_params - shape.embedding_params) * _FOUR_BIT_BYTES + shape.embedding_params * 2
        else:
            base = shape.n_params * elem
        static = base + adapter
    tokens = per_device * seq
    layer = tokens * shape.hidden * _ACTIVATION_ELEMENTS * elem
    if checkpointing:
        activations = shape.layers * tokens * shape.hidden * elem + layer
    else:
        activations = shape.layers * layer
    logits = tokens * shape.vocab * (elem + 8) if shape.lm_head else 0
    return int(static + activations + logits)


# ---------------------------------------------------------------- choosing


def choose_precision(device: Device, asked: str) -> str:
    """bf16 on compute capability >= 8.0, fp16 on older GPUs, fp32 on CPU; an explicit ask is
    checked against the device (fp16 autocast needs CUDA; bf16 on a T4 is emulated, slow)."""
    bf16_ok = device.cuda and device.capability is not None and device.capability >= (8, 0)
    if asked == "auto":
        return "bf16" if bf16_ok else "fp16" if device.cuda else "fp32"
    if asked == "bf16" and device.cuda and not bf16_ok:
        cap = ".".join(map(str, device.capability or ()))
        raise ParamError(f"params.precision bf16 needs an Ampere or newer GPU (compute capability 8.0); "
                         f"this {device.name} has {cap}", hint="use precision fp16 or auto")
    if asked == "fp16" and not device.cuda:
        raise ParamError("params.precision fp16 needs a CUDA GPU; this run is on CPU", hint="use precision fp32, bf16 or auto")
    return asked


def _methods(device: Device, request: Request) -> list[str]:
    if not request.lora:
        return ["full"]
    if request.quantization == "4bit":
        if not device.cuda:
            raise ParamError("params.quantization 4bit needs a CUDA GPU (bitsandbytes); this run is on CPU",
                             hint="use quantization auto or none")
        return ["qlora"]
    if request.quantization == "none" or not device.cuda:
        return ["lora"]
    return ["lora", "qlora"]


def _batch_options(request: Request, processes: int) -> list[int]:
    if request.per_device:
        return [request.per_device]
    if request.accumulation:
        return [max(1, math.ceil(request.batch_size / (request.accumulation * processes)))]
    target = max(1, math.ceil(request.batch_size / processes))
    return sorted({target} | {2 ** i for i in range(target.bit_length()) if 2 ** i <= target}, reverse=True)


def make_plan(device: Device, shape: ModelShape, request: Request) -> Plan:
    """The plan for `shape` on `device`. Raises ParamError for a request the device cannot do
    (fp16 on CPU, bf16 on a T4, 4-bit without CUDA); a request that does not fit memory gives a
    Plan with `fits=False` (its estimate is the smallest configuration tried)."""
    precision = choose_precision(device, request.precision)
    options = _batch_options(request, device.count)
    target = max(1, math.ceil(request.batch_size / device.count))
    notes: list[str] = []
    smallest: Plan | None = None
    for method in _methods(device, request):
        weights = {"full": "float32", "qlora": "4bit"}.get(method) or {"bf16": "bfloat16", "fp16": "float16"}.get(
            precision, "float32")

        def build(pd: int, ckpt: bool) -> Plan:
            need = estimate_bytes(shape, method, precision, pd, request.max_length, ckpt, request.optim)
            accumulation = request.accumulation or max(1, math.ceil(request.batch_size / (pd * device.count)))
            return Plan(device, shape, method, precision, weights, pd, accumulation, ckpt, request.max_length,
                        need, need <= device.budget_bytes, tuple(notes))

        best = {}
        for ckpt in ([request.checkpointing] if request.checkpointing is not None else [False, True]):
            for pd in options:
                plan = build(pd, ckpt)
                if smallest is None or plan.estimated_bytes < smallest.estimated_bytes:
                    smallest = plan
                if plan.fits:
                    best[ckpt] = plan
                    break
        without, with_ = best.get(False), best.get(True)
        if without and (without.per_device_batch >= min(target, 4) or not with_
                        or with_.per_device_batch <= without.per_device_batch):
            return without
        if with_:
            if without:
                notes.append(f"gradient checkpointing: batch {with_.per_device_batch} per device instead of "
                             f"{without.per_device_batch}")
            elif request.checkpointing is None:
                notes.append("gradient checkpointing: without it not even one example per device fits")
            return replace(with_, notes=tuple(notes))
        if method == "lora":
            notes.append(f"LoRA on a {weights} base needs about {gb(build(1, True).estimated_bytes)}: "
                         f"the base is loaded in 4 bits (QLoRA)")
    return replace(smallest, notes=tuple(notes))


def search_batch_size(plan: Plan, step_fits: Callable[[int], bool]) -> Plan:
    """The plan with the largest per-device batch, from the planned one down by halves, for which
    `step_fits(batch)` (one measured forward and backward pass) is true; the accumulation grows
    so the effective batch stays. Raises `OutOfMemory` when not even 1 fits."""
    from .errors import OutOfMemory

    pd = plan.per_device_batch
    while True:
        if step_fits(pd):
            break
        if pd == 1:
            raise OutOfMemory(f"one example of {plan.max_length} tokens does not fit in {plan.device.describe()} "
                              f"with {plan.method_text}", hint=", ".join(memory_hints(plan)))
        pd = max(1, pd // 2)
    if pd == plan.per_device_batch:
        return plan
    accumulation = max(1, math.ceil(plan.effective_batch / (pd * plan.processes)))
    note = f"measured: batch {plan.per_device_batch} per device ran out of memory, using {pd}"
    return replace(plan, per_device_batch=pd, accumulation=accumulation, notes=(*plan.notes, note))


def memory_hints(plan: Plan, flavors: Iterable[str] | None = None) -> list[str]:
    """What would make `plan` fit: smaller batch or max_length, LoRA, 4 bits, a bigger flavor."""
    hints = []
    weights_only = estimate_bytes(plan.shape, plan.method, plan.precision, 1, 1, True)
    if weights_only <= plan.device.budget_bytes:  # the activations are what does not fit
        if plan.per_device_batch > 1:
            hints.append("a smaller per_device_train_batch_size")
        if plan.max_length > 128:
            hints.append("a smaller max_length")
        if not plan.checkpointing:
            hints.append("gradient_checkpointing true")
    if plan.method == "full":
        hints.append('"lora": true')
    if plan.method == "lora" and plan.device.cuda:
        hints.append('"quantization": "4bit"')
    bigger = smallest_flavor(plan.shape, Request(lora=plan.method != "full", max_length=plan.max_length,
                                                 quantization="4bit" if plan.method == "qlora" else "auto"),
                             flavors, larger_than=plan.device)
    if bigger:
        hints.append(f"a bigger flavor ({bigger})")
    return hints


def smallest_flavor(shape: ModelShape, request: Request, flavors: Iterable[str] | None = None,
                    larger_than: Device | None = None) -> str | None:
    """The GPU flavor with the least total memory on which `request` fits (None if none does)."""
    names = list(flavors or FLAVOR_GPUS)
    devices = sorted(((device_for_flavor(n), n) for n in names if n in FLAVOR_GPUS),
                     key=lambda d: (d[0].memory_bytes * d[0].count, d[0].count))
    for device, name in devices:
        if larger_than is not None and larger_than.cuda and device.memory_bytes <= larger_than.memory_bytes:
            continue
        try:
            if make_plan(device, shape, request).fits:
                return name
        except ParamError:
            continue
    return None


# ---------------------------------------------------------------- tables for the README and the CLI

SIZE_GRID = (125e6, 350e6, 1e9, 1.5e9, 3e9, 7e9, 8e9, 13e9, 14e9, 32e9, 70e9)
TABLE_FLAVORS = ("cpu-basic", "t4-small", "t4-medium", "l4x1", "a10g-small", "a10g-large", "l40sx1", "a100-large",
                 "h200", "rtx-pro-6000", "l4x4", "a10g-largex2", "a10g-largex4", "l40sx4", "a100x4")
PLAN_FLAVORS = ("t4-small", "a10g-small", "l40sx1", "a100-large", "h200", "l4x4")
PLAN_SIZES = ("125M", "7B")


def largest_fitting(device: Device, request: Request, lm_head: bool = True) -> int | None:
    fitting = None
    for size in SIZE_GRID:
        try:
            plan = make_plan(device, ModelShape.from_size(int(size), lm_head), request)
        except ParamError:
            return None
        if not plan.fits or (request.quantization == "4bit" and plan.method != "qlora"):
            break
        fitting = int(size)
    return fitting


def flavor_table() -> str:
    """Markdown: the largest causal LM each flavor can fine-tune per method (batch 8, 256 tokens)."""
    rows = ["| flavor | device | precision | full fine-tune | LoRA (16-bit base) | QLoRA (4-bit base) | launcher |",
            "|---|---|---|---|---|---|---|"]
    for flavor in TABLE_FLAVORS:
        device = device_for_flavor(flavor)
        precision = choose_precision(device, "auto")
        cells = []
        for request in (Request(), Request(lora=True, quantization="none"), Request(lora=True, quantization="4bit")):
            size = largest_fitting(device, request)
            cells.append(f"up to {size_label(size)}" if size else "-")
        plan = make_plan(device, ModelShape.from_size(int(125e6)), Request())
        rows.append(f"| {flavor} | {device.describe()} | {precision} | {' | '.join(cells)} | {plan.launcher} |")
    return "\n".join(rows)


def plan_table(flavors: Iterable[str] = PLAN_FLAVORS, sizes: Iterable[str] = PLAN_SIZES) -> str:
    """Markdown: the plan for each flavor and model size, full fine-tune and `"lora": true`."""
    rows = ["| flavor | model | params | plan |", "|---|---|---|---|"]
    for flavor in flavors:
        device = device_for_flavor(flavor)
        for size in sizes:
            shape = ModelShape.from_size(parse_size(size))
            for label, request in (("full", Request()), ('"lora": true', Request(lora=True))):
                rows.append(f"| {flavor} | {size} | {label} | {make_plan(device, shape, request).summary()} |")
    return "\n".join(rows)
