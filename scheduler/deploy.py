"""Put the scheduler on the Hub: its queue dataset and its Space, as a plan of idempotent steps.

Each step checks what is there before writing, so running the same deploy again finishes an
interrupted one, or updates the code and settings of a finished one, and never touches the
queue's `tasks.csv` once it exists. A failed step is reported by name; what the steps before it
did stays valid on its own (a queue without a Space, a Space without its settings yet).
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .errors import SchedulerError, UserError
from .redact import register_secret
from .wake import ENV_WEBHOOK_SECRET as WEBHOOK_SECRET

PACKAGE_DIR = Path(__file__).resolve().parent
APP_DIR = PACKAGE_DIR.parent / "space_app"
# Bytecode and caches differ per machine: uploading them would make every deploy a new commit.
IGNORED = ("__pycache__", "*.pyc", "*.pyo", ".DS_Store", "*.egg-info")
TOKEN_SECRET = "HF_TOKEN"
WEBHOOK_PATH = "/webhooks/queue"

DEFAULT_README = """---
title: {title}
emoji: 🗓️
colorFrom: indigo
colorTo: gray
sdk: gradio
app_file: app.py
pinned: false
hf_oauth: true
---

On-demand GPU job scheduler: the queue is `{queue}`. The Space idles on cpu-basic and switches
itself to a task's GPU only while there is work for it.
"""

DEFAULT_REQUIREMENTS = "huggingface_hub>=1.0\ngradio[oauth]>=5.0\npandas>=2.0\nfilelock>=3.12\n"


class DeployError(SchedulerError):
    """A step failed; `step` names it and `done` lists the steps that completed before it."""

    def __init__(self, step: str, cause: str, done: list[str]):
        self.step = step
        self.done = list(done)
        finished = f"; done before it: {', '.join(done)}" if done else ""
        super().__init__(f"deploy step '{step}' failed: {cause}{finished}. "
                         "Run the same command again to finish: every step is safe to repeat.")


@dataclass
class DeployConfig:
    space_id: str
    queue_repo: str
    from_space: str | None = None
    callback: str | None = None
    allowed_users: list[str] = field(default_factory=list)
    public: bool = False
    volumes: list = field(default_factory=list)
    sleep_time: int | None = None
    app_dir: Path = APP_DIR
    token: str | None = None
    endpoint: str | None = None
    # A Hub webhook on the queue wakes the Space on every commit (a submission from any client)
    # instead of at its next poll. `webhook_url` defaults to the Space's own host.
    webhook: bool = True
    webhook_url: str | None = None

    def __post_init__(self) -> None:
        for label, repo in (("Space", self.space_id), ("queue dataset", self.queue_repo)):
            if not repo or repo.count("/") != 1 or not all(repo.split("/")):
                raise UserError(f"the {label} id must look like OWNER/NAME, got {repo!r}")
        if self.from_space is not None and self.from_space.count("/") != 1:
            raise UserError(f"--from must look like OWNER/NAME, got {self.from_space!r}")

    @property
    def queue_url(self) -> str:
        return f"hf://datasets/{self.queue_repo}"

    def variables(self) -> dict[str, str]:
        out = {"SCHEDULER_QUEUE": self.queue_url}
        if self.callback:
            out["SCHEDULER_CALLBACK"] = self.callback
        if self.allowed_users:
            out["SCHEDULER_ALLOWED_USERS"] = ",".join(self.allowed_users)
        return out


@dataclass
class Step:
    name: str
    plan: str
    run: Callable[[], str]


# ---------------------------------------------------------------- the files a Space runs


def app_files(app_dir: Path = APP_DIR, *, include_package: bool = True,
              defaults: dict[str, str] | None = None) -> dict[str, bytes]:
    """Path in the Space repo -> content: the app folder at the root, the `scheduler` package next to
    it (so `import scheduler` works in the Space without a release on PyPI), and `defaults` for files
    the app folder lacks (README.md front matter, requirements.txt)."""
    app_dir = Path(app_dir)
    if not app_dir.is_dir():
        raise UserError(f"the app folder {app_dir} does not exist")
    files: dict[str, bytes] = {}
    for path in _walk(app_dir):
        files[path.relative_to(app_dir).as_posix()] = path.read_bytes()
    if include_package:
        for path in _walk(PACKAGE_DIR):
            files["scheduler/" + path.relative_to(PACKAGE_DIR).as_posix()] = path.read_bytes()
    for name, text in (defaults or {}).items():
        files.setdefault(name, text.encode())
    return files


def _walk(root: Path) -> Iterable[Path]:
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if any(fnmatch.fnmatch(part, pattern) for part in parts for pattern in IGNORED):
            continue
        if path.is_file():
            yield path


def upload_app(api, space_id: str, app_dir: Path = APP_DIR, *, include_package: bool = True,
               defaults: dict[str, str] | None = None, message: str = "Deploy the scheduler app") -> str | None:
    """Upload the app and the package in one commit (one rebuild). Files of an earlier deploy that are
    gone locally are deleted under `scheduler/`, so a removed module cannot linger. Returns the new
    commit id, or None when the Space already had exactly these files (no commit, no restart)."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    files = app_files(app_dir, include_package=include_package, defaults=defaults)
    remote = _remote_files(api, space_id)
    operations: list = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=data) for p, data in files.items()]
    operations += [CommitOperationDelete(path_in_repo=p) for p in sorted(remote)
                   if p.startswith("scheduler/") and p not in files]
    before = _head(api, space_id)
    info = api.create_commit(space_id, operations, repo_type="space", commit_message=message)
    # Identical files: the client sends no commit and answers with the current head.
    return None if info.oid == before else info.oid


