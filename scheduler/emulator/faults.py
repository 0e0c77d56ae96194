"""Fault injection: an ASGI middleware that makes the emulator misbehave like a busy Hub.

Kinds (all optional, all filtered by the `paths` regex and the `methods` list, never applied to
`/_emulator/*`):

- `error_rate`: fraction of requests answered 500/502/503 before the route runs.
- `commit_429_every`: every Nth commit POST is answered 429 with `Retry-After` before applying.
- `latency_s` + `latency_rate`: sleep before answering that fraction of requests.
- `drop_after_commit_rate`: the commit is applied and persisted, then the response is lost.
  The status line and headers are sent, then the connection is closed before the body, so the
  client sees `httpx2.RemoteProtocolError` (a connection error, not an HTTP status).
- `drop_after_rate`: the same for any request the `paths` regex selects (a Job created, a hardware
  request accepted, whose answer never arrives).

Randomness comes from one seeded RNG so a run can be replayed.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
from collections import Counter
from dataclasses import asdict, dataclass, fields
from typing import Any

COMMIT_RE = re.compile(r"^/api/(models|datasets|spaces)/[^/]+/[^/]+/commit/")


@dataclass
class FaultConfig:
    error_rate: float = 0.0
    commit_429_every: int = 0
    retry_after_s: float = 1.0
    latency_s: float = 0.0
    latency_rate: float = 0.0
    drop_after_commit_rate: float = 0.0
    drop_after_rate: float = 0.0
    paths: str | None = None
    methods: str | None = None  # e.g. "POST" or "POST,PUT"; None: every method
    seed: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "FaultConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data or {}) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}; known: {sorted(known)}")
        cfg = cls(**(data or {}))
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for name in ("error_rate", "latency_rate", "drop_after_commit_rate", "drop_after_rate"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.commit_429_every < 0 or self.latency_s < 0 or self.retry_after_s < 0:
            raise ValueError("commit_429_every, latency_s and retry_after_s must be >= 0")
        if self.paths:
            re.compile(self.paths)

    def to_dict(self) -> dict:
        return asdict(self)


class DroppedResponse(Exception):
    """Raised after a commit was applied so the server closes the connection without a body."""


class FaultInjector:
    """Holds the current config and the counters shown at `/_emulator/stats`."""

    def __init__(self, config: FaultConfig | None = None):
        self._lock = threading.Lock()
        self.stats: Counter[str] = Counter()
        self.config = FaultConfig()
        self._rng = random.Random()
        self._commit_posts = 0
        self.configure(config or FaultConfig())

    def configure(self, config: FaultConfig) -> None:
        with self._lock:
            self.config = config
            self._rng = random.Random(config.seed)
            self._commit_posts = 0
            self._paths = re.compile(config.paths) if config.paths else None

    def update(self, changes: dict[str, Any]) -> FaultConfig:
        merged = {**self.config.to_dict(), **changes}
        cfg = FaultConfig.from_dict(merged)
        self.configure(cfg)
        return cfg

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n

    def decide(self, method: str, path: str) -> dict:
        """What to do with this request: {'latency': s, 'error': status, 'r429': s, 'drop': bool}."""
        cfg = self.config
        out: dict[str, Any] = {}
        if path.startswith("/_emulator") or (self._paths and not self._paths.search(path)):
            return out
        if cfg.methods and method.upper() not in {m.strip().upper() for m in cfg.methods.split(",")}:
            return out
        is_commit = method == "POST" and bool(COMMIT_RE.match(path))
        with self._lock:
            rng = self._rng
            if cfg.latency_s > 0 and cfg.latency_rate > 0 and rng.random() < cfg.latency_rate:
                out["latency"] = cfg.latency_s
            if cfg.error_rate > 0 and rng.random() < cfg.error_rate:
                out["error"] = rng.choice((500, 502, 503))
                return out
            if is_commit and cfg.commit_429_every > 0:
                self._commit_posts += 1
                if self._commit_posts % cfg.commit_429_every == 0:
                    out["r429"] = cfg.retry_after_s
                    return out
            if is_commit and cfg.drop_after_commit_rate > 0 and rng.random() < cfg.drop_after_commit_rate:
                out["drop"] = True
            elif cfg.drop_after_rate > 0 and rng.random() < cfg.drop_after_rate:
                out["drop"] = True
        return out


class FaultMiddleware:
    """Pure ASGI middleware so it can also cut a response short."""

    def __init__(self, app, injector: FaultInjector):
        self.app = app
        self.injector = injector

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        inj = self.injector
        inj.count("requests")
        plan = inj.decide(scope["method"], scope["path"])
        if "latency" in plan:
            inj.count("fault_latency")
            await asyncio.sleep(plan["latency"])
        if "error" in plan:
            inj.count(f"fault_error_{plan['error']}")
            inj.count("fault_error")
            return await json_reply(send, plan["error"], {"error": "Injected server error"})
        if "r429" in plan:
            inj.count("fault_429")
            retry = plan["r429"]
            retry_header = str(int(retry)) if float(retry).is_integer() else str(retry)
            return await json_reply(send, 429, {"error": "Too Many Requests (injected)"},
                                [(b"retry-after", retry_header.encode())])
        if not plan.get("drop"):
            return await self.app(scope, receive, send)

        state = {"status": 0}

        async def cut_send(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                await send(message)
            elif message["type"] == "http.response.body":
                if state["status"] < 300:
                    inj.count("fault_dropped_after_commit" if COMMIT_RE.match(scope["path"]) else "fault_dropped")
                    raise DroppedResponse("response dropped after the request was applied (injected)")
                await send(message)

        await self.app(scope, receive, cut_send)


async def json_reply(send, status: int, body: dict, headers: list | None = None) -> None:
    """Answer with `body` as JSON straight from an ASGI middleware."""
    payload = json.dumps(body).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                    *(headers or [])],
    })
    await send({"type": "http.response.body", "body": payload})
