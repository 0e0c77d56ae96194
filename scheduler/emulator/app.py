"""The emulated Hub's FastAPI app: token check, error mapping, and the routes under `routes/`, shaped
after what the installed `huggingface_hub` client sends.

404s carry `X-Error-Code` (RepoNotFound / RevisionNotFound / EntryNotFound): on an http://
endpoint the client maps errors to its typed exceptions only through that header.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor

from .accounts import HubRefusal
from .faults import FaultMiddleware
from .hub import EmulatedHub
from .quotas import HubHeadersMiddleware
from .routes import build_routers
from .routes.common import PREFIX, HTTPError, error_response
from .spaces import SpaceError
from .storage import StoreError


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


# Route paths are compiled when a router is built, which create_app does; registering at import puts
# these in place before any router can exist.
register_url_convertor("rtype", _RepoTypeConvertor())
register_url_convertor("urlprefix", _UrlPrefixConvertor())


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
            return await error_response(401, message)(scope, receive, send)
        scope.setdefault("state", {})["user"] = user
        return await self.app(scope, receive, send)


def create_app(data_dir: str | Path | None = None, *, hub: EmulatedHub | None = None, **options: Any) -> FastAPI:
    """Build the FastAPI app. Either pass an `EmulatedHub` or the data dir and its options
    (boot_delay, require_token, users, faults, supervise_repos, stop_grace, ...)."""
    if hub is None:
        if data_dir is None:
            raise ValueError("create_app needs data_dir or hub")
        hub = EmulatedHub(data_dir, **options)

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
    # Added last = outermost: faults act before everything, as a flaky proxy would; the Hub's
    # headers and request quotas apply to every answer, a 401 included.
    app.add_middleware(AuthMiddleware, hub=hub)
    app.add_middleware(HubHeadersMiddleware, hub=hub)
    app.add_middleware(FaultMiddleware, injector=hub.faults)

    @app.exception_handler(HTTPError)
    async def _http_error(request: Request, exc: HTTPError):
        return error_response(exc.status, exc.message, exc.code, exc.headers)

    @app.exception_handler(StoreError)
    async def _store_error(request: Request, exc: StoreError):
        return error_response(exc.status, str(exc), exc.code)

    @app.exception_handler(HubRefusal)
    async def _refusal(request: Request, exc: HubRefusal):
        return error_response(exc.status, exc.message, headers=exc.headers)

    @app.exception_handler(SpaceError)
    async def _space_error(request: Request, exc: SpaceError):
        return error_response(exc.status, str(exc))

    for router in build_routers(hub):
        app.include_router(router)
    return app
