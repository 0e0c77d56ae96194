"""The emulator's own `/_emulator/*` control routes, and the small Hub routes that only answer the client."""

from __future__ import annotations

import hashlib
import re
import time

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ..faults import FaultConfig
from ..hub import EmulatedHub
from .common import Access, HTTPError, json_body


def build_router(hub: EmulatedHub) -> APIRouter:
    router = APIRouter()
    access = Access(hub)
    spaces = hub.spaces

    @router.get("/_emulator/health")
    def _health():
        return {"ok": True, "time": time.time()}

    @router.get("/_emulator/config")
    def _config():
        return hub.summary()

    @router.get("/_emulator/faults")
    def _faults_get():
        return hub.faults.config.to_dict()

    @router.post("/_emulator/faults")
    async def _faults_set(request: Request):
        body = await json_body(request)
        base = FaultConfig().to_dict() if body.pop("reset", False) else hub.faults.config.to_dict()
        try:
            cfg = FaultConfig.from_dict({**base, **body})
        except (TypeError, ValueError, re.error) as exc:
            raise HTTPError(400, str(exc)) from None
        hub.faults.configure(cfg)
        return cfg.to_dict()

    @router.get("/_emulator/stats")
    def _stats():
        return dict(hub.faults.stats)

    @router.get("/_emulator/spaces/{ns}/{name}/billing")
    def _billing(ns: str, name: str):
        return spaces.billing(f"{ns}/{name}")

    @router.post("/_emulator/spaces/{ns}/{name}/supervise")
    async def _supervise(request: Request, ns: str, name: str):
        body = await json_body(request)
        return await run_in_threadpool(spaces.supervise, f"{ns}/{name}", body)

    @router.delete("/_emulator/spaces/{ns}/{name}/supervise")
    async def _unsupervise(ns: str, name: str):
        return await run_in_threadpool(spaces.supervise, f"{ns}/{name}", None)

    # -- misc Hub routes ---------------------------------------------------------------------------
    @router.api_route("/api/telemetry/{path:path}", methods=["HEAD", "GET", "POST"])
    def _telemetry(path: str):
        return Response(status_code=200)

    @router.post("/api/validate-yaml")
    def _validate_yaml():
        return {"errors": [], "warnings": []}

    @router.get("/api/whoami-v2")
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
            "avatarUrl": f"{access.endpoint(request)}/avatars/{user}.svg",
            "isPro": False,
            "canPay": True,
            "orgs": [],
            "auth": {"type": "access_token", "accessToken": {"displayName": "emulator", "role": "write"}},
        }

    return router