def _remote_files(api, space_id: str) -> set[str]:
    return set(api.list_repo_files(space_id, repo_type="space"))


def _head(api, space_id: str) -> str | None:
    return api.repo_info(space_id, repo_type="space", expand=["sha"]).sha


# ---------------------------------------------------------------- the plan


def _exists(api, repo_id: str, repo_type: str) -> bool:
    return api.repo_exists(repo_id, repo_type=repo_type)


def local_token(explicit: str | None = None) -> str | None:
    from huggingface_hub import get_token

    token = explicit or get_token()
    register_secret(token)
    return token


def build_plan(config: DeployConfig, api=None) -> list[Step]:
    from huggingface_hub import HfApi

    from . import hub
    from .queue import TaskQueue

    hub.ensure_http_timeout()
    api = api or HfApi(token=config.token, endpoint=config.endpoint)
    space = config.space_id
    steps: list[Step] = []

    def queue_step() -> str:
        # init also gives an existing queue its dataset card (README.md), without touching tasks.csv.
        queue = TaskQueue.open(config.queue_url, token=config.token, endpoint=config.endpoint)
        return "created with an empty tasks.csv" if queue.init() else "exists, left as is"

    steps.append(Step("queue", f"dataset {config.queue_repo} (private) with tasks.csv unless it exists, "
                               "and its dataset card", queue_step))

    def space_step() -> str:
        if _exists(api, space, "space"):
            return "exists"
        private = not config.public
        if config.from_space:
            api.duplicate_repo(config.from_space, space, repo_type="space", private=private, exist_ok=True)
            return f"duplicated from {config.from_space}"
        api.create_repo(space, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        return "created (" + ("public" if config.public else "private") + ")"

    visibility = "public" if config.public else "private"
    steps.append(Step("space", f"Space {space} ({visibility}, gradio)"
                      + (f" duplicated from {config.from_space}" if config.from_space else "") + ", unless it exists",
                      space_step))

    defaults = {"README.md": DEFAULT_README.format(title=space.split("/")[1], queue=config.queue_url),
                "requirements.txt": DEFAULT_REQUIREMENTS}

    def code_step() -> str:
        oid = upload_app(api, space, config.app_dir, defaults=defaults,
                         message=f"Deploy the scheduler app (queue {config.queue_url})")
        return f"uploaded (commit {oid[:8]})" if oid else "unchanged"

    steps.append(Step("code", f"upload {config.app_dir.name}/ and the scheduler package in one commit", code_step))

    def secret_step() -> str:
        token = local_token(config.token)
        if not token:
            raise UserError("no Hub token: log in with `hf auth login` or set HF_TOKEN")
        api.add_space_secret(space, TOKEN_SECRET, token, description="the scheduler's access to the queue and the Space")
        return "set"

    steps.append(Step("secret", f"secret {TOKEN_SECRET} from your local login (value never shown)", secret_step))

    if config.webhook:
        target = config.webhook_url or f"the Space's host{WEBHOOK_PATH}"
        steps.append(Step("webhook", f"a Hub webhook on {config.queue_repo} (repo events) to {target}, "
                                     f"its secret as the Space secret {WEBHOOK_SECRET}",
                          lambda: webhook_step(api, config)))

    wanted = config.variables()

    def variables_step() -> str:
        current = {k: v.value for k, v in api.get_space_variables(space).items()}
        changed = [k for k, v in wanted.items() if current.get(k) != v]
        for key in changed:
            api.add_space_variable(space, key, wanted[key])
        return f"set {', '.join(changed)}" if changed else "unchanged"

    steps.append(Step("variables", "variables " + ", ".join(f"{k}={v}" for k, v in wanted.items()), variables_step))

    if config.volumes:
        def volumes_step() -> str:
            api.set_space_volumes(space, config.volumes)
            return f"{len(config.volumes)} mounted"

        steps.append(Step("volumes", "volumes " + ", ".join(f"{v.source} at {v.mount_path}" for v in config.volumes),
                          volumes_step))

    if config.sleep_time is not None:
        def sleep_step() -> str:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the client warns that cpu-basic has its own sleep rules
                api.set_space_sleep_time(space, config.sleep_time)
            return f"{config.sleep_time}s"

        steps.append(Step("sleep-time", f"sleep time {config.sleep_time}s", sleep_step))
    return steps


def webhook_target(api, config: DeployConfig) -> str:
    """Where the Hub should POST: the Space's own host (https://OWNER-NAME.hf.space on the Hub)."""
    if config.webhook_url:
        return config.webhook_url
    info = api.space_info(config.space_id)
    host = getattr(info, "host", None) or f"https://{getattr(info, 'subdomain', None) or _subdomain(config.space_id)}.hf.space"
    return host.rstrip("/") + WEBHOOK_PATH


def _subdomain(space_id: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in space_id.lower())


def webhook_step(api, config: DeployConfig) -> str:
    """One webhook per target URL: found again by its URL on a re-deploy, its secret kept (the Hub
    shows it to the owner), so re-running neither duplicates the webhook nor invalidates the secret
    the running Space holds."""
    import secrets

    url = webhook_target(api, config)
    watched = {"type": "dataset", "name": config.queue_repo}
    existing = next((w for w in api.list_webhooks() if w.url == url), None)
    if existing is None:
        secret = secrets.token_urlsafe(32)
        register_secret(secret)
        hook = api.create_webhook(url=url, watched=[watched], domains=["repo"], secret=secret)
        outcome = f"created ({hook.id})"
    else:
        secret = existing.secret or secrets.token_urlsafe(32)
        register_secret(secret)
        have = [{"type": w.type, "name": w.name} for w in existing.watched]
        if watched not in have or "repo" not in existing.domains or not existing.secret:
            api.update_webhook(existing.id, url=url, watched=have + ([watched] if watched not in have else []),
                               domains=sorted(set(existing.domains) | {"repo"}), secret=secret)
            outcome = f"updated ({existing.id})"
        else:
            outcome = f"exists ({existing.id})"
        if existing.disabled:
            api.enable_webhook(existing.id)
            outcome += ", enabled again"
    api.add_space_secret(config.space_id, WEBHOOK_SECRET, secret, description="checks the queue webhook's calls")
    return f"{outcome} -> {url}"


def space_url(config: DeployConfig) -> str:
    from huggingface_hub import constants

    endpoint = (config.endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
    return f"{endpoint}/spaces/{config.space_id}"


def run_plan(steps: list[Step], say: Callable[[str], None] = print) -> list[str]:
    """Run the steps in order; the first failure raises DeployError naming it and what was done."""
    from .hub import describe

    done: list[str] = []
    for i, step in enumerate(steps, 1):
        try:
            outcome = step.run()
        except UserError as exc:
            raise DeployError(step.name, str(exc), done) from None
        except Exception as exc:
            raise DeployError(step.name, describe(exc), done) from None
        say(f"[{i}/{len(steps)}] {step.name}: {outcome}")
        done.append(step.name)
    return done


def deploy(config: DeployConfig, *, dry_run: bool = False, say: Callable[[str], None] = print) -> str:
    """Create or update the queue and the Space; returns the Space URL. `dry_run` only prints the plan."""
    steps = build_plan(config)
    if dry_run:
        say(f"plan for {config.space_id} (dry run: nothing is written)")
        for i, step in enumerate(steps, 1):
            say(f"[{i}/{len(steps)}] {step.name}: {step.plan}")
    else:
        run_plan(steps, say)
    url = space_url(config)
    say(url)
    return url
