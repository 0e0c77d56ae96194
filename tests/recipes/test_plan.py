"""The plan (precision, method, memory, launcher) as a pure function of the device, the model's
shape and the task's params, tested as tables; the README's tables and the CLI come from it."""

from __future__ import annotations

import math

import pytest
from huggingface_hub import JobHardware, SpaceHardware

from scheduler.cli import main
from scheduler.recipes.errors import OutOfMemory, ParamError
from scheduler.recipes.plan import (CPU_FLAVORS, FLAVOR_GPUS, Device, ModelShape, Request, device_for_flavor,
                                    estimate_bytes, flavor_table, make_plan, memory_hints, parse_size, plan_table,
                                    search_batch_size, smallest_flavor)
from tests.support import ROOT

SMALL, BIG = ModelShape.from_size(parse_size("125M")), ModelShape.from_size(parse_size("7B"))
FULL, LORA = Request(), Request(lora=True)

# flavor, shape, request -> method, precision, weights, per-device batch, accumulation, processes, checkpointing
PLANS = [
    ("t4-small", SMALL, FULL, ("full", "fp16", "float32", 8, 1, 1, False)),
    ("t4-small", SMALL, LORA, ("lora", "fp16", "float16", 8, 1, 1, False)),
    ("t4-small", BIG, LORA, ("qlora", "fp16", "4bit", 4, 2, 1, False)),
    ("a10g-small", SMALL, FULL, ("full", "bf16", "float32", 8, 1, 1, False)),
    ("a10g-small", BIG, LORA, ("lora", "bf16", "bfloat16", 4, 2, 1, False)),
    ("l40sx1", BIG, LORA, ("lora", "bf16", "bfloat16", 8, 1, 1, False)),
    ("a100-large", BIG, LORA, ("lora", "bf16", "bfloat16", 8, 1, 1, False)),
    ("h200", BIG, FULL, ("full", "bf16", "float32", 8, 1, 1, False)),
    ("l4x4", SMALL, FULL, ("full", "bf16", "float32", 2, 1, 4, False)),
    ("l4x4", BIG, LORA, ("lora", "bf16", "bfloat16", 2, 1, 4, False)),
    ("cpu-basic", SMALL, FULL, ("full", "fp32", "float32", 8, 1, 1, False)),
    ("cpu-basic", SMALL, LORA, ("lora", "fp32", "float32", 8, 1, 1, False)),
    # a 7B LoRA on a 24 GB card at 1,024 tokens: 1 example per device without recomputing activations, 8 with
    ("a10g-small", BIG, Request(lora=True, max_length=1024), ("lora", "bf16", "bfloat16", 8, 1, 1, True)),
    # 8 per device fit without: accumulation rather than recomputation
    ("t4-small", SMALL, Request(batch_size=32, max_length=1024), ("full", "fp16", "float32", 8, 4, 1, False)),
]


@pytest.mark.parametrize("flavor,shape,request_,expected", PLANS,
                         ids=[f"{f}-{s.n_params // 10**6}M-{'lora' if r.lora else 'full'}-{r.max_length}"
                              for f, s, r, _ in PLANS])
def test_the_plan_for_each_flavor_model_and_method(flavor, shape, request_, expected):
    plan = make_plan(device_for_flavor(flavor), shape, request_)
    assert plan.fits and plan.estimated_bytes <= plan.device.budget_bytes
    got = (plan.method, plan.precision, plan.weights, plan.per_device_batch, plan.accumulation, plan.processes,
           plan.checkpointing)
    assert got == expected
    assert plan.effective_batch >= request_.batch_size


@pytest.mark.parametrize("flavor", ["t4-small", "a10g-small", "l40sx1", "a100-large", "l4x4"])
def test_a_full_7b_fine_tune_fits_no_single_card_below_h200_and_says_what_would(flavor):
    plan = make_plan(device_for_flavor(flavor), BIG, FULL)
    assert not plan.fits and "does not fit" in plan.summary()
    hints = memory_hints(plan)
    assert '"lora": true' in hints and "a bigger flavor (h200)" in hints
    assert "a smaller max_length" not in hints  # 112 GB of weights and optimizer state, not activations


def test_precision_follows_the_gpu_generation_and_refuses_what_the_device_cannot_do():
    capabilities = {"t4-small": "fp16", "a10g-small": "bf16", "l4x1": "bf16", "l40sx1": "bf16", "a100-large": "bf16",
                    "h200": "bf16", "rtx-pro-6000": "bf16", "cpu-basic": "fp32", "zero-a10g": "fp32"}
    for flavor, precision in capabilities.items():
        assert make_plan(device_for_flavor(flavor), SMALL, FULL).precision == precision, flavor
    with pytest.raises(ParamError, match="params.precision bf16 needs an Ampere or newer GPU.*7.5"):
        make_plan(device_for_flavor("t4-small"), SMALL, Request(precision="bf16"))
    with pytest.raises(ParamError, match="params.precision fp16 needs a CUDA GPU"):
        make_plan(device_for_flavor("cpu-basic"), SMALL, Request(precision="fp16"))
    with pytest.raises(ParamError, match="params.quantization 4bit needs a CUDA GPU"):
        make_plan(device_for_flavor("cpu-basic"), SMALL, Request(lora=True, quantization="4bit"))
    assert make_plan(device_for_flavor("cpu-basic"), SMALL, Request(precision="bf16")).precision == "bf16"
    assert make_plan(device_for_flavor("a100-large"), SMALL, Request(precision="fp32")).precision == "fp32"


