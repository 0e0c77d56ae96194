"""Who may use the Space app: read the queue, submit, cancel, requeue.

On a Space the user is whoever signed in with Hugging Face (the login, never a form field), and
only the allow-list may change the queue: `SCHEDULER_ALLOWED_USERS` (comma separated), by default
the Space's owner. Locally the app is either open to whoever reaches it on loopback (one user, the
person at the machine) or behind `--auth user:password` (`SCHEDULER_AUTH`), in which case every
listed user may submit unless `SCHEDULER_ALLOWED_USERS` narrows it. Anyone else may read the
queue only when `SCHEDULER_PUBLIC_QUEUE` is set, and may never change it.
"""

from __future__ import annotations

import getpass
import ipaddress
import os
from dataclasses import dataclass
from typing import Mapping

from .errors import UserError

LOCAL_USER_FALLBACK = "local"
_TRUE = {"1", "true", "yes", "on"}


def parse_auth(spec: str | None) -> list[tuple[str, str]]:
    """`user:password[,user2:password2]` -> pairs; the password may contain ':'."""
    pairs: list[tuple[str, str]] = []
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        user, sep, password = item.partition(":")
        if not sep or not user.strip() or not password:
            raise UserError("--auth expects user:password (several separated by commas)")
        pairs.append((user.strip(), password))
    return pairs


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _local_user() -> str:
    try:
        return getpass.getuser() or LOCAL_USER_FALLBACK
    except Exception:  # no passwd entry (containers)
        return LOCAL_USER_FALLBACK


@dataclass(frozen=True)
class Access:
    on_space: bool
    allowed: frozenset[str]
    public_queue: bool = False
    auth: tuple[tuple[str, str], ...] = ()
    local_user: str = LOCAL_USER_FALLBACK

    def __repr__(self) -> str:  # the passwords stay out of logs and tracebacks
        return (f"Access(on_space={self.on_space}, allowed={sorted(self.allowed)}, "
                f"public_queue={self.public_queue}, auth_users={[u for u, _ in self.auth]})")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, auth: str | None = None) -> "Access":
        env = os.environ if env is None else env
        space_id = env.get("SPACE_ID") or ""
        on_space = bool(space_id)
        pairs = tuple(parse_auth(auth if auth is not None else env.get("SCHEDULER_AUTH")))
        listed = frozenset(u.strip() for u in (env.get("SCHEDULER_ALLOWED_USERS") or "").split(",") if u.strip())
        local_user = _local_user()
        if listed:
            allowed = listed
        elif on_space:
            allowed = frozenset({space_id.split("/", 1)[0]})
        elif pairs:
            allowed = frozenset(u for u, _ in pairs)
        else:
            allowed = frozenset({local_user})
        public = (env.get("SCHEDULER_PUBLIC_QUEUE") or "").strip().lower() in _TRUE
        return cls(on_space=on_space, allowed=allowed, public_queue=public, auth=pairs, local_user=local_user)

    @property
    def open_locally(self) -> bool:
        """No login at all: the app trusts whoever reaches it on loopback."""
        return not self.on_space and not self.auth

    def identify(self, *, oauth_username: str | None, auth_username: str | None, client_host: str | None) -> str | None:
        """The user behind a request, from the login only; None for an anonymous visitor."""
        if self.on_space:
            return oauth_username or None
        if self.auth:
            return auth_username or None
        return self.local_user if _is_loopback(client_host) else None

    def can_read(self, user: str | None) -> bool:
        return self.public_queue or (user is not None and user in self.allowed)

    def can_change(self, user: str | None) -> bool:
        return user is not None and user in self.allowed

    def refusal(self, user: str | None, action: str) -> str:
        if user is None:
            how = "sign in with Hugging Face" if self.on_space else "sign in"
            return f"You must {how} to {action}."
        return f"{user} is not allowed to {action} (ask the Space's owner to add you to SCHEDULER_ALLOWED_USERS)."
