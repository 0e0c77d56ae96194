"""`space-scheduler worker`: run the queue's tasks on this Space, a Space given by id, or this machine.

Flags fill `settings.WorkerSettings`; a flag left out falls back to its `SCHEDULER_*` variable, then
to the default (the Space's variables configure a deployed worker the same way)."""

from __future__ import annotations

import argparse
import os
import sys
import time

from ..errors import SchedulerError

# flag -> (WorkerSettings field, type, help)
_FLAGS: dict[str, tuple[str, type, str]] = {
    "--lease": ("lease_s", float, "lease in seconds (default: a worker inside its own Space covers each task's "
                                  "timeout and makes no heartbeat commits; others renew every --heartbeat)"),
    "--heartbeat": ("heartbeat_s", float, "seconds between lease renewals, one commit each (default 600; 0: none)"),
    "--poll": ("poll_s", float, "seconds between queue reads when idle (default 15)"),
    "--watch": ("watch_s", float, "seconds between checks for a cancel of a running task (default 3)"),
    "--sleep-time": ("sleep_time_s", int, "sleep time requested with paid hardware, a safety net (default 3600)"),
    "--max-gpu-wait": ("max_gpu_wait_s", float, "keep paid hardware up this long for a task due soon (default 180)"),
    "--request-deadline": ("request_deadline_s", float, "give up a hardware request not fulfilled after this "
                                                        "many seconds (default 900)"),
    "--retry-delay": ("retry_delay_s", float, "seconds before a failed task is retried (default: backoff)"),
    "--stop-grace": ("stop_grace_s", float, "seconds a stopped callback gets before it is killed (default 5)"),
    "--max-timeout": ("max_timeout_s", float, "cap on every task's timeout_s (default 21600)"),
    "--crash-loop-boots": ("crash_loop_boots", int, "boots on paid hardware without progress before giving up "
                                                    "(default 3)"),
    "--takeover-grace": ("takeover_grace_s", float, "after a restart of its Space, seconds before a predecessor's "
                                                    "runs are taken back (default 90)"),
    "--max-concurrent-jobs": ("max_concurrent_jobs", int, "with --executor jobs: Jobs running at once (default 3)"),
    "--jobs-image": ("jobs_image", str, "with --executor jobs: the image (default: the Space's own)"),
    "--jobs-namespace": ("jobs_namespace", str, "with --executor jobs: the namespace (default: the Space's owner)"),
    "--jobs-poll": ("jobs_poll_s", float, "with --executor jobs: seconds between inspections of a Job (default 10)"),
}


def register(sub: argparse._SubParsersAction) -> None:
    from .common import add_queue_options

    p = sub.add_parser(
        "worker",
        help="run tasks: switch the Space to each task's hardware, train, record, switch back",
        description="Inside a Space (SPACE_ID is set) the worker drives that Space's own hardware. "
                    "With --space it drives the given Space from here; with --executor local (or "
                    "--hardware local) it runs every task on this machine and never changes hardware. "
                    "Every flag also reads its SCHEDULER_* variable (e.g. SCHEDULER_POLL_S).",
    )
    add_queue_options(p)
    p.add_argument("--space", default=None, help="OWNER/NAME of the Space whose hardware to drive (default: $SPACE_ID)")
    p.add_argument("--hardware", choices=["local"], help="local: the same as --executor local")
    p.add_argument("--executor", choices=["space", "local", "jobs"], default=None,
                   help="space: switch the Space's hardware per task (default); local: run here; jobs: one "
                        "Hugging Face Job per task, the Space stays on cpu-basic ($SCHEDULER_EXECUTOR)")
    p.add_argument("--callback", default=None,
                   help="module:function or path/to/file.py:function (default: $SCHEDULER_CALLBACK, then ./train.py:train)")
    p.add_argument("--work-dir", default=None, help="logs, progress, outputs and the outcome journal "
                                                    "(default: $SCHEDULER_WORK_DIR, /data/space-scheduler, or ~/.cache)")
    p.add_argument("--notify", choices=["model", "space"], default=None,
                   help="open a discussion on the output model (or the Space) when a task ends ($SCHEDULER_NOTIFY)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="decide and act once, then exit")
    mode.add_argument("--until-idle", action="store_true",
                      help="exit once nothing is left to run and the hardware is idle (exit 1 if a task failed)")
    for flag, (field, kind, text) in _FLAGS.items():
        p.add_argument(flag, dest=field, type=kind, default=None, help=text)
    p.set_defaults(handler=cmd_worker)


def settings_from_args(args):
    """WorkerSettings from parsed flags, with `SCHEDULER_*` variables for what the flags leave out."""
    from huggingface_hub import get_token

    from ..settings import WorkerSettings
    from .common import resolve_queue

    executor = "local" if args.hardware == "local" else args.executor
    overrides = {field: getattr(args, field) for field, _, _ in _FLAGS.values()}
    # As every other verb: OWNER/NAME is the Hub dataset, a folder is written ./NAME.
    overrides.update(queue=resolve_queue(args.queue) if args.queue else None, callback=args.callback,
                     executor=executor, space=args.space,
                     work_dir=args.work_dir, endpoint=args.endpoint or os.environ.get("HF_ENDPOINT") or None,
                     notify=args.notify,
                     token=args.token or os.environ.get("HF_TOKEN") or get_token())
    return WorkerSettings.from_env(**overrides)


def build_worker(args):
    from ..settings import build_worker as build

    return build(settings_from_args(args), say=_say)


def _say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} worker: {message}", flush=True)


def cmd_worker(args) -> int:
    from huggingface_hub.errors import HfHubHTTPError

    from ..hub import describe

    worker = build_worker(args)
    worker.install_signal_handlers()
    _say(f"{worker.id} ({worker.executor.name} executor) on {worker.controller!r}, "
         f"queue {worker.queue.store.describe()}")
    try:
        worker.run(once=args.once, until_idle=args.until_idle)
    except HfHubHTTPError as exc:
        raise SchedulerError(f"the worker stopped: {describe(exc)}") from None
    status = worker.status()
    _say(f"stopped ({status.get('stop_reason') or status.get('reason')}); "
         f"{status['done']} task(s) done, {status['failed']} failed")
    return 1 if args.until_idle and status["failed"] else 0


if __name__ == "__main__":  # pragma: no cover
    from ..cli import main

    sys.exit(main(["worker", *sys.argv[1:]]))
