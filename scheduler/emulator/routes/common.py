"""What the route modules share: the error shape, the access checks and request helpers."""

from __future__ import annotations

import json
from urllib.parse import unquote

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from ..hub import EmulatedHub
from ..jobs import sse
from ..storage import RepoNotFound

PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


class HTTPError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


def error_response(status: int, message: str, code: str | None = None, headers: dict | None = None) -> JSONResponse:
    h = dict(headers or {})
    if code:
        h["X-Error-Code"] = code
    h["X-Error-Message"] = message
    return JSONResponse({"error": message}, status_code=status, headers=h)


def sse_response(events: list[dict]) -> Response:
    """An SSE answer; its `Date` (which the client cuts a log replay at) is set from the emulator
    clock by HubHeadersMiddleware, like every answer's."""
    return Response(sse(events), media_type="text/event-stream")


async def json_body(request: Request) -> dict:
    raw = await request.body()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise HTTPError(400, "Body is not valid JSON") from None
    if not isinstance(data, dict):
        raise HTTPError(400, "Body must be a JSON object")
    return data


def raw_tail(request: Request, marker: str) -> tuple[str, str]:
    """Split the raw (still percent-encoded) path after `marker` into (rev, path)."""
    raw = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
    rest = raw[raw.index(marker) + len(marker):]
    rev, _, path = rest.partition("/")
    return unquote(rev), unquote(path)


class Access:
    """Who may see or change what, given the user `AuthMiddleware` put on the request."""

    def __init__(self, hub: EmulatedHub):
        self.hub = hub

    def endpoint(self, request: Request) -> str:
        return self.hub.base_url or str(request.base_url).rstrip("/")

    def _member(self, user: str | None, repo) -> bool:
        """The repo's creator, or a member of the org it lives in."""
        return user is not None and (user == repo.meta.get("owner") or self.hub.accounts.may_act_for(user, repo.ns))

    def visible_repo(self, request: Request, rtype: str, repo_id: str):
        repo = self.hub.store.get(rtype, repo_id)
        if repo.meta.get("private") and not self._member(request.state.user, repo):
            raise RepoNotFound(f"Repository Not Found for url: {rtype}s/{repo_id}")
        return repo

    def writable_repo(self, request: Request, rtype: str, repo_id: str):
        repo = self.visible_repo(request, rtype, repo_id)
        user = request.state.user
        if user is None:
            raise HTTPError(401, "You must be authenticated to write to this repo")
        if not self._member(user, repo):
            raise HTTPError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    def space_for_write(self, request: Request, ns: str, name: str) -> str:
        self.writable_repo(request, "space", f"{ns}/{name}")
        return f"{ns}/{name}"

    def job_ns(self, request: Request, ns: str) -> str:
        user = request.state.user
        if user is None:
            raise HTTPError(401, "You must be authenticated to use Jobs")
        if not self.hub.accounts.may_act_for(user, ns):
            raise HTTPError(403, f"You cannot run jobs in {ns!r}")
        return ns
