"""Space routes: hardware, runtime, sleep time, pause, restart, dev mode, secrets, variables, volumes,
logs, and the Space's page (a visit, which wakes a sleeping Space)."""

from __future__ import annotations

import html

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from .. import hardware
from ..hub import EmulatedHub
from ..storage import iso
from .common import Access, HTTPError, json_body, sse_response


def build_router(hub: EmulatedHub) -> APIRouter:
    router = APIRouter()
    access = Access(hub)
    spaces = hub.spaces

    @router.get("/api/spaces/hardware")
    def _spaces_hardware():
        return hardware.hardware_list(jobs=False)

    @router.get("/spaces/{ns}/{name}")
    async def _page(request: Request, ns: str, name: str):
        """The Space's page on the Hub: opening it is a visit."""
        sid = f"{ns}/{name}"
        access.visible_repo(request, "space", sid)
        runtime = await run_in_threadpool(spaces.visit, sid)
        return HTMLResponse(f"<!doctype html><title>{html.escape(sid)}</title>"
                            f"<h1>{html.escape(sid)}</h1><p>{html.escape(runtime['stage'])}</p>")

    @router.get("/api/spaces/{ns}/{name}/runtime")
    def _runtime(request: Request, ns: str, name: str):
        access.visible_repo(request, "space", f"{ns}/{name}")
        return spaces.runtime(f"{ns}/{name}")

    @router.post("/api/spaces/{ns}/{name}/hardware")
    async def _hardware(request: Request, ns: str, name: str):
        body = await json_body(request)
        sid = access.space_for_write(request, ns, name)
        if not body.get("flavor"):
            raise HTTPError(400, "flavor is required")
        return await run_in_threadpool(spaces.request_hardware, sid, body["flavor"], body.get("sleepTimeSeconds"))

    @router.post("/api/spaces/{ns}/{name}/sleeptime")
    async def _sleeptime(request: Request, ns: str, name: str):
        body = await json_body(request)
        sid = access.space_for_write(request, ns, name)
        if not isinstance(body.get("seconds"), int):
            raise HTTPError(400, "seconds must be an integer")
        return await run_in_threadpool(spaces.set_sleep_time, sid, body["seconds"])

    @router.post("/api/spaces/{ns}/{name}/pause")
    async def _pause(request: Request, ns: str, name: str):
        return await run_in_threadpool(spaces.pause, access.space_for_write(request, ns, name))

    @router.post("/api/spaces/{ns}/{name}/restart")
    async def _restart(request: Request, ns: str, name: str):
        factory = request.query_params.get("factory") in ("true", "1")
        return await run_in_threadpool(spaces.restart, access.space_for_write(request, ns, name), factory)

    @router.post("/api/spaces/{ns}/{name}/dev-mode")
    async def _dev_mode(request: Request, ns: str, name: str):
        body = await json_body(request)
        return await run_in_threadpool(spaces.set_dev_mode, access.space_for_write(request, ns, name),
                                       bool(body.get("enabled")))

    for kind in ("secrets", "variables"):
        _add_key_value_routes(router, hub, access, kind)

    @router.put("/api/spaces/{ns}/{name}/volumes")
    async def _volumes_set(request: Request, ns: str, name: str):
        body = await json_body(request)
        sid = access.space_for_write(request, ns, name)
        volumes = body.get("volumes")
        if not isinstance(volumes, list) or not all(isinstance(v, dict) and v.get("source") and v.get("mountPath")
                                                    for v in volumes):
            raise HTTPError(400, "volumes must be a list of {type, source, mountPath, ...}")
        await run_in_threadpool(spaces.set_volumes, sid, volumes)
        return {}

    @router.delete("/api/spaces/{ns}/{name}/volumes")
    async def _volumes_delete(request: Request, ns: str, name: str):
        sid = access.space_for_write(request, ns, name)
        await run_in_threadpool(spaces.set_volumes, sid, None)
        return {}

    @router.get("/api/spaces/{ns}/{name}/logs/{kind}")
    def _space_logs(request: Request, ns: str, name: str, kind: str):
        sid = f"{ns}/{name}"
        access.visible_repo(request, "space", sid)
        now = iso(hub.clock.now())
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
        return sse_response(events)

    return router


def _add_key_value_routes(router: APIRouter, hub: EmulatedHub, access: Access, kind: str) -> None:
    """GET, POST and DELETE `/api/spaces/{ns}/{name}/<kind>` for "secrets" or "variables".

    Secret values are write-only over HTTP: listing secrets takes write access and shows no values,
    while variables are readable, values included, by whoever can see the Space.
    """
    spaces = hub.spaces
    secret = kind == "secrets"
    path = f"/api/spaces/{{ns}}/{{name}}/{kind}"

    @router.get(path)
    def _list(request: Request, ns: str, name: str):
        if secret:
            access.space_for_write(request, ns, name)
        else:
            access.visible_repo(request, "space", f"{ns}/{name}")
        return _kv_public(spaces.load(f"{ns}/{name}").get(kind) or {}, with_value=not secret)

    async def change(request: Request, ns: str, name: str, delete: bool) -> dict:
        body = await json_body(request)
        sid = access.space_for_write(request, ns, name)
        key = body.get("key")
        if not key or not isinstance(key, str):
            raise HTTPError(400, "key is required")
        entry = None if delete else {"value": str(body.get("value", "")), "description": body.get("description"),
                                     "updatedAt": iso(hub.clock.now())}
        items = await run_in_threadpool(spaces.set_key, sid, kind, key, entry)
        return {} if secret else _kv_public(items, with_value=True)

    @router.post(path)
    async def _add(request: Request, ns: str, name: str):
        return await change(request, ns, name, delete=False)

    @router.delete(path)
    async def _delete(request: Request, ns: str, name: str):
        return await change(request, ns, name, delete=True)


def _kv_public(items: dict, with_value: bool) -> dict:
    return {k: ({"value": v["value"]} if with_value else {}) | {"description": v.get("description"),
                                                                "updatedAt": v.get("updatedAt")}
            for k, v in items.items()}
