"""Options shared by verbs: where the queue is and which token to use."""

from __future__ import annotations

import argparse
import os

from ..errors import UserError


def add_queue_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--queue",
        default=os.environ.get("SCHEDULER_QUEUE"),
        help="hf://datasets/OWNER/NAME[/path/tasks.csv] or a folder (default: $SCHEDULER_QUEUE)",
    )
    add_token_option(parser)


def add_token_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token",
        default=None,
        help="Hub token (default: $HF_TOKEN, then the huggingface_hub login). Never printed.",
    )
    parser.add_argument("--endpoint", default=None, help="Hub endpoint (default: $HF_ENDPOINT)")


def open_queue(args: argparse.Namespace):
    from .. import open_queue as open_with_waker
    from ..redact import register_secret

    if not args.queue:
        raise UserError("no queue given: pass --queue hf://datasets/OWNER/NAME (or a folder), or set SCHEDULER_QUEUE")
    register_secret(args.token)
    return open_with_waker(args.queue, token=args.token, endpoint=args.endpoint)
