"""Discussion routes: opening one and reading it back (no comments, pull requests or status changes)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from ..hub import EmulatedHub
from ..storage import atomic_write_json, iso, read_json
from .common import PREFIX, Access, HTTPError, json_body


def build_router(hub: EmulatedHub) -> APIRouter:
    router = APIRouter()
    access = Access(hub)

    @router.post("/api/{rtype:rtype}/{ns}/{name}/discussions")
    async def _discussion_create(request: Request, rtype: str, ns: str, name: str):
        body = await json_body(request)
        repo_id = f"{ns}/{name}"
        access.visible_repo(request, rtype, repo_id)
        if request.state.user is None:
            raise HTTPError(401, "You must be authenticated to open a discussion")
        title = str(body.get("title") or "").strip()
        if not title or body.get("pullRequest"):
            raise HTTPError(400, "a title is required (pull requests are not emulated)")

        def apply() -> int:
            path = _discussions_file(hub.data_dir, rtype, repo_id)
            with hub.store.lock(rtype, repo_id):
                items = read_json(path) or []
                now = iso(hub.clock.now())
                num = len(items) + 1
                items.append({"num": num, "title": title, "createdAt": now, "author": {"name": request.state.user},
                              "events": [{"id": f"{num:024x}", "type": "comment", "createdAt": now,
                                          "author": {"name": request.state.user},
                                          "data": {"edited": False, "hidden": False,
                                                   "latest": {"raw": str(body.get("description") or "")}}}]})
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_json(path, items, hub.store.fsync)
                return num

        num = await run_in_threadpool(apply)
        return {"num": num, "url": f"{access.endpoint(request)}/{PREFIX[rtype]}{repo_id}/discussions/{num}"}

    @router.get("/api/{rtype:rtype}/{ns}/{name}/discussions/{num}")
    def _discussion_get(request: Request, rtype: str, ns: str, name: str, num: int):
        repo_id = f"{ns}/{name}"
        access.visible_repo(request, rtype, repo_id)
        for item in read_json(_discussions_file(hub.data_dir, rtype, repo_id)) or []:
            if item["num"] == num:
                return _discussion_json(rtype, repo_id, item)
        raise HTTPError(404, f"Discussion {num} not found")

    return router


def _discussions_file(data_dir: Path, rtype: str, repo_id: str) -> Path:
    return data_dir / "discussions" / f"{rtype}--{repo_id.replace('/', '--')}.json"


def _discussion_json(rtype: str, repo_id: str, item: dict) -> dict:
    return {**item, "repo": {"name": repo_id, "type": rtype}, "isPullRequest": False, "status": "open",
            "changes": {}, "filesWithConflicts": []}
