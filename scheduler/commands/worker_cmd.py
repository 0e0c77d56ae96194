"""`space-scheduler worker`: run the queue's tasks on this Space, a Space given by id, or this machine.

Flags fill `settings.WorkerSettings`; a flag left out falls back to its `SCHEDULER_*` variable, then
to the default (the Space's variables configure a deployed worker the same way)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
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
    from tqdm import tqdm

    # Through tqdm, so that a line never lands in the middle of a progress bar on a terminal.
    tqdm.write(f"{time.strftime('%H:%M:%S')} worker: {message}", file=sys.stdout)
    sys.stdout.flush()


class RunProgress:
    """The running tasks' progress while `space-scheduler worker` runs, from the progress the
    callbacks report (`ctx.progress`): a tqdm bar per task on a terminal; elsewhere (logs, pipes) a
    plain line each time a task passes another tenth. Reads the worker's status every `every_s`
    seconds in a daemon thread; messages are redacted."""

    def __init__(self, worker, stream=None, every_s: float = 0.5):
        self.worker, self.every_s = worker, every_s
        self.stream = stream or sys.stderr
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bars: dict = {}
        self._tenths: dict[str, int] = {}
        self._stop = threading.Event()

    def start(self) -> "RunProgress":
        threading.Thread(target=self._loop, daemon=True, name="space-scheduler-progress").start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.tick()
            except Exception:  # a progress display must never take the worker down
                pass

    def tick(self) -> None:
        from ..callbacks import read_progress
        from ..redact import redact

        running = [run["task"] for run in self.worker.status().get("runs") or []]
        for task_id in running:
            progress = read_progress(task_id, self.worker.work_dir) or {}
            fraction = max(0.0, min(1.0, float(progress.get("fraction") or 0.0)))
            message = redact(str(progress.get("message") or ""))
            if self.terminal:
                self._bar(task_id, fraction, message)
            elif int(fraction * 10) > self._tenths.get(task_id, -1):
                self._tenths[task_id] = int(fraction * 10)
                _say(f"task {task_id}: {fraction:.0%} {message}".rstrip())
        for task_id in set(self._bars) - set(running):
            self._bars.pop(task_id).close()

    def _bar(self, task_id: str, fraction: float, message: str) -> None:
        from tqdm import tqdm

        bar = self._bars.get(task_id)
        if bar is None:
            # A terminal that reports no size (0x0) would make tqdm draw nothing; shutil falls back to 80x24.
            size = shutil.get_terminal_size()
            bar = self._bars[task_id] = tqdm(total=100, desc=task_id, file=self.stream, leave=False,
                                              ncols=size.columns, nrows=size.lines,
                                              bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed} {postfix}")
        bar.n = round(fraction * 100)
        bar.set_postfix_str(message, refresh=False)
        bar.refresh()


def cmd_worker(args) -> int:
    from huggingface_hub.errors import HfHubHTTPError

    from ..hub import describe

    worker = build_worker(args)
    worker.install_signal_handlers()
    _say(f"{worker.id} ({worker.executor.name} executor) on {worker.controller!r}, "
         f"queue {worker.queue.store.describe()}")
    progress = RunProgress(worker).start()
    try:
        worker.run(once=args.once, until_idle=args.until_idle)
    except HfHubHTTPError as exc:
        raise SchedulerError(f"the worker stopped: {describe(exc)}") from None
    finally:
        progress.stop()
    status = worker.status()
    _say(f"stopped ({status.get('stop_reason') or status.get('reason')}); "
         f"{status['done']} task(s) done, {status['failed']} failed")
    return 1 if args.until_idle and status["failed"] else 0


if __name__ == "__main__":  # pragma: no cover
    from ..cli import main

    sys.exit(main(["worker", *sys.argv[1:]]))
