"""File routes: tree listings, paths-info and downloads (`resolve`)."""

from __future__ import annotations

import hashlib
import re

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..hub import EmulatedHub
from ..storage import EntryNotFound
from .common import Access, error_response, raw_tail


def build_router(hub: EmulatedHub) -> APIRouter:
    router = APIRouter()
    access = Access(hub)
    store = hub.store

    @router.get("/api/{rtype:rtype}/{ns}/{name}/tree/{rest:path}")
    def _tree(request: Request, rtype: str, ns: str, name: str, rest: str):
        repo_id = f"{ns}/{name}"
        access.visible_repo(request, rtype, repo_id)
        rev, path = raw_tail(request, "/tree/")
        commit = store.resolve(rtype, repo_id, rev)
        recursive = request.query_params.get("recursive", "").lower() in ("1", "true")
        return _entries(commit.tree, path, recursive)

    @router.post("/api/{rtype:rtype}/{ns}/{name}/paths-info/{rev:path}")
    async def _paths_info(request: Request, rtype: str, ns: str, name: str, rev: str):
        repo_id = f"{ns}/{name}"
        access.visible_repo(request, rtype, repo_id)
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
    @router.api_route("/{rtype:urlprefix}{ns}/{name}/resolve/{rest:path}", methods=["GET", "HEAD"])
    def _resolve(request: Request, rtype: str, ns: str, name: str, rest: str):
        repo_id = f"{ns}/{name}"
        access.visible_repo(request, rtype, repo_id)
        rev, path = raw_tail(request, "/resolve/")
        commit = store.resolve(rtype, repo_id, rev)
        meta = commit.tree.get(path)
        if meta is None:
            return error_response(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.id})
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

    return router


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


def _tree_oid(tree: dict, folder: str) -> str:
    prefix = folder + "/"
    listing = "".join(f"{p}\0{m['oid']}\n" for p, m in sorted(tree.items()) if p.startswith(prefix))
    return hashlib.sha1(listing.encode()).hexdigest()

