"""Repo routes: create, delete, move, settings, info and listings, refs and history, branches, commits
and duplication."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ..hub import EmulatedHub
from ..spaces import subdomain
from ..storage import (
    Operation,
    ParentMismatch,
    RepoExists,
    RepoNotFound,
    RevisionNotFound,
    StoreError,
    iso,
    split_id,
)
from .common import PREFIX, Access, HTTPError, error_response, json_body

SDKS = {"gradio", "streamlit", "docker", "static"}


def build_router(hub: EmulatedHub) -> APIRouter:
    router = APIRouter()
    access = Access(hub)
    store, spaces = hub.store, hub.spaces

    @router.post("/api/repos/create")
    async def _create_repo(request: Request):
        body = await json_body(request)
        user = request.state.user
        if user is None:
            raise HTTPError(401, "You must be authenticated to create a repo")
        rtype = body.get("type") or "model"
        if rtype not in PREFIX:
            raise HTTPError(400, f"Invalid repo type {rtype!r}")
        name = body.get("name") or ""
        ns = body.get("organization") or user
        repo_id = f"{ns}/{name}"
        try:
            split_id(repo_id)
        except RepoNotFound:
            raise HTTPError(400, f"Invalid repo name {repo_id!r}") from None
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}", name):
            raise HTTPError(400, f"Invalid repo name {name!r}")
        url = f"{access.endpoint(request)}/{PREFIX[rtype]}{repo_id}"
        private = body.get("visibility", "private" if body.get("private") else "public") != "public"
        extra: dict[str, Any] = {}
        if rtype == "space":
            sdk = body.get("sdk")
            if sdk not in SDKS:
                raise HTTPError(400, f"sdk must be one of {sorted(SDKS)}")
            extra["sdk"] = sdk
            if not store.exists(rtype, repo_id):
                spaces.check_new(repo_id, sdk, body)
        try:
            await run_in_threadpool(store.create, rtype, repo_id, user, private, extra)
        except RepoExists as exc:
            return JSONResponse({"error": str(exc), "url": url}, status_code=409)
        if rtype == "space":
            await run_in_threadpool(spaces.create, repo_id, body)
        return {"url": url, "name": repo_id, "id": hashlib.sha1(repo_id.encode()).hexdigest()[:24]}

    @router.delete("/api/repos/delete")
    async def _delete_repo(request: Request):
        body = await json_body(request)
        rtype = body.get("type") or "model"
        repo_id = f"{body.get('organization') or request.state.user}/{body.get('name')}"
        access.writable_repo(request, rtype, repo_id)
        if rtype == "space":
            await run_in_threadpool(spaces.delete, repo_id)
        await run_in_threadpool(store.delete, rtype, repo_id)
        return Response(status_code=200)

    @router.post("/api/repos/move")
    async def _move_repo(request: Request):
        body = await json_body(request)
        rtype = body.get("type") or "model"
        access.writable_repo(request, rtype, body.get("fromRepo", ""))
        split_id(body.get("toRepo", ""))
        if rtype == "space":
            await run_in_threadpool(spaces.delete, body["fromRepo"])
        await run_in_threadpool(store.move, rtype, body["fromRepo"], body["toRepo"])
        if rtype == "space":
            await run_in_threadpool(spaces.restart, body["toRepo"])
        return Response(status_code=200)

    @router.put("/api/{rtype:rtype}/{ns}/{name}/settings")
    async def _settings(request: Request, rtype: str, ns: str, name: str):
        body = await json_body(request)
        access.writable_repo(request, rtype, f"{ns}/{name}")
        changes = {}
        if "private" in body:
            changes["private"] = bool(body["private"])
        if "visibility" in body:
            changes["private"] = body["visibility"] != "public"
        if "gated" in body:
            changes["gated"] = body["gated"]
        store.update_meta(rtype, f"{ns}/{name}", **changes)
        return {}

    def repo_json(request: Request, rtype: str, repo_id: str, rev: str, expand: list[str]) -> dict:
        repo = access.visible_repo(request, rtype, repo_id)
        commit = store.resolve(rtype, repo_id, rev)
        files = sorted(commit.tree.items())
        ns, name = split_id(repo_id)
        card = _card_data(store, commit.tree.get("README.md"))
        info: dict[str, Any] = {
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "author": ns,
            "sha": commit.id,
            "private": bool(repo.meta.get("private")),
            "gated": repo.meta.get("gated", False),
            "disabled": False,
            "lastModified": iso(commit.date),
            "createdAt": repo.meta.get("createdAt"),
            "siblings": [{"rfilename": p, "size": m["size"], "blobId": m["oid"]} for p, m in files],
            "cardData": card,
            "tags": [],
            "likes": 0,
            "downloads": 0,
            "usedStorage": sum(m["size"] for _, m in files),
        }
        if rtype == "space":
            info["sdk"] = card.get("sdk") or repo.meta.get("sdk")
            info["subdomain"] = subdomain(repo_id)
            state = spaces.load(repo_id)
            port = (state.get("supervise") or {}).get("port")
            info["host"] = f"http://127.0.0.1:{port}" if port else f"https://{subdomain(repo_id)}.hf.space"
            info["runtime"] = spaces.runtime(repo_id, state)
        if expand:
            info = {k: v for k, v in info.items() if k in expand or k == "id"}
        return info

    @router.get("/api/{rtype:rtype}")
    def _list_repos(request: Request, rtype: str):
        q = request.query_params
        author, search = q.get("author"), (q.get("search") or "").lower()
        limit = int(q.get("limit") or 1000)
        out = []
        for repo in store.list(rtype):
            if author and repo.ns != author:
                continue
            if search and search not in repo.id.lower():
                continue
            try:
                out.append(repo_json(request, rtype, repo.id, "main", []))
            except StoreError:
                continue  # private to someone else, or deleted meanwhile
            if len(out) >= limit:
                break
        return out

    @router.get("/api/{rtype:rtype}/{ns}/{name}")
    def _repo_info(request: Request, rtype: str, ns: str, name: str):
        return repo_json(request, rtype, f"{ns}/{name}", "main", request.query_params.getlist("expand"))

    @router.get("/api/{rtype:rtype}/{ns}/{name}/revision/{rev:path}")
    def _repo_info_rev(request: Request, rtype: str, ns: str, name: str, rev: str):
        return repo_json(request, rtype, f"{ns}/{name}", rev, request.query_params.getlist("expand"))

    @router.get("/api/{rtype:rtype}/{ns}/{name}/refs")
    def _refs(request: Request, rtype: str, ns: str, name: str):
        access.visible_repo(request, rtype, f"{ns}/{name}")
        refs = store.refs(rtype, f"{ns}/{name}")
        branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": sha} for b, sha in sorted(refs.items())]
        return {"branches": branches, "converts": [], "tags": [], "pullRequests": []}

    @router.get("/api/{rtype:rtype}/{ns}/{name}/commits/{rev:path}")
    def _commits(request: Request, rtype: str, ns: str, name: str, rev: str):
        repo_id = f"{ns}/{name}"
        access.visible_repo(request, rtype, repo_id)
        page = max(0, int(request.query_params.get("p", 0) or 0))
        size = 500
        items = []
        for i, c in enumerate(store.history(rtype, repo_id, rev)):
            if i < page * size:
                continue
            if len(items) == size:
                nxt = f"{access.endpoint(request)}/api/{rtype}s/{repo_id}/commits/{quote(rev, safe='')}?p={page + 1}"
                return JSONResponse(items, headers={"Link": f'<{nxt}>; rel="next"'})
            items.append({"id": c.id, "title": c.title, "message": c.message, "date": iso(c.date),
                          "authors": [{"user": c.author}]})
        return items

    @router.post("/api/{rtype:rtype}/{ns}/{name}/branch/{branch:path}")
    async def _create_branch(request: Request, rtype: str, ns: str, name: str, branch: str):
        body = await json_body(request)
        repo_id = f"{ns}/{name}"
        access.writable_repo(request, rtype, repo_id)
        if branch in store.refs(rtype, repo_id):
            raise HTTPError(409, f"Reference already exists: refs/heads/{branch}")
        start = store.resolve(rtype, repo_id, body.get("startingPoint") or "main")
        await run_in_threadpool(store.set_branch, rtype, repo_id, branch, start.id)
        return {}

    @router.delete("/api/{rtype:rtype}/{ns}/{name}/branch/{branch:path}")
    async def _delete_branch(request: Request, rtype: str, ns: str, name: str, branch: str):
        access.writable_repo(request, rtype, f"{ns}/{name}")
        if branch == "main":
            raise HTTPError(403, "Cannot delete the default branch")
        await run_in_threadpool(store.set_branch, rtype, f"{ns}/{name}", branch, None)
        return {}

    @router.post("/api/{rtype:rtype}/{ns}/{name}/super-squash/{branch:path}")
    async def _squash(request: Request, rtype: str, ns: str, name: str, branch: str):
        body = await json_body(request)
        access.writable_repo(request, rtype, f"{ns}/{name}")
        c = await run_in_threadpool(store.squash, rtype, f"{ns}/{name}", branch,
                                    body.get("message") or "Super-squash", request.state.user)
        return {"commitId": c.id}

    @router.post("/api/{rtype:rtype}/{ns}/{name}/preupload/{rev:path}")
    async def _preupload(request: Request, rtype: str, ns: str, name: str, rev: str):
        body = await json_body(request)
        repo_id = f"{ns}/{name}"
        access.writable_repo(request, rtype, repo_id)
        try:
            tree = store.resolve(rtype, repo_id, rev).tree
        except RevisionNotFound:
            if request.query_params.get("create_pr"):
                tree = store.resolve(rtype, repo_id, "main").tree
            else:
                raise
        out = []
        for f in body.get("files") or []:
            current = tree.get(f["path"])
            out.append({"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                        "oid": current["oid"] if current else None})
        return {"files": out, "commitOid": None}

    @router.post("/api/{rtype:rtype}/{ns}/{name}/commit/{rev:path}")
    async def _commit(request: Request, rtype: str, ns: str, name: str, rev: str):
        repo_id = f"{ns}/{name}"
        access.writable_repo(request, rtype, repo_id)
        if request.query_params.get("create_pr") in ("1", "true", "True"):
            raise HTTPError(400, "Pull requests are not supported by the emulator")
        header, ops = _parse_ndjson(await request.body())
        quota_key = f"{rtype}/{repo_id}"
        slot = hub.commit_quota.reserve(quota_key)
        try:
            commit = await run_in_threadpool(
                store.commit, rtype, repo_id, ops, title=header.get("summary") or "Upload files",
                message=header.get("description") or "", author=request.state.user, branch=rev,
                parent_commit=header.get("parentCommit"))
        except ParentMismatch as exc:
            hub.faults.count("commit_412")
            if not hub.rules.current.count_412:
                hub.commit_quota.release(quota_key, slot)
            return error_response(412, str(exc))
        except BaseException:
            hub.commit_quota.release(quota_key, slot)
            raise
        hub.faults.count("commits")
        if rtype == "space":
            await run_in_threadpool(spaces.on_commit, repo_id)
        private = bool(store.get(rtype, repo_id).meta.get("private"))
        hub.webhooks.repo_updated(rtype, repo_id, private=private, old_sha=commit.parent, new_sha=commit.id,
                                  ref=f"refs/heads/{rev}")
        return {
            "commitOid": commit.id,
            "commitUrl": f"{access.endpoint(request)}/{PREFIX[rtype]}{repo_id}/commit/{commit.id}",
            "success": True,
            "hookOutput": "",
        }

    @router.post("/api/{rtype:rtype}/{ns}/{name}/duplicate")
    async def _duplicate(request: Request, rtype: str, ns: str, name: str):
        body = await json_body(request)
        src_id = f"{ns}/{name}"
        access.visible_repo(request, rtype, src_id)
        user = request.state.user
        if user is None:
            raise HTTPError(401, "You must be authenticated to duplicate a repo")
        dst_id = body.get("repository") or ""
        split_id(dst_id)
        url = f"{access.endpoint(request)}/{PREFIX[rtype]}{dst_id}"
        src_repo = store.get(rtype, src_id)
        if rtype == "space" and not store.exists(rtype, dst_id):
            spaces.check_new(dst_id, src_repo.meta.get("sdk"), body)
        head = store.resolve(rtype, src_id, "main")
        files = {p: store.read_blob(m["oid"]) for p, m in head.tree.items()}
        private = body.get("visibility", "private" if src_repo.meta.get("private") else "public") != "public"
        extra = {k: v for k, v in src_repo.meta.items() if k == "sdk"}
        try:
            await run_in_threadpool(store.create, rtype, dst_id, user, private, extra, files,
                                    f"Duplicate from {src_id}")
        except RepoExists as exc:
            return JSONResponse({"error": str(exc), "url": url}, status_code=409)
        if rtype == "space":
            src_state = spaces.load(src_id)
            variables = [{"key": k, **v} for k, v in (src_state.get("variables") or {}).items()]
            keys = {v["key"] for v in body.get("variables") or []}
            variables = [v for v in variables if v["key"] not in keys] + list(body.get("variables") or [])
            flavor = body.get("hardware") or "cpu-basic"
            # The source's sleep time goes with it, except onto cpu-basic, where none can be set.
            inherited = src_state.get("gcTimeout") if flavor != "cpu-basic" else None
            await run_in_threadpool(spaces.create, dst_id, {
                "hardware": flavor,
                "sleepTimeSeconds": body.get("sleepTimeSeconds", inherited),
                "secrets": body.get("secrets") or [],
                "variables": variables,
                "volumes": body.get("volumes") or src_state.get("volumes"),
            })
        return {"url": url, "filesCopyPending": False}

    return router


def _card_data(store, readme_meta: dict | None) -> dict:
    if not readme_meta:
        return {}
    try:
        text = store.read_blob(readme_meta["oid"]).decode("utf-8", errors="replace")
    except OSError:
        return {}
    if not text.startswith("---"):
        return {}
    parts = text.split("---", 2)
    if len(parts) < 3:
        return {}
    try:
        import yaml

        data = yaml.safe_load(parts[1])
    except Exception:
        return {}
    return data if isinstance(data, dict) else {}


def _parse_ndjson(raw: bytes) -> tuple[dict, list[Operation]]:
    header: dict | None = None
    ops: list[Operation] = []
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            key, value = item["key"], item["value"]
        except (ValueError, KeyError, TypeError):
            raise HTTPError(400, f"Malformed NDJSON commit payload at line {n}") from None
        if key == "header":
            header = value
        elif key == "file":
            try:
                content = base64.b64decode(value.get("content", ""), validate=True) \
                    if value.get("encoding", "base64") == "base64" else str(value.get("content", "")).encode()
            except (binascii.Error, ValueError):
                raise HTTPError(400, f"file {value.get('path')!r}: content is not valid base64") from None
            ops.append(Operation("add", _clean_path(value.get("path")), content))
        elif key == "deletedFile":
            ops.append(Operation("delete", _clean_path(value.get("path"))))
        elif key == "deletedFolder":
            ops.append(Operation("delete_folder", str(value.get("path") or "").strip("/")))
        elif key == "lfsFile":
            raise HTTPError(400, "LFS files are not supported by the emulator: it always answers uploadMode "
                                 "'regular' at preupload, so the client should never send lfsFile")
        else:
            raise HTTPError(400, f"Unsupported commit operation {key!r}")
    if header is None:
        raise HTTPError(400, "The commit payload has no header line")
    return header, ops


def _clean_path(path: Any) -> str:
    if not isinstance(path, str) or not path.strip("/"):
        raise HTTPError(400, f"Invalid path {path!r}")
    path = path.strip("/")
    if any(part in ("", ".", "..") for part in path.split("/")) or "\\" in path:
        raise HTTPError(400, f"Invalid path {path!r}")
    return path
