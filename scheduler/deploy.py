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
# Parts of the package a production Space never runs: the offline Hub (and what only it uses).
NOT_DEPLOYED = ("emulator",)
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
    # None: chosen (public only when outside users are allowed to submit: a private Space answers 404
    # to anyone but its owner and collaborators, hub-facts §11).
    public: bool | None = None
    volumes: list = field(default_factory=list)
    # The sleep time the worker requests paid hardware with (cpu-basic's own cannot be set).
    sleep_time: int | None = None
    executor: str | None = None
    # Secrets are set once; re-setting one restarts the Space (and a webhook secret must match the hook).
    rotate_secrets: bool = False
    # A Space running a task is not restarted (code, secret or variable change) until it is idle.
    force: bool = False
    idle_poll_s: float = 10.0
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
        if self.sleep_time is not None:
            out["SCHEDULER_SLEEP_TIME_S"] = str(self.sleep_time)
        if self.executor:
            out["SCHEDULER_EXECUTOR"] = self.executor
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
            relative = path.relative_to(PACKAGE_DIR)
            if relative.parts[0] not in NOT_DEPLOYED:
                files["scheduler/" + relative.as_posix()] = path.read_bytes()
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


class IdleGuard:
    """Holds back a write that restarts the Space (new code, a secret, a variable) while the Space runs
    a task: the restart would kill it and drop its GPU. Waits until the Space is idle, unless `force`."""

    def __init__(self, config: DeployConfig, say: Callable[[str], None], sleep: Callable[[float], None]):
        self.config, self.say, self.sleep = config, say, sleep

    def running(self) -> list[str]:
        from .queue import TaskQueue

        queue = TaskQueue.open(self.config.queue_url, token=self.config.token, endpoint=self.config.endpoint)
        home = f"{self.config.space_id}#"
        return [t.id for t in queue.list("RUNNING") if t.worker.startswith(home)]

    def wait(self) -> None:
        if self.config.force:
            return
        said = False
        while running := self.running():
            if not said:
                self.say(f"waiting: the Space is running {', '.join(running)}; a restart now would kill it "
                         f"(--force restarts it anyway)")
                said = True
            self.sleep(self.config.idle_poll_s)


def _git_blob_sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _code_changes(api, space_id: str, files: dict[str, bytes]) -> bool:
    """Whether uploading `files` would change the Space (compared by git blob sha, without a commit)."""
    from huggingface_hub.hf_api import RepoFile

    remote = {item.path: item.blob_id for item in api.list_repo_tree(space_id, repo_type="space", recursive=True)
              if isinstance(item, RepoFile)}
    if any(remote.get(path) != _git_blob_sha(data) for path, data in files.items()):
        return True
    return any(p.startswith("scheduler/") and p not in files for p in remote)


def build_plan(config: DeployConfig, api=None, say: Callable[[str], None] = print,
               sleep: Callable[[float], None] | None = None) -> list[Step]:
    import time

    from huggingface_hub import HfApi

    from . import hub
    from .queue import TaskQueue

    hub.ensure_http_timeout()
    api = api or HfApi(token=config.token, endpoint=config.endpoint)
    space = config.space_id
    guard = IdleGuard(config, say, sleep or time.sleep)
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
        files = app_files(config.app_dir, defaults=defaults)
        if not _code_changes(api, space, files):
            return "unchanged"
        guard.wait()
        oid = upload_app(api, space, config.app_dir, defaults=defaults,
                         message=f"Deploy the scheduler app (queue {config.queue_url})")
        return f"uploaded (commit {oid[:8]})" if oid else "unchanged"

    steps.append(Step("code", f"upload {config.app_dir.name}/ and the scheduler package in one commit", code_step))

    def secret_step() -> str:
        if TOKEN_SECRET in api.get_space_secrets(space) and not config.rotate_secrets:
            return "kept (already set; --rotate-secrets replaces it)"
        token = local_token(config.token)
        if not token:
            raise UserError("no Hub token: log in with `hf auth login` or set HF_TOKEN")
        guard.wait()
        api.add_space_secret(space, TOKEN_SECRET, token, description="the scheduler's access to the queue and the Space")
        return "set"

    steps.append(Step("secret", f"secret {TOKEN_SECRET} from your local login unless set (value never shown)",
                      secret_step))

    if config.webhook:
        target = config.webhook_url or f"the Space's host{WEBHOOK_PATH}"
        steps.append(Step("webhook", f"a Hub webhook on {config.queue_repo} (repo events) to {target}, "
                                     f"its secret as the Space secret {WEBHOOK_SECRET}",
                          lambda: webhook_step(api, config, guard)))

    wanted = config.variables()

    def variables_step() -> str:
        current = {k: v.value for k, v in api.get_space_variables(space).items()}
        changed = [k for k, v in wanted.items() if current.get(k) != v]
        if changed:
            guard.wait()
        for key in changed:
            api.add_space_variable(space, key, wanted[key])
        return f"set {', '.join(changed)}" if changed else "unchanged"

    steps.append(Step("variables", "variables " + ", ".join(f"{k}={v}" for k, v in wanted.items()), variables_step))

    if config.volumes:
        def volumes_step() -> str:
            guard.wait()
            api.set_space_volumes(space, config.volumes)
            return f"{len(config.volumes)} mounted"

        steps.append(Step("volumes", "volumes " + ", ".join(f"{v.source} at {v.mount_path}" for v in config.volumes),
                          volumes_step))
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


