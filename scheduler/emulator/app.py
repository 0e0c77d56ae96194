"""HTTP routes of the emulated Hub, shaped after what the installed `huggingface_hub` client sends.

404s carry `X-Error-Code` (RepoNotFound / RevisionNotFound / EntryNotFound): on an http://
endpoint the client maps errors to its typed exceptions only through that header.
"""

from __future__ import annotations

import base64
import contextlib
import binascii
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any
from email.utils import formatdate
from urllib.parse import quote, unquote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor

from . import hardware
from .faults import FaultConfig, FaultMiddleware
from .hub import EmulatedHub
from .jobs import JobNotFound, sse
from .spaces import SpaceError, subdomain
from .storage import (
    EntryNotFound,
    Operation,
    ParentMismatch,
    RepoExists,
    RepoNotFound,
    RevisionNotFound,
    StoreError,
    atomic_write_json,
    iso,
    read_json,
    split_id,
)

PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
SDKS = {"gradio", "streamlit", "docker", "static"}


class _RepoTypeConvertor(Convertor):
    regex = "models|datasets|spaces"

    def convert(self, value: str) -> str:
        return value[:-1]

    def to_string(self, value: str) -> str:
        return value + "s"


class _UrlPrefixConvertor(Convertor):
    regex = "(?:datasets/|spaces/)?"

    def convert(self, value: str) -> str:
        return {"": "model", "datasets/": "dataset", "spaces/": "space"}[value]

    def to_string(self, value: str) -> str:
        return PREFIX[value]


register_url_convertor("rtype", _RepoTypeConvertor())
register_url_convertor("urlprefix", _UrlPrefixConvertor())


class HTTPError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class AuthMiddleware:
    """Resolves the bearer token to a user (scope state `user`); answers 401 when it must."""

    def __init__(self, app, hub: EmulatedHub):
        self.app = app
        self.hub = hub

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        auth = None
        for name, value in scope.get("headers") or []:
            if name == b"authorization":
                auth = value.decode("latin-1")
        user, ok = self.hub.user_for(auth)
        if not ok and not scope["path"].startswith(("/_emulator", "/api/telemetry")):
            message = "Invalid credentials in Authorization header" if auth else "Authorization header is required"
            return await _error(401, message)(scope, receive, send)
        scope.setdefault("state", {})["user"] = user
        return await self.app(scope, receive, send)


def _error(status: int, message: str, code: str | None = None, headers: dict | None = None) -> JSONResponse:
    h = dict(headers or {})
    if code:
        h["X-Error-Code"] = code
    h["X-Error-Message"] = message
    return JSONResponse({"error": message}, status_code=status, headers=h)