def test_asked_batch_accumulation_and_checkpointing_are_honoured():
    device = device_for_flavor("a100-large")
    plan = make_plan(device, SMALL, Request(per_device=2, batch_size=8))
    assert (plan.per_device_batch, plan.accumulation, plan.effective_batch) == (2, 4, 8)
    plan = make_plan(device, SMALL, Request(accumulation=4, batch_size=16))
    assert (plan.per_device_batch, plan.accumulation) == (4, 4)
    assert make_plan(device, SMALL, Request(checkpointing=True)).checkpointing is True
    forced = make_plan(device_for_flavor("t4-small"), BIG, Request(lora=True, quantization="none"))
    assert forced.method == "lora" and not forced.fits  # asked for no 4 bits: refused, not quantized


def test_memory_terms_follow_the_method_precision_and_checkpointing():
    full = estimate_bytes(BIG, "full", "bf16", 1, 256, True)
    lora = estimate_bytes(BIG, "lora", "bf16", 1, 256, True)
    qlora = estimate_bytes(BIG, "qlora", "bf16", 1, 256, True)
    assert full > 16 * BIG.n_params > lora > 2 * BIG.n_params > qlora
    assert estimate_bytes(BIG, "full", "bf16", 1, 256, True, optim="adamw_bnb_8bit") < full
    without = estimate_bytes(SMALL, "full", "fp16", 8, 512, False)
    assert estimate_bytes(SMALL, "full", "fp16", 8, 512, True) < without < estimate_bytes(SMALL, "full", "fp32", 8, 512, False)


def test_a_measured_step_that_runs_out_of_memory_halves_the_batch_and_keeps_the_effective_batch():
    plan = make_plan(device_for_flavor("a10g-small"), SMALL, Request(batch_size=16))
    assert (plan.per_device_batch, plan.accumulation) == (16, 1)
    tried = []
    smaller = search_batch_size(plan, lambda batch: tried.append(batch) or batch <= 4)
    assert tried == [16, 8, 4]
    assert (smaller.per_device_batch, smaller.accumulation, smaller.effective_batch) == (4, 4, 16)
    assert "measured" in smaller.notes[-1]
    assert search_batch_size(plan, lambda batch: True) is plan
    with pytest.raises(OutOfMemory, match="one example of 256 tokens does not fit") as caught:
        search_batch_size(plan, lambda batch: False)
    assert "a smaller max_length" in caught.value.hint


def test_the_smallest_flavor_that_fits_is_suggested():
    assert smallest_flavor(BIG, LORA) == "t4-small"  # QLoRA
    assert smallest_flavor(BIG, Request(lora=True, quantization="none")) == "a10g-small"
    assert smallest_flavor(BIG, FULL) == "h200"
    assert smallest_flavor(ModelShape.from_size(parse_size("70B")), FULL) is None


def test_every_hub_flavor_has_a_device():
    for flavor in {h.value for h in SpaceHardware} | {h.value for h in JobHardware}:
        assert flavor in FLAVOR_GPUS or flavor in CPU_FLAVORS, flavor
        device_for_flavor(flavor)
    assert device_for_flavor("l4x4") == Device("cuda", "NVIDIA L4", 23_034 * 2 ** 20, 4, (8, 9))
    assert not device_for_flavor("zero-a10g").cuda  # ZeroGPU lends its GPU to @spaces.GPU functions only
    with pytest.raises(ParamError, match="unknown hardware flavor 'v100'"):
        device_for_flavor("v100")


def test_model_sizes_parse_and_get_typical_shapes():
    assert [parse_size(s) for s in ("125M", "1.5B", "7b", "350k", 42)] == [125_000_000, 1_500_000_000,
                                                                           7_000_000_000, 350_000, 42]
    with pytest.raises(ParamError, match="like 125M"):
        parse_size("big")
    assert (BIG.hidden, BIG.layers) == (4096, 34) and (SMALL.hidden, SMALL.layers) == (768, 12)
    assert math.isclose(12 * BIG.hidden ** 2 * BIG.layers + BIG.vocab * BIG.hidden, BIG.n_params, rel_tol=0.02)


def test_the_readme_tables_are_the_plans(capsys):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert flavor_table() in readme and plan_table() in readme, "README drifted: paste `space-scheduler recipe table`"
    assert main(["recipe", "plan", "--model-size", "7B", "--model-size", "125M", "--hardware", "t4-small",
                 "--hardware", "a10g-small", "--hardware", "l40sx1", "--hardware", "a100-large", "--hardware", "h200",
                 "--hardware", "l4x4"]) == 0
    printed = capsys.readouterr().out
    for row in plan_table().splitlines()[2:]:
        flavor, size, label, summary = row.strip("| ").split(" | ")
        assert f"  {label}: {summary}" in printed, (flavor, size, label)
    assert "t4-small, 7B model on Tesla T4 (16.1 GB, compute 7.5):" in printed


def test_the_cli_refuses_what_the_device_cannot_do(capsys):
    assert main(["recipe", "plan", "--model-size", "7B", "--hardware", "t4-small", "--precision", "bf16"]) == 2
    assert "params.precision bf16 needs an Ampere" in capsys.readouterr().err
    assert main(["recipe", "plan", "--model-size", "7B", "--hardware", "t4-small", "--lora", "--json"]) == 0
    assert '"method": "qlora"' in capsys.readouterr().out
