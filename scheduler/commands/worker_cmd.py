"""`space-scheduler worker`: run the queue's tasks on this Space, a Space given by id, or this machine."""

from __future__ import annotations

import argparse
import os
import sys
import time

from ..errors import SchedulerError, UserError
from .common import add_queue_options, open_queue


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "worker",
        help="run tasks: switch the Space to each task's hardware, train, record, switch back",
        description="Inside a Space (SPACE_ID is set) the worker drives that Space's own hardware. "
                    "With --space it drives the given Space from here; with --hardware local it runs "
                    "every task on this machine and never changes hardware.",
    )
    add_queue_options(p)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--space", default=None, help="OWNER/NAME of the Space whose hardware to drive (default: $SPACE_ID)")
    where.add_argument("--hardware", choices=["local"], help="local: run every task here, no hardware switching")
    p.add_argument("--callback", default=None,
                   help="module:function or path/to/file.py:function (default: $SCHEDULER_CALLBACK, then ./train.py:train)")
    p.add_argument("--work-dir", default=None, help="logs, progress and outputs (default: $SCHEDULER_WORK_DIR, /data/space-scheduler, or ~/.cache)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="decide and act once, then exit")
    mode.add_argument("--until-idle", action="store_true", help="exit once nothing is left to run and the hardware is idle")
    p.add_argument("--lease", type=float, default=600.0, help="task lease in seconds (heartbeat every third of it)")
    p.add_argument("--poll", type=float, default=15.0, help="seconds between queue reads when idle")
    p.add_argument("--sleep-time", type=int, default=3600, help="sleep time requested with paid hardware (safety net)")
    p.add_argument("--max-gpu-wait", type=float, default=180.0,
                   help="keep paid hardware up this long for a task due soon, else give it back")
    p.add_argument("--request-deadline", type=float, default=900.0,
                   help="give up a hardware request not fulfilled after this many seconds")
    p.add_argument("--retry-delay", type=float, default=None, help="seconds before a failed task is retried (default: backoff)")
    p.add_argument("--stop-grace", type=float, default=10.0, help="seconds a stopped callback gets before it is killed")
    p.add_argument("--max-timeout", type=float, default=6 * 3600.0, help="cap on every task's timeout_s")
    p.add_argument("--executor", choices=["space", "jobs"], default=os.environ.get("SCHEDULER_EXECUTOR") or "space",
                   help="space: switch this Space's hardware (default); jobs: stay on cpu-basic and run each task "
                        "as a Hugging Face Job of its flavor ($SCHEDULER_EXECUTOR)")
    p.add_argument("--max-concurrent-jobs", type=int, default=int(os.environ.get("SCHEDULER_MAX_CONCURRENT_JOBS") or 3),
                   help="with --executor jobs: Jobs running at once (default 3)")
    p.add_argument("--crash-loop-boots", type=int, default=3, help="boots on paid hardware without progress before giving up")
    p.set_defaults(handler=cmd_worker)


def _token(args) -> str | None:
    if args.token:
        return args.token
    from huggingface_hub import get_token

    return os.environ.get("HF_TOKEN") or get_token()


def build_worker(args):
    from ..callbacks import resolve_spec
    from ..decide import Policy
    from ..hardware import LocalController, SpaceController
    from ..worker import WorkerConfig

    args.token = _token(args)
    # Read now, not at import: the client fixes its default endpoint when first imported.
    args.endpoint = args.endpoint or os.environ.get("HF_ENDPOINT") or None
    queue = open_queue(args)
    if args.hardware == "local":
        controller = LocalController()
    else:
        space = args.space or os.environ.get("SPACE_ID")
        if not space:
            raise UserError("which hardware? pass --space OWNER/NAME (or run inside a Space), or --hardware local")
        controller = SpaceController(space, token=args.token, endpoint=args.endpoint)
    config = WorkerConfig(
        lease_s=args.lease, poll_s=args.poll, sleep_time_s=args.sleep_time, retry_delay_s=args.retry_delay,
        stop_grace_s=args.stop_grace, max_timeout_s=args.max_timeout, crash_loop_boots=args.crash_loop_boots,
        policy=Policy(max_gpu_wait_s=args.max_gpu_wait, request_deadline_s=args.request_deadline),
    )
    from .. import notify
    from ..executors import JobsConfig, make_worker

    space_id = None if args.hardware == "local" else (args.space or os.environ.get("SPACE_ID"))
    # $SCHEDULER_NOTIFY=model|space opens a discussion when a task ends; a failed notice never fails the task.
    from huggingface_hub import HfApi

    if args.max_concurrent_jobs < 1:
        raise UserError(f"--max-concurrent-jobs must be at least 1, got {args.max_concurrent_jobs}")
    notifier = notify.from_env(HfApi(endpoint=args.endpoint, token=args.token), space_id)
    return make_worker(queue, controller, resolve_spec(args.callback), executor=args.executor,
                       jobs=JobsConfig(max_concurrent_jobs=args.max_concurrent_jobs),
                       token=args.token, endpoint=args.endpoint, work_dir=args.work_dir, config=config, say=_say,
                       on_finish=notify.safe(notifier, _say) if notifier else None)


def _say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} worker: {message}", flush=True)


def cmd_worker(args) -> int:
    from huggingface_hub.errors import HfHubHTTPError

    from ..hub import describe

    worker = build_worker(args)
    worker.install_signal_handlers()
    _say(f"{worker.id} on {worker.controller!r}, queue {worker.queue.store.describe()}")
    try:
        worker.run(once=args.once, until_idle=args.until_idle)
    except HfHubHTTPError as exc:
        raise SchedulerError(f"the worker stopped: {describe(exc)}") from None
    status = worker.status()
    _say(f"stopped ({status.get('stop_reason') or status.get('reason')}); "
         f"{status['done']} done, {status['failed']} failed")
    return 0


if __name__ == "__main__":  # pragma: no cover
    from ..cli import main

    sys.exit(main(["worker", *sys.argv[1:]]))