def create_app(data_dir: str | Path | None = None, *, hub: EmulatedHub | None = None, **options: Any) -> FastAPI:
    """Build the FastAPI app. Either pass an `EmulatedHub` or the data dir and its options
    (boot_delay, require_token, users, faults, supervise_repos, stop_grace, ...)."""
    if hub is None:
        if data_dir is None:
            raise ValueError("create_app needs data_dir or hub")
        hub = EmulatedHub(data_dir, **options)
    store, spaces, jobs = hub.store, hub.spaces, hub.jobs

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        hub.start()
        try:
            yield
        finally:
            await run_in_threadpool(hub.close)

    app = FastAPI(title="space-scheduler Hub emulator", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.hub = hub
    # Added last = outermost: faults act before authentication, as a flaky proxy would.
    app.add_middleware(AuthMiddleware, hub=hub)
    app.add_middleware(FaultMiddleware, injector=hub.faults)

    # -- plumbing ---------------------------------------------------------------------------------
    @app.exception_handler(HTTPError)
    async def _http_error(request: Request, exc: HTTPError):
        return _error(exc.status, exc.message, exc.code, exc.headers)

    @app.exception_handler(StoreError)
    async def _store_error(request: Request, exc: StoreError):
        return _error(exc.status, str(exc), exc.code)

    @app.exception_handler(SpaceError)
    async def _space_error(request: Request, exc: SpaceError):
        return _error(exc.status, str(exc))

    def endpoint(request: Request) -> str:
        return hub.base_url or str(request.base_url).rstrip("/")

    def visible_repo(request: Request, rtype: str, repo_id: str):
        repo = store.get(rtype, repo_id)
        user = request.state.user
        if repo.meta.get("private") and hub.users and user != repo.meta.get("owner"):
            raise RepoNotFound(f"Repository Not Found for url: {rtype}s/{repo_id}")
        if repo.meta.get("private") and not hub.users and user is None:
            raise RepoNotFound(f"Repository Not Found for url: {rtype}s/{repo_id}")
        return repo

    def writable_repo(request: Request, rtype: str, repo_id: str):
        repo = visible_repo(request, rtype, repo_id)
        user = request.state.user
        if user is None:
            raise HTTPError(401, "You must be authenticated to write to this repo")
        if hub.users and user != repo.meta.get("owner"):
            raise HTTPError(403, f"You don't have the rights to write to {repo_id}")
        return repo

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

    # -- emulator control --------------------------------------------------------------------------
    @app.get("/_emulator/health")
    def _health():
        return {"ok": True, "time": time.time()}

    @app.get("/_emulator/config")
    def _config():
        return hub.summary()

    @app.get("/_emulator/faults")
    def _faults_get():
        return hub.faults.config.to_dict()

    @app.post("/_emulator/faults")
    async def _faults_set(request: Request):
        body = await json_body(request)
        base = FaultConfig().to_dict() if body.pop("reset", False) else hub.faults.config.to_dict()
        try:
            cfg = FaultConfig.from_dict({**base, **body})
        except (TypeError, ValueError, re.error) as exc:
            raise HTTPError(400, str(exc)) from None
        hub.faults.configure(cfg)
        return cfg.to_dict()

    @app.get("/_emulator/stats")
    def _stats():
        return dict(hub.faults.stats)

    @app.get("/_emulator/spaces/{ns}/{name}/billing")
    def _billing(ns: str, name: str):
        return spaces.billing(f"{ns}/{name}")

    @app.post("/_emulator/spaces/{ns}/{name}/supervise")
    async def _supervise(request: Request, ns: str, name: str):
        body = await json_body(request)
        return await run_in_threadpool(spaces.supervise, f"{ns}/{name}", body)

    @app.delete("/_emulator/spaces/{ns}/{name}/supervise")
    async def _unsupervise(ns: str, name: str):
        return await run_in_threadpool(spaces.supervise, f"{ns}/{name}", None)

    # -- misc Hub routes ---------------------------------------------------------------------------
    @app.api_route("/api/telemetry/{path:path}", methods=["HEAD", "GET", "POST"])
    def _telemetry(path: str):
        return Response(status_code=200)

    @app.post("/api/validate-yaml")
    def _validate_yaml():
        return {"errors": [], "warnings": []}

    @app.get("/api/whoami-v2")
    def _whoami(request: Request):
        user = request.state.user
        if user is None:
            raise HTTPError(401, "Invalid credentials in Authorization header")
        return {
            "type": "user",
            "id": hashlib.sha1(user.encode()).hexdigest()[:24],
            "name": user,
            "fullname": user.capitalize(),
            "email": f"{user}@example.invalid",
            "emailVerified": True,
            "avatarUrl": f"{endpoint(request)}/avatars/{user}.svg",
            "isPro": False,
            "canPay": True,
            "orgs": [],
            "auth": {"type": "access_token", "accessToken": {"displayName": "emulator", "role": "write"}},
        }

    # -- repos ---------------------------------------------------------------------------------------
    @app.post("/api/repos/create")
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
        url = f"{endpoint(request)}/{PREFIX[rtype]}{repo_id}"
        private = body.get("visibility", "private" if body.get("private") else "public") != "public"
        extra: dict[str, Any] = {}
        if rtype == "space":
            sdk = body.get("sdk")
            if sdk not in SDKS:
                raise HTTPError(400, f"sdk must be one of {sorted(SDKS)}")
            extra["sdk"] = sdk
            if body.get("hardware") and body["hardware"] not in hardware.FLAVORS:
                raise HTTPError(400, f"Invalid hardware flavor {body['hardware']!r}")
        try:
            await run_in_threadpool(store.create, rtype, repo_id, user, private, extra)
        except RepoExists as exc:
            return JSONResponse({"error": str(exc), "url": url}, status_code=409)
        if rtype == "space":
            await run_in_threadpool(spaces.create, repo_id, body)
        return {"url": url, "name": repo_id, "id": hashlib.sha1(repo_id.encode()).hexdigest()[:24]}

    @app.delete("/api/repos/delete")
    async def _delete_repo(request: Request):
        body = await json_body(request)
        rtype = body.get("type") or "model"
        repo_id = f"{body.get('organization') or request.state.user}/{body.get('name')}"
        writable_repo(request, rtype, repo_id)
        if rtype == "space":
            await run_in_threadpool(spaces.delete, repo_id)
        await run_in_threadpool(store.delete, rtype, repo_id)
        return Response(status_code=200)

    @app.post("/api/repos/move")
    async def _move_repo(request: Request):
        body = await json_body(request)
        rtype = body.get("type") or "model"
        writable_repo(request, rtype, body.get("fromRepo", ""))
        split_id(body.get("toRepo", ""))
        if rtype == "space":
            await run_in_threadpool(spaces.delete, body["fromRepo"])
        await run_in_threadpool(store.move, rtype, body["fromRepo"], body["toRepo"])
        if rtype == "space":
            await run_in_threadpool(spaces.restart, body["toRepo"])
        return Response(status_code=200)

    @app.put("/api/{rtype:rtype}/{ns}/{name}/settings")
    async def _settings(request: Request, rtype: str, ns: str, name: str):
        body = await json_body(request)
        writable_repo(request, rtype, f"{ns}/{name}")
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
        repo = visible_repo(request, rtype, repo_id)
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

    @app.get("/api/{rtype:rtype}")
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

    @app.get("/api/{rtype:rtype}/{ns}/{name}")
    def _repo_info(request: Request, rtype: str, ns: str, name: str):
        return repo_json(request, rtype, f"{ns}/{name}", "main", request.query_params.getlist("expand"))

    @app.get("/api/{rtype:rtype}/{ns}/{name}/revision/{rev:path}")
    def _repo_info_rev(request: Request, rtype: str, ns: str, name: str, rev: str):
        return repo_json(request, rtype, f"{ns}/{name}", rev, request.query_params.getlist("expand"))

    @app.get("/api/{rtype:rtype}/{ns}/{name}/refs")
    def _refs(request: Request, rtype: str, ns: str, name: str):
        visible_repo(request, rtype, f"{ns}/{name}")
        refs = store.refs(rtype, f"{ns}/{name}")
        branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": sha} for b, sha in sorted(refs.items())]
        return {"branches": branches, "converts": [], "tags": [], "pullRequests": []}

    @app.get("/api/{rtype:rtype}/{ns}/{name}/commits/{rev:path}")
    def _commits(request: Request, rtype: str, ns: str, name: str, rev: str):
        repo_id = f"{ns}/{name}"
        visible_repo(request, rtype, repo_id)
        page = max(0, int(request.query_params.get("p", 0) or 0))
        size = 500
        items = []
        for i, c in enumerate(store.history(rtype, repo_id, rev)):
            if i < page * size:
                continue
            if len(items) == size:
                nxt = f"{endpoint(request)}/api/{rtype}s/{repo_id}/commits/{quote(rev, safe='')}?p={page + 1}"
                return JSONResponse(items, headers={"Link": f'<{nxt}>; rel="next"'})
            items.append({"id": c.id, "title": c.title, "message": c.message, "date": iso(c.date),
                          "authors": [{"user": c.author}]})
        return items

    @app.post("/api/{rtype:rtype}/{ns}/{name}/branch/{branch:path}")
    async def _create_branch(request: Request, rtype: str, ns: str, name: str, branch: str):
        body = await json_body(request)
        repo_id = f"{ns}/{name}"
        writable_repo(request, rtype, repo_id)
        if branch in store.refs(rtype, repo_id):
            raise HTTPError(409, f"Reference already exists: refs/heads/{branch}")
        start = store.resolve(rtype, repo_id, body.get("startingPoint") or "main")
        await run_in_threadpool(store.set_branch, rtype, repo_id, branch, start.id)
        return {}

    @app.delete("/api/{rtype:rtype}/{ns}/{name}/branch/{branch:path}")
    async def _delete_branch(request: Request, rtype: str, ns: str, name: str, branch: str):
        writable_repo(request, rtype, f"{ns}/{name}")
        if branch == "main":
            raise HTTPError(403, "Cannot delete the default branch")
        await run_in_threadpool(store.set_branch, rtype, f"{ns}/{name}", branch, None)
        return {}

    @app.post("/api/{rtype:rtype}/{ns}/{name}/super-squash/{branch:path}")
    async def _squash(request: Request, rtype: str, ns: str, name: str, branch: str):
        body = await json_body(request)
        writable_repo(request, rtype, f"{ns}/{name}")
        c = await run_in_threadpool(store.squash, rtype, f"{ns}/{name}", branch,
                                    body.get("message") or "Super-squash", request.state.user)
        return {"commitId": c.id}

    @app.post("/api/{rtype:rtype}/{ns}/{name}/preupload/{rev:path}")
    async def _preupload(request: Request, rtype: str, ns: str, name: str, rev: str):
        body = await json_body(request)
        repo_id = f"{ns}/{name}"
        writable_repo(request, rtype, repo_id)
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

    @app.post("/api/{rtype:rtype}/{ns}/{name}/commit/{rev:path}")
    async def _commit(request: Request, rtype: str, ns: str, name: str, rev: str):
        repo_id = f"{ns}/{name}"
        writable_repo(request, rtype, repo_id)
        if request.query_params.get("create_pr") in ("1", "true", "True"):
            raise HTTPError(400, "Pull requests are not supported by the emulator")
        header, ops = _parse_ndjson(await request.body())
        try:
            commit = await run_in_threadpool(
                store.commit, rtype, repo_id, ops, title=header.get("summary") or "Upload files",
                message=header.get("description") or "", author=request.state.user, branch=rev,
                parent_commit=header.get("parentCommit"))
        except ParentMismatch as exc:
            hub.faults.count("commit_412")
            return _error(412, str(exc))
        hub.faults.count("commits")
        if rtype == "space":
            await run_in_threadpool(spaces.on_commit, repo_id)
        return {
            "commitOid": commit.id,
            "commitUrl": f"{endpoint(request)}/{PREFIX[rtype]}{repo_id}/commit/{commit.id}",
            "success": True,
            "hookOutput": "",
        }

    @app.post("/api/{rtype:rtype}/{ns}/{name}/duplicate")
    async def _duplicate(request: Request, rtype: str, ns: str, name: str):
        body = await json_body(request)
        src_id = f"{ns}/{name}"
        visible_repo(request, rtype, src_id)
        user = request.state.user
        if user is None:
            raise HTTPError(401, "You must be authenticated to duplicate a repo")
        dst_id = body.get("repository") or ""
        split_id(dst_id)
        url = f"{endpoint(request)}/{PREFIX[rtype]}{dst_id}"
        src_repo = store.get(rtype, src_id)
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
            await run_in_threadpool(spaces.create, dst_id, {
                "hardware": body.get("hardware") or "cpu-basic",
                "sleepTimeSeconds": body.get("sleepTimeSeconds", src_state.get("gcTimeout")),
                "secrets": body.get("secrets") or [],
                "variables": variables,
                "volumes": body.get("volumes") or src_state.get("volumes"),
            })
        return {"url": url, "filesCopyPending": False}

    # tree / paths-info -------------------------------------------------------------------------------
    def _entries(tree: dict, base: str, recursive: bool) -> list[dict]:
        base = base.strip("/")
        prefix = base + "/" if base else ""
        if base and base in tree:
            m = tree[base]
            return [{"type": "file", "path": base, "size": m["size"], "oid": m["oid"]}]
        files = {p: m for p, m in tree.items() if p.startswith(prefix)}
        if base and not files:
            raise EntryNotFound(f"{base} does not exist")
        out: dict[str, dict] = {}
        for p, m in sorted(files.items()):
            rel = p[len(prefix):]
            parts = rel.split("/")
            for depth in range(1, len(parts)):
                folder = prefix + "/".join(parts[:depth])
                if folder not in out and (recursive or depth == 1):
                    out[folder] = {"type": "directory", "path": folder, "size": 0, "oid": _tree_oid(tree, folder)}
            if recursive or len(parts) == 1:
                out[p] = {"type": "file", "path": p, "size": m["size"], "oid": m["oid"]}
        return sorted(out.values(), key=lambda e: (e["type"] != "directory", e["path"]))

    @app.get("/api/{rtype:rtype}/{ns}/{name}/tree/{rest:path}")
    def _tree(request: Request, rtype: str, ns: str, name: str, rest: str):
        repo_id = f"{ns}/{name}"
        visible_repo(request, rtype, repo_id)
        rev, path = raw_tail(request, "/tree/")
        commit = store.resolve(rtype, repo_id, rev)
        recursive = request.query_params.get("recursive", "").lower() in ("1", "true")
        return _entries(commit.tree, path, recursive)

    @app.post("/api/{rtype:rtype}/{ns}/{name}/paths-info/{rev:path}")
    async def _paths_info(request: Request, rtype: str, ns: str, name: str, rev: str):
        repo_id = f"{ns}/{name}"
        visible_repo(request, rtype, repo_id)
        form = await request.form()
        commit = store.resolve(rtype, repo_id, rev)
        out = []
        for path in form.getlist("paths"):
            path = str(path).strip("/")
            if path in commit.tree:
                m = commit.tree[path]
                out.append({"type": "file", "path": path, "size": m["size"], "oid": m["oid"]})
            elif any(p.startswith(path + "/") for p in commit.tree):
                out.append({"type": "directory", "path": path, "size": 0, "oid": _tree_oid(commit.tree, path)})
        return out

    # -- file downloads ---------------------------------------------------------------------------------
    @app.api_route("/{rtype:urlprefix}{ns}/{name}/resolve/{rest:path}", methods=["GET", "HEAD"])
    def _resolve(request: Request, rtype: str, ns: str, name: str, rest: str):
        repo_id = f"{ns}/{name}"
        visible_repo(request, rtype, repo_id)
        rev, path = raw_tail(request, "/resolve/")
        commit = store.resolve(rtype, repo_id, rev)
        meta = commit.tree.get(path)
        if meta is None:
            return _error(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.id})
        headers = {"X-Repo-Commit": commit.id, "ETag": f'"{meta["oid"]}"', "Content-Length": str(meta["size"]),
                   "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if request.method == "HEAD":
            return Response(status_code=200, headers=headers)
        data = store.read_blob(meta["oid"])
        rng = request.headers.get("range")
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
        if m:
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else len(data) - 1
            chunk = data[start:end + 1]
            headers.update({"Content-Length": str(len(chunk)),
                            "Content-Range": f"bytes {start}-{start + len(chunk) - 1}/{len(data)}"})
            return Response(chunk, status_code=206, headers=headers)
        return Response(data, status_code=200, headers=headers)

    # -- Spaces ---------------------------------------------------------------------------------------
    @app.get("/api/spaces/hardware")
    def _spaces_hardware():
        return hardware.hardware_list(jobs=False)

    def space_for_write(request: Request, ns: str, name: str) -> str:
        writable_repo(request, "space", f"{ns}/{name}")
        return f"{ns}/{name}"

    @app.get("/api/spaces/{ns}/{name}/runtime")
    def _runtime(request: Request, ns: str, name: str):
        visible_repo(request, "space", f"{ns}/{name}")
        return spaces.runtime(f"{ns}/{name}")

    @app.post("/api/spaces/{ns}/{name}/hardware")
    async def _hardware(request: Request, ns: str, name: str):
        body = await json_body(request)
        sid = space_for_write(request, ns, name)
        if not body.get("flavor"):
            raise HTTPError(400, "flavor is required")
        return await run_in_threadpool(spaces.request_hardware, sid, body["flavor"], body.get("sleepTimeSeconds"))

    @app.post("/api/spaces/{ns}/{name}/sleeptime")
    async def _sleeptime(request: Request, ns: str, name: str):
        body = await json_body(request)
        sid = space_for_write(request, ns, name)
        if not isinstance(body.get("seconds"), int):
            raise HTTPError(400, "seconds must be an integer")
        return await run_in_threadpool(spaces.set_sleep_time, sid, body["seconds"])

    @app.post("/api/spaces/{ns}/{name}/pause")
    async def _pause(request: Request, ns: str, name: str):
        return await run_in_threadpool(spaces.pause, space_for_write(request, ns, name))

    @app.post("/api/spaces/{ns}/{name}/restart")
    async def _restart(request: Request, ns: str, name: str):
        factory = request.query_params.get("factory") in ("true", "1")
        return await run_in_threadpool(spaces.restart, space_for_write(request, ns, name), factory)

    @app.post("/api/spaces/{ns}/{name}/dev-mode")
    async def _dev_mode(request: Request, ns: str, name: str):
        body = await json_body(request)
        return await run_in_threadpool(spaces.set_dev_mode, space_for_write(request, ns, name),
                                       bool(body.get("enabled")))

    def _kv_public(items: dict, with_value: bool) -> dict:
        return {k: ({"value": v["value"]} if with_value else {}) | {"description": v.get("description"),
                                                                    "updatedAt": v.get("updatedAt")}
                for k, v in items.items()}

    async def _kv_change(request: Request, ns: str, name: str, kind: str, delete: bool) -> dict:
        body = await json_body(request)
        sid = space_for_write(request, ns, name)
        key = body.get("key")
        if not key or not isinstance(key, str):
            raise HTTPError(400, "key is required")

        def apply() -> dict:
            with spaces._lock:
                state = spaces.load(sid)
                items = state.setdefault(kind, {})
                if delete:
                    items.pop(key, None)
                else:
                    items[key] = {"value": str(body.get("value", "")), "description": body.get("description"),
                                  "updatedAt": iso(time.time())}
                spaces._save(sid, state)
                return items

        items = await run_in_threadpool(apply)
        return _kv_public(items, with_value=True) if kind == "variables" else {}

    @app.get("/api/spaces/{ns}/{name}/secrets")
    def _secrets_get(request: Request, ns: str, name: str):
        space_for_write(request, ns, name)
        return _kv_public(spaces.load(f"{ns}/{name}").get("secrets") or {}, with_value=False)

    @app.post("/api/spaces/{ns}/{name}/secrets")
    async def _secrets_add(request: Request, ns: str, name: str):
        return await _kv_change(request, ns, name, "secrets", delete=False)

    @app.delete("/api/spaces/{ns}/{name}/secrets")
    async def _secrets_delete(request: Request, ns: str, name: str):
        return await _kv_change(request, ns, name, "secrets", delete=True)

    @app.get("/api/spaces/{ns}/{name}/variables")
    def _variables_get(request: Request, ns: str, name: str):
        visible_repo(request, "space", f"{ns}/{name}")
        return _kv_public(spaces.load(f"{ns}/{name}").get("variables") or {}, with_value=True)

    @app.post("/api/spaces/{ns}/{name}/variables")
    async def _variables_add(request: Request, ns: str, name: str):
        return await _kv_change(request, ns, name, "variables", delete=False)

    @app.delete("/api/spaces/{ns}/{name}/variables")
    async def _variables_delete(request: Request, ns: str, name: str):
        return await _kv_change(request, ns, name, "variables", delete=True)

    @app.put("/api/spaces/{ns}/{name}/volumes")
    async def _volumes_set(request: Request, ns: str, name: str):
        body = await json_body(request)
        sid = space_for_write(request, ns, name)
        volumes = body.get("volumes")
        if not isinstance(volumes, list) or not all(isinstance(v, dict) and v.get("source") and v.get("mountPath")
                                                    for v in volumes):
            raise HTTPError(400, "volumes must be a list of {type, source, mountPath, ...}")

        def apply():
            with spaces._lock:
                state = spaces.load(sid)
                state["volumes"] = volumes
                spaces._save(sid, state)

        await run_in_threadpool(apply)
        return {}

    @app.delete("/api/spaces/{ns}/{name}/volumes")
    async def _volumes_delete(request: Request, ns: str, name: str):
        sid = space_for_write(request, ns, name)

        def apply():
            with spaces._lock:
                state = spaces.load(sid)
                state["volumes"] = None
                spaces._save(sid, state)

        await run_in_threadpool(apply)
        return {}

    @app.get("/api/spaces/{ns}/{name}/logs/{kind}")
    def _space_logs(request: Request, ns: str, name: str, kind: str):
        sid = f"{ns}/{name}"
        visible_repo(request, "space", sid)
        now = iso(time.time())
        if kind == "build":
            events = [{"data": f"{e['time']} {e['stage']} hardware={e['hardware']} requested={e['requested']}\n",
                       "timestamp": e["time"]} for e in spaces.load(sid).get("timeline", [])]
        elif kind == "run":
            try:
                text = spaces.log_path(sid).read_text(errors="replace")
            except FileNotFoundError:
                text = ""
            events = [{"data": line + "\n", "timestamp": now} for line in text.splitlines()]
        else:
            raise HTTPError(404, f"Unknown log kind {kind!r}")
        return _sse_response(events)

    # -- discussions (opening one and reading it back; no comments, PRs or status changes) ------------
    def discussions_file(rtype: str, repo_id: str) -> Path:
        return hub.data_dir / "discussions" / f"{rtype}--{repo_id.replace('/', '--')}.json"

    def discussion_json(rtype: str, repo_id: str, item: dict) -> dict:
        return {**item, "repo": {"name": repo_id, "type": rtype}, "isPullRequest": False, "status": "open",
                "changes": {}, "filesWithConflicts": []}

    @app.post("/api/{rtype:rtype}/{ns}/{name}/discussions")
    async def _discussion_create(request: Request, rtype: str, ns: str, name: str):
        body = await json_body(request)
        repo_id = f"{ns}/{name}"
        visible_repo(request, rtype, repo_id)
        if request.state.user is None:
            raise HTTPError(401, "You must be authenticated to open a discussion")
        title = str(body.get("title") or "").strip()
        if not title or body.get("pullRequest"):
            raise HTTPError(400, "a title is required (pull requests are not emulated)")

        def apply() -> int:
            path = discussions_file(rtype, repo_id)
            with hub.store.lock(rtype, repo_id):
                items = read_json(path) or []
                now = iso(time.time())
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
        return {"num": num, "url": f"{endpoint(request)}/{PREFIX[rtype]}{repo_id}/discussions/{num}"}

    @app.get("/api/{rtype:rtype}/{ns}/{name}/discussions/{num}")
    def _discussion_get(request: Request, rtype: str, ns: str, name: str, num: int):
        repo_id = f"{ns}/{name}"
        visible_repo(request, rtype, repo_id)
        for item in read_json(discussions_file(rtype, repo_id)) or []:
            if item["num"] == num:
                return discussion_json(rtype, repo_id, item)
        raise HTTPError(404, f"Discussion {num} not found")

    # -- Jobs -----------------------------------------------------------------------------------------
    @app.get("/api/jobs/hardware")
    def _jobs_hardware():
        return hardware.hardware_list(jobs=True)

    def job_ns(request: Request, ns: str) -> str:
        user = request.state.user
        if user is None:
            raise HTTPError(401, "You must be authenticated to use Jobs")
        if hub.users and ns != user:
            raise HTTPError(403, f"You cannot run jobs in {ns!r}")
        return ns

    def job_or_404(ns: str, job_id: str) -> dict:
        try:
            return jobs.get(ns, job_id)
        except JobNotFound:
            raise HTTPError(404, f"Job {job_id} not found") from None

    @app.post("/api/jobs/{ns}")
    async def _run_job(request: Request, ns: str):
        body = await json_body(request)
        job_ns(request, ns)
        if body.get("flavor") and body["flavor"] not in hardware.FLAVORS:
            raise HTTPError(400, f"Invalid flavor {body['flavor']!r}")
        try:
            return await run_in_threadpool(jobs.create, ns, body, request.state.user)
        except ValueError as exc:
            raise HTTPError(400, str(exc)) from None

    @app.get("/api/jobs/{ns}")
    def _list_jobs(request: Request, ns: str):
        job_ns(request, ns)
        return jobs.list(ns, request.query_params.getlist("stage"), request.query_params.getlist("label"))

    @app.get("/api/jobs/{ns}/{job_id}")
    def _inspect_job(request: Request, ns: str, job_id: str):
        job_ns(request, ns)
        return jobs.public(job_or_404(ns, job_id))

    @app.post("/api/jobs/{ns}/{job_id}/cancel")
    async def _cancel_job(request: Request, ns: str, job_id: str):
        job_ns(request, ns)
        job_or_404(ns, job_id)
        return await run_in_threadpool(jobs.cancel, ns, job_id)

    @app.get("/api/jobs/{ns}/{job_id}/logs")
    def _job_logs(request: Request, ns: str, job_id: str):
        job_ns(request, ns)
        job_or_404(ns, job_id)
        tail = request.query_params.get("tail")
        return _sse_response(jobs.log_events(job_id, int(tail) if tail else None))

    return app


def _sse_response(events: list[dict]) -> Response:
    return Response(sse(events), media_type="text/event-stream", headers={"Date": formatdate(usegmt=True)})


def _tree_oid(tree: dict, folder: str) -> str:
    prefix = folder + "/"
    listing = "".join(f"{p}\0{m['oid']}\n" for p, m in sorted(tree.items()) if p.startswith(prefix))
    return hashlib.sha1(listing.encode()).hexdigest()


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
