"""Waking the Space when work arrives, instead of waiting for its next poll of the queue.

Three paths, fastest first:
- direct: `TaskQueue.add(...)` from a client that knows the Space (`scheduler.open_queue(url, space=...)`
  or `SCHEDULER_SPACE`) asks for the task's flavor right after the add is committed;
- webhook: a Hub webhook on the queue dataset POSTs to the Space, whose worker looks at the
  queue at once (`handle_webhook` / `mount_webhook`);
- polling: the worker reads the queue every `poll_s` anyway, so a lost wake costs only latency.

A wake only ever asks for hardware when the Space is idle: a Space on a GPU is working through a
burst, and a request for another flavor would restart it in the middle of a task. The worker
moves on to the next flavor itself when the burst is done.
"""

from __future__ import annotations

import hmac
import json
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from .hardware import ERROR_STAGES, SLEEPING_STAGES, STOPPED_STAGES, SpaceController, is_paid
from .redact import register_secret

ENV_SPACE = "SCHEDULER_SPACE"
ENV_WEBHOOK_SECRET = "WEBHOOK_SECRET"
DEFAULT_SLEEP_TIME_S = 3600
SECRET_HEADER = "x-webhook-secret"


@dataclass(frozen=True)
class WakeResult:
    """What a wake did. `attention`: the task will not run until someone acts (a paused Space, a request
    the Hub refused) or must wait for the Space to boot; what to tell the person who added it."""

    flavor: str | None
    requested: bool
    reason: str
    attention: str | None = None


class Waker:
    """Asks one Space for the flavor of newly added work, at most once per flavor change."""

    def __init__(self, space_id: str, *, token: str | None = None, endpoint: str | None = None,
                 controller: SpaceController | None = None, sleep_time_s: int = DEFAULT_SLEEP_TIME_S):
        self.controller = controller or SpaceController(space_id, token=token, endpoint=endpoint)
        self.space_id = space_id
        self.sleep_time_s = sleep_time_s
        self.last: WakeResult | None = None
        self._jobs: bool | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Waker({self.space_id!r})"

    def wake(self, tasks: Iterable[Any]) -> WakeResult:
        """Request the hardware of the first (highest priority) paid task, if the Space is idle."""
        from .tasks import utcnow

        idle = self.controller.idle_flavor
        now = utcnow()
        wanted = sorted((t for t in tasks if is_paid(t.hardware, idle) and t.is_runnable(now)),
                        key=lambda t: t.sort_key())
        if not wanted:
            return self._note(None, False, "no task needs other hardware")
        task = wanted[0]
        flavor = task.hardware
        with self._lock:  # two adds from one client must not become two requests (two restarts)
            runtime = self.controller.runtime()
            jobs = self._runs_jobs()
            if runtime.stage in SLEEPING_STAGES:
                # A slept Space boots again on a restart (or a visit); its worker then asks for the GPU.
                self.controller.restart()
                return self._note(flavor, True, f"{self.space_id} was asleep ({runtime.stage}): restarted it; "
                                                f"it asks for {flavor} once it is up",
                                  attention=f"{self.space_id} was asleep: it is starting, the task runs once it is up")
            if runtime.stage in STOPPED_STAGES:
                return self._note(flavor, False, f"the Space is {runtime.stage}; its owner restarts it",
                                  attention=f"{self.space_id} is {runtime.stage}; this task will wait until its "
                                            f"owner restarts it")
            if runtime.stage in ERROR_STAGES:
                return self._note(flavor, False, f"the Space is in {runtime.stage}",
                                  attention=f"{self.space_id} is in {runtime.stage} ({runtime.error or 'see its logs'}); "
                                            f"this task will wait until the Space runs again")
            if jobs:
                return self._note(flavor, False, "the Space runs tasks as Jobs: it stays on its idle flavor")
            if flavor in (runtime.hardware, runtime.requested_hardware):
                return self._note(flavor, False, f"{flavor} is already current or requested")
            # A Space building on the idle flavor may be restarted for free; one on a GPU may not.
            if is_paid(runtime.hardware, idle) or is_paid(runtime.requested_hardware, idle):
                return self._note(flavor, False, "the Space is busy on other hardware; its worker switches next")
            sleep_time = max(self.sleep_time_s, int(getattr(task, "timeout_s", 0) or 0) + 600)
            try:
                self.controller.request(flavor, sleep_time)
            except Exception as exc:
                from .hub import describe

                return self._note(flavor, False, f"the Hub refused {flavor}: {describe(exc)}",
                                  attention=f"the Hub refused {flavor} for {self.space_id} ({describe(exc)}); the "
                                            f"Space's worker will try again and fail the task if it cannot")
            return self._note(flavor, True, f"requested {flavor} (sleep time {sleep_time}s)")

    def _runs_jobs(self) -> bool:
        """Whether the Space's worker runs tasks as Jobs (its SCHEDULER_EXECUTOR variable), read once:
        asking such a Space for a GPU would bill one for nothing."""
        if self._jobs is None:
            try:
                variables = self.controller.api.get_space_variables(self.space_id)
                self._jobs = getattr(variables.get("SCHEDULER_EXECUTOR"), "value", None) == "jobs"
            except Exception:
                return False  # unknown: the Space's own worker gives the GPU back if it does not need it
        return self._jobs

    def _note(self, flavor: str | None, requested: bool, reason: str, attention: str | None = None) -> WakeResult:
        self.last = WakeResult(flavor, requested, reason, attention)
        return self.last


