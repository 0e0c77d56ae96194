"""The Hub's quotas: commits per repository, and requests per account in three buckets.

Commit quota (hub-facts §11): at most `commit_limit` commits per `commit_window_s` per repo,
shared by every writer, counted over a sliding window (the Hub says when a commit is allowed
again). A refusal is HTTP 429 with the Hub's text, "You have exceeded the rate limit for repository
commits (128 per hour). You can retry this action in about 1 hour." (its numbers follow the
rules) and `Retry-After`: the whole seconds until the oldest counted commit leaves the window.
Only commits the client sends count (a no-op upload is skipped by the client and never sent); a
412 counts too unless `count_412` is off; repo creation and duplication do not.

Request quotas (hub-docs rate-limits.md): per account (a token's user; the client IP when
anonymous), per fixed window of `request_window_s` aligned on the emulator clock, per bucket:
`resolvers` (a path with `/resolve/`), `api` (`/api/...`), `pages` (everything else a browser
loads). Every answer carries `RateLimit: "<bucket>";r=<remaining>;t=<seconds to reset>` and
`RateLimit-Policy: "fixed window";"<bucket>";q=<quota>;w=<window>`; past the quota the answer is
429 with them (huggingface_hub waits `t` on downloads and paginated calls). `/_emulator/*` is
never counted, nor are the Space apps' own ports (the emulator does not serve them).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from .accounts import HubRefusal
from .faults import json_reply

if TYPE_CHECKING:
    from .hub import EmulatedHub


def humanize(seconds: float) -> str:
    """3600 -> '1 hour', 400 -> '400 seconds', 600 -> '10 minutes'."""
    s = int(round(seconds))
    for unit, size in (("hour", 3600), ("minute", 60)):
        if s >= size and s % size == 0:
            n = s // size
            return f"{n} {unit}" + ("s" if n != 1 else "")
    return f"{s} second" + ("s" if s != 1 else "")


def commit_quota_message(limit: int, window_s: float) -> str:
    window = humanize(window_s)
    per = window[2:] if window.startswith("1 ") else window
    return (f"You have exceeded the rate limit for repository commits ({limit} per {per}). "
            f"You can retry this action in about {window}.")


class CommitQuota:
    """Commits per repository over a sliding window, shared by every writer of the repo."""

    def __init__(self, hub: "EmulatedHub"):
        self.hub = hub
        self._lock = threading.Lock()
        self._times: dict[str, deque[float]] = {}

    def reserve(self, repo_key: str) -> float | None:
        """Count a commit about to be applied to `repo_key` ("dataset/ns/name"); returns its slot
        (to `release` if the commit is not made) or None when the rule is off.

        Raises HubRefusal(429) with `Retry-After` when the window is full.
        """
        rules = self.hub.rules.current
        if not rules.commit_quota:
            return None
        now = self.hub.clock.now()
        with self._lock:
            times = self._times.setdefault(repo_key, deque())
            while times and times[0] <= now - rules.commit_window_s:
                times.popleft()
            if len(times) >= rules.commit_limit:
                retry = max(1, math.ceil(times[len(times) - rules.commit_limit] + rules.commit_window_s - now))
                self.hub.faults.count("commit_quota_429")
                raise HubRefusal(429, commit_quota_message(rules.commit_limit, rules.commit_window_s),
                                 {"Retry-After": str(retry)})
            times.append(now)
            return now

    def release(self, repo_key: str, slot: float | None) -> None:
        """Give back a slot whose commit was not made (refused before it was applied)."""
        if slot is None:
            return
        with self._lock:
            times = self._times.get(repo_key)
            if times and slot in times:
                times.remove(slot)

    def usage(self) -> dict[str, dict[str, Any]]:
        rules = self.hub.rules.current
        now = self.hub.clock.now()
        with self._lock:
            out = {}
            for key, times in self._times.items():
                used = sum(1 for t in times if t > now - rules.commit_window_s)
                out[key] = {"used": used, "limit": rules.commit_limit, "window_s": rules.commit_window_s,
                            "remaining": max(0, rules.commit_limit - used)}
            return out


def bucket_of(path: str) -> str | None:
    """The rate-limit bucket of a request path, or None for the emulator's own control routes."""
    if path.startswith("/_emulator"):
        return None
    if "/resolve/" in path:
        return "resolvers"
    if path.startswith("/api/"):
        return "api"
    return "pages"


