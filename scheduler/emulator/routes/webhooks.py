"""Webhook routes (`/api/settings/webhooks`), as `HfApi.create_webhook` and its siblings call them,
and `/_emulator/webhooks/deliveries` to see what was sent."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..hub import EmulatedHub
from ..webhooks import WebhookError
from .common import HTTPError, json_body

BASE = "/api/settings/webhooks"


def build_router(hub: EmulatedHub) -> APIRouter:
    router = APIRouter()
    hooks = hub.webhooks

    def owner(request: Request) -> str:
        if request.state.user is None:
            raise HTTPError(401, "You must be authenticated to manage webhooks")
        return request.state.user

    def found(hook: dict | None, hook_id: str) -> dict:
        if hook is None:
            raise HTTPError(404, f"Webhook {hook_id} not found")
        return {"webhook": hooks.public(hook)}

    @router.get(BASE)
    def _list(request: Request):
        return [hooks.public(h) for h in hooks.list(owner(request))]

    @router.post(BASE)
    async def _create(request: Request):
        body = await json_body(request)
        try:
            return {"webhook": hooks.public(hooks.create(owner(request), body))}
        except WebhookError as exc:
            raise HTTPError(400, str(exc)) from None

    @router.get(BASE + "/{hook_id}")
    def _get(request: Request, hook_id: str):
        return found(hooks.get(owner(request), hook_id), hook_id)

    @router.post(BASE + "/{hook_id}")
    async def _update(request: Request, hook_id: str):
        body = await json_body(request)
        try:
            return found(hooks.update(owner(request), hook_id, body), hook_id)
        except WebhookError as exc:
            raise HTTPError(400, str(exc)) from None

    @router.post(BASE + "/{hook_id}/enable")
    def _enable(request: Request, hook_id: str):
        return found(hooks.update(owner(request), hook_id, disabled=False), hook_id)

    @router.post(BASE + "/{hook_id}/disable")
    def _disable(request: Request, hook_id: str):
        return found(hooks.update(owner(request), hook_id, disabled=True), hook_id)

    @router.delete(BASE + "/{hook_id}")
    def _delete(request: Request, hook_id: str):
        if not hooks.delete(owner(request), hook_id):
            raise HTTPError(404, f"Webhook {hook_id} not found")
        return {}

    @router.get("/_emulator/webhooks/deliveries")
    def _deliveries():
        return list(hooks.deliveries)

    return router
