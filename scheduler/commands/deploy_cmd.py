"""`space-scheduler deploy OWNER/SPACE --queue OWNER/DATASET`: create or update the scheduler Space."""

from __future__ import annotations

import argparse
import os

from ..errors import UserError
from .common import add_token_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deploy",
        help="create or update the scheduler Space and its queue dataset (safe to re-run)",
        description="Creates the queue dataset (private) unless it exists, creates or duplicates the Space, "
                    "uploads the app with the scheduler package, sets the HF_TOKEN secret from your login "
                    "and the SCHEDULER_* variables, and registers a Hub webhook on the queue whose secret the "
                    "Space holds. Re-running updates code and settings; the queue's "
                    "tasks.csv is never rewritten.",
    )
    p.add_argument("space_id", metavar="OWNER/SPACE")
    p.add_argument("--queue", required=True, metavar="OWNER/DATASET",
                   help="the queue dataset (also accepted as hf://datasets/OWNER/DATASET)")
    p.add_argument("--from", dest="from_space", default=None, metavar="TEMPLATE_SPACE",
                   help="duplicate this Space instead of creating an empty one")
    p.add_argument("--callback", default=None, help="module:function the Space runs for each task")
    p.add_argument("--allowed-users", default="", metavar="A,B", help="users allowed to submit from the app")
    visibility = p.add_mutually_exclusive_group()
    visibility.add_argument("--public", dest="public", action="store_true", default=None,
                            help="make a new Space public (default: public only when --allowed-users names people "
                                 "outside its owner, who could not reach a private Space)")
    visibility.add_argument("--private", dest="public", action="store_false", help="make a new Space private")
    p.add_argument("--volume", action="append", default=[], metavar="hf://[TYPE/]SOURCE[/PATH]:/MOUNT[:ro]")
    p.add_argument("--sleep-time", type=int, default=None,
                   help="the sleep time the worker requests paid hardware with, in seconds (a safety net; the idle "
                        "cpu-basic Space's own sleep time cannot be set on the Hub)")
    p.add_argument("--executor", choices=["space", "jobs"], default=None,
                   help="space: the Space switches to each task's GPU (default); jobs: one Hugging Face Job per task")
    p.add_argument("--rotate-secrets", action="store_true",
                   help="replace the HF_TOKEN and webhook secrets even if set (each secret write restarts the Space)")
    p.add_argument("--force", action="store_true",
                   help="restart the Space for new code or settings even while it runs a task (default: wait)")
    p.add_argument("--no-webhook", action="store_true",
                   help="do not register the Hub webhook that wakes the Space on every commit to the queue "
                        "(the Space then sees new tasks at its next poll)")
    p.add_argument("--webhook-url", default=None, metavar="URL",
                   help="where the webhook POSTs (default: https://OWNER-SPACE.hf.space/webhooks/queue)")
    p.add_argument("--app-dir", default=None, help="the app folder to upload (default: the project's space_app/)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and write nothing")
    add_token_option(p)
    p.set_defaults(handler=cmd_deploy)


def _queue_repo(value: str) -> str:
    prefix = "hf://datasets/"
    if value.startswith(prefix):
        value = value[len(prefix):]
    elif value.startswith("hf://"):
        raise UserError("the queue must be a dataset: hf://datasets/OWNER/NAME or OWNER/NAME")
    return value.strip("/")


def cmd_deploy(args) -> int:
    from pathlib import Path

    from ..deploy import APP_DIR, DeployConfig, deploy
    from .space_cmds import _volumes

    config = DeployConfig(
        space_id=args.space_id, queue_repo=_queue_repo(args.queue), from_space=args.from_space,
        callback=args.callback, allowed_users=[u.strip() for u in args.allowed_users.split(",") if u.strip()],
        public=args.public, volumes=_volumes(args.volume) or [], sleep_time=args.sleep_time,
        executor=args.executor, rotate_secrets=args.rotate_secrets, force=args.force,
        app_dir=Path(args.app_dir) if args.app_dir else APP_DIR, token=args.token,
        webhook=not args.no_webhook, webhook_url=args.webhook_url,
        # Read now, not at import: the client fixes its default endpoint when first imported.
        endpoint=args.endpoint or os.environ.get("HF_ENDPOINT") or None,
    )
    deploy(config, dry_run=args.dry_run)
    return 0
