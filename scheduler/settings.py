"""One typed settings object for a worker, filled by the CLI's flags, the app and the Space's
variables alike, and the one function that builds a worker from it.

Every field can come from the environment as `SCHEDULER_<FIELD>` (e.g. `SCHEDULER_POLL_S=5`,
`SCHEDULER_EXECUTOR=jobs`): that is how a deployed Space is configured (its variables), without
assembling command lines.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import UserError

EXECUTOR_NAMES = ("space", "local", "jobs")
NOTIFY_TARGETS = ("model", "space")


@dataclass(frozen=True)
class WorkerSettings:
    """How a worker runs. Times in seconds, prices in USD.

    - `executor`: `space` (switch the Space's own hardware per task, the default), `local` (run on this
      machine, no hardware changes) or `jobs` (one Hugging Face Job per task, the Space stays idle).
    - `space`: the Space whose hardware to drive (default `$SPACE_ID`, i.e. the Space the worker runs in).
    - `lease_s`, `heartbeat_s`: None chooses by setup. A worker inside its own Space makes no heartbeat
      commits: its lease covers each task's timeout plus a margin (lease.SPACE_LEASE_MARGIN_S). Any
      other worker renews every `heartbeat_s` (600 by default) and its lease outlives a commit-quota
      window (lease.heartbeat_lease_s).
    - `watch_s`: how often a running task's row is checked for a cancel (one cheap read of the head);
      with `stop_grace_s` (how long a stopped callback may take before it is killed), a cancel ends
      a run within 10 s by default.
    - `takeover_grace_s`: after a restart of its Space, how long a worker lets its predecessor's runs
      stop by themselves (the old replica may still run for a moment) before taking their tasks back.
    """

    queue: str
    callback: str | None = None
    executor: str = "space"
    space: str | None = None
    token: str | None = field(default=None, repr=False)
    endpoint: str | None = None
    work_dir: str | None = None
    poll_s: float = 15.0
    watch_s: float = 3.0
    lease_s: float | None = None
    heartbeat_s: float | None = None
    stop_grace_s: float = 5.0
    max_timeout_s: float = 6 * 3600.0
    retry_delay_s: float | None = None
    sleep_time_s: int = 3600
    max_gpu_wait_s: float = 180.0
    request_deadline_s: float = 900.0
    crash_loop_boots: int = 3
    takeover_grace_s: float = 90.0
    max_concurrent_jobs: int = 3
    jobs_image: str | None = None
    jobs_namespace: str | None = None
    jobs_poll_s: float = 10.0
    notify: str | None = None

    def __post_init__(self) -> None:
        if self.executor not in EXECUTOR_NAMES:
            raise UserError(f"executor must be one of {', '.join(EXECUTOR_NAMES)}, got {self.executor!r}")
        if self.notify not in (None, *NOTIFY_TARGETS):
            raise UserError(f"notify must be one of {', '.join(NOTIFY_TARGETS)}, got {self.notify!r}")
        for name in ("poll_s", "watch_s", "stop_grace_s", "max_timeout_s", "jobs_poll_s"):
            if getattr(self, name) <= 0:
                raise UserError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("lease_s", "heartbeat_s", "retry_delay_s"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise UserError(f"{name} must be >= 0, got {value}")
        if self.max_concurrent_jobs < 1:
            raise UserError(f"max_concurrent_jobs must be at least 1, got {self.max_concurrent_jobs}")

    def replace(self, **changes: Any) -> "WorkerSettings":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "WorkerSettings":
        """`SCHEDULER_<FIELD>` for every field (`SCHEDULER_QUEUE`, `SCHEDULER_POLL_S`, ...), `HF_TOKEN`,
        `HF_ENDPOINT` and `SPACE_ID`; `overrides` win. A value that does not parse names its variable."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"SCHEDULER_{f.name.upper()}")
            if raw is None or raw == "" or f.name == "token":
                continue
            values[f.name] = _parse(f, raw, f"SCHEDULER_{f.name.upper()}")
        values.setdefault("token", env.get("HF_TOKEN") or None)
        values.setdefault("endpoint", env.get("HF_ENDPOINT") or None)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if not values.get("queue"):
            raise UserError("no queue given: pass --queue hf://datasets/OWNER/NAME (or a folder), or set SCHEDULER_QUEUE")
        return cls(**values)