class RequestQuotas:
    """Requests per (account, bucket) in fixed windows of the emulator clock."""

    def __init__(self, hub: "EmulatedHub"):
        self.hub = hub
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], tuple[int, int]] = {}  # (account, bucket) -> (window index, n)
        self._plans: dict[str, str] = {}

    def hit(self, account: str, plan: str, bucket: str) -> tuple[bool, list[tuple[bytes, bytes]]]:
        """Count one request; (allowed, its RateLimit headers)."""
        rules = self.hub.rules.current
        window = rules.request_window_s
        quota = rules.request_quotas[plan][bucket]
        now = self.hub.clock.now()
        index = int(now // window)
        with self._lock:
            seen_index, n = self._counts.get((account, bucket), (index, 0))
            n = (n if seen_index == index else 0) + 1
            self._counts[(account, bucket)] = (index, n)
            self._plans[account] = plan
        reset = max(1, math.ceil((index + 1) * window - now))
        remaining = max(0, quota - n)
        headers = [(b"ratelimit", f'"{bucket}";r={remaining};t={reset}'.encode()),
                   (b"ratelimit-policy", f'"fixed window";"{bucket}";q={quota};w={int(window)}'.encode())]
        return n <= quota, headers

    def usage(self) -> dict[str, Any]:
        rules = self.hub.rules.current
        window = rules.request_window_s
        now = self.hub.clock.now()
        index = int(now // window)
        accounts: dict[str, dict] = {}
        with self._lock:
            for (account, bucket), (seen, n) in self._counts.items():
                plan = self._plans.get(account, "free")
                used = n if seen == index else 0
                entry = accounts.setdefault(account, {"plan": plan, "buckets": {}})
                quota = rules.request_quotas[plan][bucket]
                entry["buckets"][bucket] = {"used": used, "quota": quota, "remaining": max(0, quota - used)}
        return {"window_s": window, "reset_s": max(1, math.ceil((index + 1) * window - now)), "accounts": accounts}


class HubHeadersMiddleware:
    """Sets `Date` from the emulator clock on every answer, and counts and enforces request quotas."""

    def __init__(self, app, hub: "EmulatedHub"):
        self.app = app
        self.hub = hub

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        hub = self.hub
        extra = [(b"date", hub.clock.http_date().encode())]
        bucket = bucket_of(scope["path"])
        if bucket is not None and hub.rules.current.request_quota:
            auth = next((v.decode("latin-1") for k, v in scope.get("headers") or [] if k == b"authorization"), None)
            user, ok = hub.accounts.user_for(auth)
            if user is None or not ok:
                account, plan = "ip:" + ((scope.get("client") or ("unknown",))[0]), "anonymous"
            else:
                account, plan = user, hub.accounts.quota_plan(user)
            allowed, headers = hub.quotas.hit(account, plan, bucket)
            extra += headers
            if not allowed:
                hub.faults.count("request_quota_429")
                # Not seen verbatim: the Hub's own text for this refusal.
                message = (f"You have exceeded the rate limit for '{bucket}' requests "
                           f"({hub.rules.current.request_quotas[plan][bucket]} per "
                           f"{humanize(hub.rules.current.request_window_s)}).")
                return await json_reply(send, 429, {"error": message}, [(b"x-error-message", message.encode()), *extra])

        names = {name for name, _ in extra}

        async def with_headers(message):
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": kept + extra}
            await send(message)

        await self.app(scope, receive, with_headers)
