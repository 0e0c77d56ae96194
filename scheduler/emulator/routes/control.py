"""The emulator's own `/_emulator/*` control routes, and the small Hub routes that only answer the client."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from .. import billing
from ..faults import FaultConfig
from ..hub import EmulatedHub
from .common import Access, HTTPError, json_body


def build_router(hub: EmulatedHub) -> APIRouter:
    router = APIRouter()
    access = Access(hub)
    spaces = hub.spaces

    @router.get("/_emulator/health")
    def _health():
        return {"ok": True, "time": hub.clock.now()}

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

    @router.get("/_emulator/rules")
    def _rules_get():
        return hub.rules.current.to_dict()

    @router.post("/_emulator/rules")
    async def _rules_set(request: Request):
        body = await json_body(request)
        reset = bool(body.pop("reset", False))
        try:
            rules = hub.rules.update(body, reset=reset)
        except ValueError as exc:
            raise HTTPError(400, str(exc)) from None
        return rules.to_dict()

    @router.get("/_emulator/clock")
    def _clock_get():
        return {"now": hub.clock.now(), "offset_s": hub.clock.offset_s, "date": hub.clock.http_date()}

    @router.post("/_emulator/clock")
    async def _clock_advance(request: Request):
        body = await json_body(request)
        try:
            now = await run_in_threadpool(hub.clock.advance, body.get("advance_s", 0))
        except (TypeError, ValueError) as exc:
            raise HTTPError(400, str(exc)) from None
        return {"now": now, "offset_s": hub.clock.offset_s, "date": hub.clock.http_date()}

    @router.get("/_emulator/users")
    def _users():
        return [a.public() for a in hub.accounts.all()]

    @router.post("/_emulator/users/{name}")
    async def _user_set(request: Request, name: str):
        body = await json_body(request)
        try:
            return hub.accounts.update(name, body).public()
        except ValueError as exc:
            raise HTTPError(400, str(exc)) from None

    @router.get("/_emulator/quotas")
    def _quotas():
        return {**hub.quotas.usage(), "commits": hub.commit_quota.usage()}

    @router.get("/_emulator/billing")
    def _all_billing():
        """Every paid period: Space replicas and Jobs, with totals."""
        now = hub.clock.now()
        periods = [p for repo in hub.store.list("space") for p in spaces.periods(repo.id)]
        out = {"now": now, "spaces": billing.summarize(periods, now), "jobs": hub.jobs.billing()}
        out["totals"] = {k: round(out["spaces"]["totals"][k] + out["jobs"]["totals"][k], 6)
                         for k in out["spaces"]["totals"]}
        return out

    @router.get("/_emulator/spaces/{ns}/{name}")
    def _space_info(ns: str, name: str):
        return spaces.info(f"{ns}/{name}")

    @router.get("/_emulator/spaces/{ns}/{name}/billing")
    def _billing(ns: str, name: str):
        return spaces.billing(f"{ns}/{name}")

    @router.post("/_emulator/spaces/{ns}/{name}/visit")
    async def _visit(ns: str, name: str):
        return await run_in_threadpool(spaces.visit, f"{ns}/{name}")

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
        return hub.accounts.whoami(user, access.endpoint(request))

    return router