def webhook_step(api, config: DeployConfig, guard: IdleGuard | None = None) -> str:
    """One webhook per target URL: found again by its URL on a re-deploy, its secret kept (the Hub
    shows it to the owner), so re-running neither duplicates the webhook nor invalidates the secret
    the running Space holds; the Space's copy of the secret is written only when it changes (every
    secret write restarts the Space)."""
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
        secret = existing.secret if existing.secret and not config.rotate_secrets else secrets.token_urlsafe(32)
        register_secret(secret)
        have = [{"type": w.type, "name": w.name} for w in existing.watched]
        if watched not in have or "repo" not in existing.domains or secret != existing.secret:
            api.update_webhook(existing.id, url=url, watched=have + ([watched] if watched not in have else []),
                               domains=sorted(set(existing.domains) | {"repo"}), secret=secret)
            outcome = f"updated ({existing.id})"
        else:
            outcome = f"exists ({existing.id})"
        if existing.disabled:
            api.enable_webhook(existing.id)
            outcome += ", enabled again"
    unchanged = existing is not None and existing.secret == secret and not config.rotate_secrets
    if unchanged and WEBHOOK_SECRET in api.get_space_secrets(config.space_id):
        return f"{outcome} -> {url}"
    if guard is not None:
        guard.wait()
    api.add_space_secret(config.space_id, WEBHOOK_SECRET, secret, description="checks the queue webhook's calls")
    return f"{outcome}, secret given to the Space -> {url}"


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


def check_prerequisites(api, config: DeployConfig, say: Callable[[str], None] = print) -> None:
    """The preflight: raises UserError listing every missing prerequisite (one line each, with what to
    do) before anything is written; decides the Space's visibility when it was not given, saying why."""
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    from .hub import describe
    from .preflight import Plan, missing_prerequisites

    token = local_token(config.token)
    if not token:
        raise UserError("no Hub token: log in with `hf auth login` or set HF_TOKEN (a write token)")
    try:
        me = api.whoami(token=token, cache=True)
    except LocalTokenNotFoundError:
        raise UserError("no Hub token: log in with `hf auth login` or set HF_TOKEN (a write token)") from None
    except HfHubHTTPError as exc:
        raise UserError(f"the Hub refused the token ({describe(exc)}): create a write token at "
                        f"https://huggingface.co/settings/tokens") from None
    creates = not _exists(api, config.space_id, "space")
    verdict = missing_prerequisites(me, Plan(config.space_id.split("/")[0], config.queue_repo.split("/")[0],
                                             creates, config.executor or "space"))
    if verdict.missing:
        raise UserError("missing prerequisites, nothing was created:\n" + "\n".join(f"  - {m}" for m in verdict.missing))
    for note in verdict.notes:
        say(f"note: {note}")
    outside = _outside_users(api, me, config)
    if config.public is None and not creates:
        config.public = not api.space_info(config.space_id).private  # an existing Space keeps its visibility
    if config.public is None:
        config.public = bool(outside)
        if outside:
            say(f"note: the Space will be public so that {', '.join(outside)} can reach it (a private Space "
                f"answers 404 to anyone but its owner and collaborators); only the allowed users may submit, "
                f"and the queue dataset stays private")
    if outside and not config.public:
        say(f"note: {', '.join(outside)} can reach the Space only if it is public (a private Space answers 404 "
            f"to anyone but its owner and collaborators)")


def _outside_users(api, me: dict, config: DeployConfig) -> list[str]:
    """Allowed users who cannot see a private Space of its namespace (neither its owner nor members)."""
    namespace = config.space_id.split("/")[0]
    members = {me.get("name")} if namespace == me.get("name") else set()
    if namespace != me.get("name"):
        try:
            members |= {m.username for m in api.list_organization_members(namespace)}
        except Exception:
            pass  # members unknown: every allowed user counts as outside
    return [u for u in config.allowed_users if u not in members]


def deploy(config: DeployConfig, *, dry_run: bool = False, say: Callable[[str], None] = print) -> str:
    """Create or update the queue and the Space; returns the Space URL. `dry_run` only prints the plan.
    Nothing is written unless every prerequisite holds (check_prerequisites)."""
    from huggingface_hub import HfApi

    from . import hub

    hub.ensure_http_timeout()
    api = HfApi(token=config.token, endpoint=config.endpoint)
    check_prerequisites(api, config, say)
    steps = build_plan(config, api, say)
    if dry_run:
        say(f"plan for {config.space_id} (dry run: nothing is written)")
        for i, step in enumerate(steps, 1):
            say(f"[{i}/{len(steps)}] {step.name}: {step.plan}")
    else:
        run_plan(steps, say)
    say(WAKE_NOTE_PUBLIC if config.public else WAKE_NOTE_PRIVATE)
    url = space_url(config)
    say(url)
    return url


WAKE_NOTE_PRIVATE = ("how tasks reach this private Space: its page (a visit also wakes it from sleep), a client that "
                     "knows it (SCHEDULER_SPACE=OWNER/NAME, or `scheduler.open_queue(..., space=...)`: each add asks "
                     "the Space for the task's GPU and restarts it if it sleeps), and its own polling while it is "
                     "awake; the Hub's webhook most likely cannot reach a private Space")
WAKE_NOTE_PUBLIC = ("how tasks reach this Space: its page, a client that knows it (SCHEDULER_SPACE), the Hub's "
                    "webhook on every commit to the queue, and its own polling while it is awake")
