"""`space-scheduler recipe`: what the transformers fine-tuning recipe will do on a flavor.

    space-scheduler recipe plan --model-size 7B --hardware t4-small      # full fine-tune and LoRA
    space-scheduler recipe plan --model-size 125M --hardware l4x4 --hardware a100-large --lora
    space-scheduler recipe table                                          # the README's tables
    space-scheduler recipe params                                         # every task param

Pure: nothing is downloaded and no GPU is needed; the rules are those of `scheduler.recipes.plan`,
which the recipe applies to the device it finds.
"""

from __future__ import annotations

import json


def register(subparsers) -> None:
    parser = subparsers.add_parser("recipe", help="what the fine-tuning recipe does on each flavor",
                                   description="Plans of the transformers fine-tuning recipe "
                                               "(scheduler.recipes.finetune): precision, memory, launcher.")
    verbs = parser.add_subparsers(dest="recipe_verb", metavar="VERB")
    verbs.required = True

    plan = verbs.add_parser("plan", help="precision, method, batch and launcher for a model size on a flavor")
    plan.add_argument("--model-size", action="append", required=True, metavar="SIZE",
                      help="parameters, like 125M, 1.5B or 7B (repeatable)")
    plan.add_argument("--hardware", action="append", required=True, metavar="FLAVOR",
                      help="a Space or Job flavor, like t4-small, a10g-small, l4x4 (repeatable)")
    method = plan.add_mutually_exclusive_group()
    method.add_argument("--lora", action="store_true", help='only the plan with "lora": true')
    method.add_argument("--full", action="store_true", help="only the full fine-tune plan")
    plan.add_argument("--quantization", choices=("auto", "4bit", "none"), default="auto")
    plan.add_argument("--precision", choices=("auto", "bf16", "fp16", "fp32"), default="auto")
    plan.add_argument("--batch-size", type=int, default=8, help="effective batch (default 8)")
    plan.add_argument("--per-device-batch-size", type=int, default=None)
    plan.add_argument("--max-length", type=int, default=256, help="tokens per example (default 256)")
    plan.add_argument("--gradient-checkpointing", choices=("auto", "on", "off"), default="auto")
    plan.add_argument("--classifier", action="store_true", help="a sequence classifier (no logits over the vocabulary)")
    plan.add_argument("--json", action="store_true", help="one JSON object per plan")
    plan.set_defaults(handler=plan_handler)

    table = verbs.add_parser("table", help="the README's tables: what each flavor can fine-tune, and example plans")
    table.set_defaults(handler=table_handler)

    params = verbs.add_parser("params", help="every task param the recipe knows, with its default")
    params.set_defaults(handler=params_handler)


def plan_handler(args) -> int:
    from ..recipes.plan import ModelShape, Request, device_for_flavor, make_plan, memory_hints, parse_size

    checkpointing = {"auto": None, "on": True, "off": False}[args.gradient_checkpointing]
    methods = [("full", False), ('"lora": true', True)]
    if args.lora or args.full:
        methods = [m for m in methods if m[1] == args.lora]
    for flavor in args.hardware:
        device = device_for_flavor(flavor)
        for size in args.model_size:
            shape = ModelShape.from_size(parse_size(size), lm_head=not args.classifier)
            if not args.json:
                print(f"{flavor}, {size} model on {device.describe()}:")
            for label, lora in methods:
                request = Request(lora=lora, quantization=args.quantization, precision=args.precision,
                                  batch_size=args.batch_size, per_device=args.per_device_batch_size,
                                  checkpointing=checkpointing, max_length=args.max_length)
                plan = make_plan(device, shape, request)
                if args.json:
                    print(json.dumps({"flavor": flavor, "model_size": size, "params": label, **plan.to_dict(),
                                      "summary": plan.summary()}))
                    continue
                print(f"  {label}: {plan.summary()}")
                for note in plan.notes:
                    print(f"    {note}")
                if not plan.fits:
                    print(f"    try {', '.join(memory_hints(plan))}")
    return 0


def table_handler(_args) -> int:
    from ..recipes.plan import flavor_table, plan_table

    print(flavor_table())
    print()
    print(plan_table())
    return 0


def params_handler(_args) -> int:
    from ..recipes.params import describe

    for name, default, doc in describe():
        print(f"{name} (default {default}): {doc}")
    return 0
