"""The emulated Hub's HTTP routes, one module per part of the API."""

from __future__ import annotations

from fastapi import APIRouter

from ..hub import EmulatedHub
from . import control, discussions, files, jobs, repos, spaces, webhooks


def build_routers(hub: EmulatedHub) -> list[APIRouter]:
    """The routers in the order the app must include them.

    Starlette tries routes in registration order and some paths fit more than one: `/api/models/resolve/x`
    is the info of repo `resolve/x`, not a download of `x` from repo `api/models`, only because the repo
    routes come before `/{prefix}{ns}/{name}/resolve/{path}`.
    """
    return [module.build_router(hub) for module in (control, webhooks, repos, files, spaces, discussions, jobs)]
