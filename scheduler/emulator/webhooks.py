"""Hub webhooks: registered per user, delivered after each commit to a watched repo.

As on the Hub, a delivery is a POST of a v3 payload with the webhook's secret in `X-Webhook-Secret`,
sent after the commit is answered and independent of it: a slow or failing receiver never slows
or fails a commit, and a failed delivery is not retried. Deliveries go out one at a time in
commit order from one thread; the last ones are kept (URL, status or error, no secret) for
`/_emulator/webhooks/deliveries`.

Rule `webhook_quota` (hub-facts §11): a webhook triggers at most `webhook_limit` times per
`webhook_window_s` (1,000 per 24 h, emulator clock, sliding); a trigger past that is dropped and
listed among the deliveries with `"dropped": "webhook trigger limit"`.
"""

from __future__ import annotations

import queue
import secrets
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .storage import atomic_write_json, read_json

if TYPE_CHECKING:
    from .hub import EmulatedHub

DOMAINS = ("repo", "discussion")
WATCH_TYPES = ("user", "org", "model", "dataset", "space")
DELIVERY_TIMEOUT_S = 5.0


class WebhookError(ValueError):
    """A malformed webhook definition; the message names the field."""


def validate(body: dict[str, Any], partial: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "url" in body or not partial:
        url = body.get("url")
        if body.get("jobSourceId") or body.get("job"):
            raise WebhookError("job webhooks are not emulated; give a url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise WebhookError(f"url must be an http(s) URL, got {url!r}")
        out["url"] = url
    if "watched" in body or not partial:
        watched = body.get("watched")
        if not isinstance(watched, list) or not watched:
            raise WebhookError("watched must be a non-empty list of {type, name}")
        for i, item in enumerate(watched):
            if not isinstance(item, dict) or item.get("type") not in WATCH_TYPES or not isinstance(item.get("name"), str):
                raise WebhookError(f"watched[{i}] must be {{type: one of {', '.join(WATCH_TYPES)}, name}}, got {item!r}")
        out["watched"] = [{"type": item["type"], "name": item["name"]} for item in watched]
    if "domains" in body or not partial:
        domains = body.get("domains") or list(DOMAINS)
        if not isinstance(domains, list) or any(d not in DOMAINS for d in domains):
            raise WebhookError(f"domains must be a list of {', '.join(DOMAINS)}, got {domains!r}")
        out["domains"] = list(dict.fromkeys(domains))
    if "secret" in body:
        if body["secret"] is not None and not isinstance(body["secret"], str):
            raise WebhookError("secret must be a string")
        out["secret"] = body["secret"]
    return out


class WebhookManager:
    def __init__(self, data_dir: Path, fsync: bool = True, hub: "EmulatedHub | None" = None):
        self.path = Path(data_dir) / "webhooks.json"
        self.fsync = fsync
        self.hub = hub
        self._triggers: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        # One emulator process owns its data dir (hub.py locks it), so this copy is the truth and a
        # commit never reads the file to find its webhooks.
        self._hooks: dict[str, dict] = read_json(self.path, {}) or {}
        self._outbox: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self.deliveries: deque[dict] = deque(maxlen=200)

    # ------------------------------------------------------------ registry

    def _save(self) -> None:
        atomic_write_json(self.path, self._hooks, self.fsync)

    def _owned(self, owner: str, hook_id: str) -> dict | None:
        hook = self._hooks.get(hook_id)
        return hook if hook is not None and hook["owner"] == owner else None

    def create(self, owner: str, body: dict[str, Any]) -> dict:
        hook = {"id": secrets.token_hex(12), "owner": owner, "disabled": False, "secret": None,
                **validate(body)}
        with self._lock:
            self._hooks[hook["id"]] = hook
            self._save()
        return hook

    def list(self, owner: str) -> list[dict]:
        with self._lock:
            return [h for h in self._hooks.values() if h["owner"] == owner]

    def get(self, owner: str, hook_id: str) -> dict | None:
        with self._lock:
            return self._owned(owner, hook_id)

    def update(self, owner: str, hook_id: str, body: dict[str, Any] | None = None, **fields: Any) -> dict | None:
        changes = {**(validate(body, partial=True) if body else {}), **fields}
        with self._lock:
            hook = self._owned(owner, hook_id)
            if hook is not None:
                hook.update(changes)
                self._save()
            return hook

    def delete(self, owner: str, hook_id: str) -> bool:
        with self._lock:
            if self._owned(owner, hook_id) is None:
                return False
            del self._hooks[hook_id]
            self._save()
        return True

    @staticmethod
    def public(hook: dict) -> dict:
        # The Hub shows a webhook's secret to its owner, the only one who can read the webhook.
        return {k: hook[k] for k in ("id", "url", "watched", "domains", "secret", "disabled")} | {"job": None}

    # ------------------------------------------------------------ delivery

    def repo_updated(self, repo_type: str, repo_id: str, *, private: bool, old_sha: str | None, new_sha: str,
                     ref: str = "refs/heads/main") -> int:
        """Queue a `repo.content` delivery to every enabled webhook watching the repo or its owner;
        returns how many were queued."""
        owner = repo_id.split("/")[0]
        with self._lock:
            hooks = [dict(h) for h in self._hooks.values()]
        targets = [h for h in hooks
                   if not h["disabled"] and "repo" in h["domains"]
                   and any((w["type"] == repo_type and w["name"] == repo_id)
                           or (w["type"] in ("user", "org") and w["name"] == owner) for w in h["watched"])]
        targets = [h for h in targets if self._may_trigger(h, repo_id, new_sha)]
        for hook in targets:
            payload = {
                "event": {"action": "update", "scope": "repo.content"},
                "repo": {"type": repo_type, "name": repo_id, "id": repo_id, "private": private,
                         "owner": {"id": owner}, "headSha": new_sha,
                         "url": {"web": f"/{'' if repo_type == 'model' else repo_type + 's/'}{repo_id}"}},
                "updatedRefs": [{"ref": ref, "oldSha": old_sha, "newSha": new_sha}],
                "webhook": {"id": hook["id"], "version": 3},
            }
            self._outbox.put((hook["id"], hook["url"], hook.get("secret"), payload))
        if targets:
            self._ensure_sender()
        return len(targets)

    def _may_trigger(self, hook: dict, repo_id: str, new_sha: str) -> bool:
        """Count a trigger of `hook`; False (and a dropped delivery listed) past the rule's limit."""
        rules = self.hub.rules.current if self.hub is not None else None
        if rules is None or not rules.webhook_quota:
            return True
        now = self.hub.clock.now()
        with self._lock:
            times = self._triggers.setdefault(hook["id"], deque())
            while times and times[0] <= now - rules.webhook_window_s:
                times.popleft()
            if len(times) >= rules.webhook_limit:
                self.deliveries.append({"webhook": hook["id"], "url": hook["url"], "at": now, "repo": repo_id,
                                        "newSha": new_sha, "dropped": "webhook trigger limit"})
                return False
            times.append(now)
            return True

    def _ensure_sender(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._send_forever, daemon=True, name="emulator-webhooks")
                self._thread.start()

    def _send_forever(self) -> None:
        import httpx

        with httpx.Client(timeout=DELIVERY_TIMEOUT_S) as client:
            while True:
                item = self._outbox.get()
                if item is None:
                    return
                hook_id, url, secret, payload = item
                headers = {"X-Webhook-Secret": secret} if secret else {}
                at = self.hub.clock.now() if self.hub is not None else time.time()
                record: dict[str, Any] = {"webhook": hook_id, "url": url, "at": at,
                                          "repo": payload["repo"]["name"],
                                          "newSha": payload["updatedRefs"][0]["newSha"]}
                try:
                    record["status"] = client.post(url, json=payload, headers=headers).status_code
                except httpx.HTTPError as exc:
                    record["error"] = type(exc).__name__
                self.deliveries.append(record)

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._outbox.put(None)