def waker_for(space: str | None, *, token: str | None = None, endpoint: str | None = None) -> Waker | None:
    """The Waker for `space`, else for $SCHEDULER_SPACE, else None (nothing to wake)."""
    space = space or os.environ.get(ENV_SPACE)
    return Waker(space, token=token, endpoint=endpoint) if space else None


# ---------------------------------------------------------------- webhooks


@dataclass(frozen=True)
class WebhookAnswer:
    status: int
    body: dict


class WebhookHandler:
    """Checks a Hub webhook call and, for a new commit on the queue dataset, calls `on_change(sha)`.

    The secret is compared in constant time; missing -> 401, wrong -> 403, as huggingface_hub's
    WebhooksServer answers. The new commit is read from `updatedRefs[*].newSha`: the payload's
    `repo.headSha` is not parsed by the client's model (declared snake_case), so it is not relied on.
    A sha already seen is not acted on twice (the Hub retries deliveries)."""

    def __init__(self, on_change: Callable[[str], Any], *, secret: str | None = None,
                 queue_repo: str | None = None):
        self.on_change = on_change
        self.secret = secret if secret is not None else os.environ.get(ENV_WEBHOOK_SECRET)
        register_secret(self.secret)
        self.queue_repo = queue_repo
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, headers: Mapping[str, str], body: bytes | str | Mapping) -> WebhookAnswer:
        if self.secret:
            given = _header(headers, SECRET_HEADER)
            if given is None:
                return WebhookAnswer(401, {"error": f"{SECRET_HEADER} header not set."})
            if not hmac.compare_digest(given.encode(), self.secret.encode()):
                return WebhookAnswer(403, {"error": "Invalid webhook secret."})
        try:
            payload = json.loads(body) if isinstance(body, (bytes, str)) else dict(body)
            repo = payload.get("repo") or {}
            scope = (payload.get("event") or {}).get("scope", "")
            refs = payload.get("updatedRefs") or []
        except (ValueError, AttributeError, TypeError):
            return WebhookAnswer(400, {"error": "the body is not a Hub webhook payload"})
        if not str(scope).startswith("repo.content"):
            return WebhookAnswer(200, {"ignored": f"scope {scope!r}"})
        if self.queue_repo and repo.get("name") != self.queue_repo:
            return WebhookAnswer(200, {"ignored": f"repo {repo.get('name')!r} is not the queue"})
        shas = [r.get("newSha") for r in refs if isinstance(r, dict) and r.get("ref", "refs/heads/main")
                in ("refs/heads/main", "main") and r.get("newSha")]
        if not shas:
            return WebhookAnswer(200, {"ignored": "no new commit on main"})
        sha = shas[-1]
        with self._lock:
            if sha in self._seen:
                return WebhookAnswer(200, {"ignored": f"{sha} already handled"})
            self._seen.add(sha)
        self.on_change(sha)
        return WebhookAnswer(200, {"woken": sha})


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def mount_webhook(app, on_change: Callable[[str], Any], *, path: str = "/webhooks/queue",
                  secret: str | None = None, queue_repo: str | None = None) -> WebhookHandler:
    """Add `POST path` to a FastAPI/Starlette app (a Gradio app's `.app` after `launch(prevent_thread_lock=True)`,
    or the app given to `gr.mount_gradio_app`)."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    handler = WebhookHandler(on_change, secret=secret, queue_repo=queue_repo)

    async def receive(request: Request) -> JSONResponse:
        answer = handler(dict(request.headers), await request.body())
        return JSONResponse(answer.body, status_code=answer.status)

    # A plain Starlette route: FastAPI would try to validate the Hub's payload against a model.
    app.add_route(path, receive, methods=["POST"])
    return handler