def _parse(f: dataclasses.Field, raw: str, where: str) -> Any:
    kind = str(f.type)
    try:
        if "float" in kind:
            return float(raw)
        if "int" in kind:
            return int(float(raw)) if float(raw).is_integer() else int(raw)
    except ValueError:
        raise UserError(f"{where}={raw!r}: expected a number") from None
    return raw


def _home(settings: WorkerSettings, space_id: str | None, work_dir: Path) -> str:
    """What survives a restart of this worker: its Space when it runs inside it, else this machine and
    work dir (a worker restarted there holds the work dir's lock, so its predecessor is gone)."""
    if space_id and os.environ.get("SPACE_ID") == space_id:
        return space_id
    digest = hashlib.sha1(str(work_dir.resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}:{digest}"


def build_worker(settings: WorkerSettings, *, say: Callable[[str], None] | None = None,
                 on_finish: Callable | None = None, queue=None, controller=None):
    """The worker `settings` describe, with its queue, executor and hardware controller.

    Raises UserError for a missing callback, an executor that needs a Space without one, or bad values."""
    from huggingface_hub import HfApi

    from . import hub, notify
    from . import open_queue as open_with_waker
    from .callbacks import default_work_dir, resolve_spec
    from .executors import JobsExecutor, JobsOptions, ProcessExecutor
    from .hardware import LocalController, SpaceController
    from .redact import register_secret
    from .worker import Worker

    register_secret(settings.token)
    hub.ensure_http_timeout()
    callback = resolve_spec(settings.callback)
    work_dir = Path(settings.work_dir) if settings.work_dir else default_work_dir()
    work_dir.mkdir(parents=True, exist_ok=True)
    queue = queue or open_with_waker(settings.queue, token=settings.token, endpoint=settings.endpoint)
    space_id = settings.space or (os.environ.get("SPACE_ID") if settings.executor != "local" else None)
    if settings.executor == "local":
        controller = controller or LocalController()
    elif controller is None:
        if not space_id:
            raise UserError(f"the {settings.executor} executor drives a Space: pass --space OWNER/NAME (or run "
                            f"inside a Space), or use --executor local")
        controller = SpaceController(space_id, token=settings.token, endpoint=settings.endpoint)
    api = HfApi(token=settings.token, endpoint=settings.endpoint)
    home = _home(settings, space_id, work_dir)

    def space_prices() -> dict[str, float]:
        return controller.prices()

    if settings.executor == "jobs":
        image = settings.jobs_image or (f"hf.co/spaces/{space_id}" if space_id else None)
        namespace = settings.jobs_namespace or (space_id.split("/")[0] if space_id else None)
        if not image or not namespace:
            raise UserError("the jobs executor needs an image and a namespace: --jobs-image / --jobs-namespace, "
                            "or the Space whose image to use")
        executor = JobsExecutor(api, callback, home=home, image=image, namespace=namespace, token=settings.token,
                                max_timeout_s=settings.max_timeout_s, work_dir=work_dir,
                                options=JobsOptions(max_concurrent_jobs=settings.max_concurrent_jobs,
                                                    poll_s=settings.jobs_poll_s, stop_grace_s=settings.stop_grace_s))
    else:
        executor = ProcessExecutor(settings.executor, callback, work_dir, token=settings.token,
                                   endpoint=settings.endpoint, prices=space_prices,
                                   manages_hardware=settings.executor == "space")
    notifier = None
    if settings.notify:
        notifier = notify.safe(notify.DiscussionNotifier(api, space_id=space_id, target=settings.notify), say)
    hooks = [h for h in (on_finish, notifier) if h is not None]

    def finished(task) -> None:
        for hook in hooks:
            hook(task)

    return Worker(queue, executor, controller=controller, settings=settings, home=home, work_dir=work_dir,
                  say=say, on_finish=finished if hooks else None)
