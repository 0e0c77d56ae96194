"""Who may use the Space app: read the queue, submit, cancel, requeue.

A user is known only from a login the app can trust, never from a form field. How people sign in
(`SignIn`) follows from where the app runs:

- `SPACE_OAUTH`: on a Hugging Face Space with OAuth (`SYSTEM=spaces`, `SPACE_ID` and the
  `OAUTH_*` variables the Hub injects for `hf_oauth: true`): the Hugging Face login. Only there
  does Gradio run the real OAuth flow (gradio/utils.py `get_space`, gradio/oauth.py).
- `PASSWORD`: `--auth user:password[,...]` (`SCHEDULER_AUTH`): Gradio's password wall, anywhere.
- `MOCK_LOGIN`: `SCHEDULER_MOCK_LOGIN=1` off a Space (the demo on the Hub emulator). Gradio then
  mocks "Sign in with Hugging Face" with the profile of the machine's token (gradio#8660), so the
  profile is trusted only from loopback clients of an app bound to loopback.
- `LOCAL`: nothing of the above and no `SPACE_ID`: whoever reaches the app on loopback is the
  person at the machine; the app must then be bound to loopback.
- `CLOSED`: `SPACE_ID` set off a Space with OAuth and none of the above. The app cannot tell who
  is who, so nobody may change the queue (it starts read-only and says how to open it).

Only the allow-list may change the queue: `SCHEDULER_ALLOWED_USERS` (comma separated), by default
the Space's owner (the `--auth` users with a password wall, the local user locally). Anyone may
read the queue when `SCHEDULER_PUBLIC_QUEUE` is set, and may never change it.
"""

from __future__ import annotations

import getpass
import ipaddress
import os
from dataclasses import dataclass
from enum import Enum
from typing import Mapping

from .errors import UserError

LOCAL_USER_FALLBACK = "local"
_TRUE = {"1", "true", "yes", "on"}
# What the Hub injects into a Space whose card says `hf_oauth: true`; Gradio needs all four.
OAUTH_VARIABLES = ("OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "OAUTH_SCOPES", "OPENID_PROVIDER_URL")
# Gradio's own default for `server_name` when neither `--host` nor GRADIO_SERVER_NAME is given.
GRADIO_DEFAULT_HOST = "127.0.0.1"


class SignIn(str, Enum):
    """How a visitor is identified (see the module docstring)."""

    SPACE_OAUTH = "space-oauth"
    PASSWORD = "password"
    MOCK_LOGIN = "mock-login"
    LOCAL = "local"
    CLOSED = "closed"


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


def is_loopback(host: str | None) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1)."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _local_user() -> str:
    try:
        return getpass.getuser() or LOCAL_USER_FALLBACK
    except Exception:  # no passwd entry (containers)
        return LOCAL_USER_FALLBACK


def _flag(env: Mapping[str, str], name: str) -> bool:
    return (env.get(name) or "").strip().lower() in _TRUE


def sign_in_from_env(env: Mapping[str, str], has_auth: bool) -> SignIn:
    """The sign-in mode for these environment variables (see the module docstring)."""
    space_id = env.get("SPACE_ID") or ""
    on_space = env.get("SYSTEM") == "spaces" and bool(space_id)
    if on_space and all(env.get(name) for name in OAUTH_VARIABLES):
        return SignIn.SPACE_OAUTH
    if has_auth:
        return SignIn.PASSWORD
    if _flag(env, "SCHEDULER_MOCK_LOGIN") and not on_space:
        return SignIn.MOCK_LOGIN
    return SignIn.CLOSED if space_id else SignIn.LOCAL


@dataclass(frozen=True)
class Access:
    """The app's access rules. Build it with `from_env`; `identify` then names a request's user."""

    sign_in: SignIn
    allowed: frozenset[str]
    public_queue: bool = False
    auth: tuple[tuple[str, str], ...] = ()
    local_user: str = LOCAL_USER_FALLBACK

    def __repr__(self) -> str:  # the passwords stay out of logs and tracebacks
        return (f"Access(sign_in={self.sign_in.value}, allowed={sorted(self.allowed)}, "
                f"public_queue={self.public_queue}, auth_users={[u for u, _ in self.auth]})")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, auth: str | None = None) -> "Access":
        """From SPACE_ID, SYSTEM, OAUTH_*, SCHEDULER_AUTH (or `auth`), SCHEDULER_ALLOWED_USERS,
        SCHEDULER_PUBLIC_QUEUE and SCHEDULER_MOCK_LOGIN. Raises UserError for a malformed `--auth`."""
        env = os.environ if env is None else env
        space_id = env.get("SPACE_ID") or ""
        pairs = tuple(parse_auth(auth if auth is not None else env.get("SCHEDULER_AUTH")))
        sign_in = sign_in_from_env(env, bool(pairs))
        listed = frozenset(u.strip() for u in (env.get("SCHEDULER_ALLOWED_USERS") or "").split(",") if u.strip())
        local_user = _local_user()
        if listed:
            allowed = listed
        elif sign_in is SignIn.PASSWORD:
            allowed = frozenset(u for u, _ in pairs)
        elif sign_in is SignIn.LOCAL:
            allowed = frozenset({local_user})
        elif space_id:
            allowed = frozenset({space_id.split("/", 1)[0]})
        else:
            raise UserError("SCHEDULER_MOCK_LOGIN needs SPACE_ID (its owner may submit) or SCHEDULER_ALLOWED_USERS")
        return cls(sign_in=sign_in, allowed=allowed, public_queue=_flag(env, "SCHEDULER_PUBLIC_QUEUE"), auth=pairs,
                   local_user=local_user)

    @property
    def hugging_face_login(self) -> bool:
        """The page offers "Sign in with Hugging Face" (real OAuth on a Space, or Gradio's mock)."""
        return self.sign_in in (SignIn.SPACE_OAUTH, SignIn.MOCK_LOGIN)

    def check_host(self, host: str | None) -> None:
        """Refuse to serve a form that trusts loopback (LOCAL, MOCK_LOGIN) on any other address:
        a visitor from elsewhere, or through a proxy on this machine, would be let in.
        `host` is the address the server binds (None: Gradio's default, 127.0.0.1)."""
        if self.sign_in not in (SignIn.LOCAL, SignIn.MOCK_LOGIN):
            return
        host = host or os.environ.get("GRADIO_SERVER_NAME") or GRADIO_DEFAULT_HOST
        if not is_loopback(host):
            what = "Gradio's mocked Hugging Face login" if self.sign_in is SignIn.MOCK_LOGIN else "an open form"
            raise UserError(f"refusing to serve {what} on {host}: without the Space's OAuth anyone who reaches "
                            f"{host} could submit paid GPU work. Pass --auth user:password, or bind to 127.0.0.1")

    def identify(self, *, oauth_username: str | None, auth_username: str | None, client_host: str | None) -> str | None:
        """The user behind a request, from the login only; None for an anonymous visitor."""
        if self.sign_in is SignIn.SPACE_OAUTH:
            return oauth_username or None
        if self.sign_in is SignIn.PASSWORD:
            return auth_username or None
        if self.sign_in is SignIn.MOCK_LOGIN:
            return (oauth_username or None) if is_loopback(client_host) else None
        if self.sign_in is SignIn.LOCAL:
            return self.local_user if is_loopback(client_host) else None
        return None

    def can_read(self, user: str | None) -> bool:
        return self.public_queue or (user is not None and user in self.allowed)

    def can_change(self, user: str | None) -> bool:
        return user is not None and user in self.allowed

    def refusal(self, user: str | None, action: str) -> str:
        """Why `user` may not `action` ("submit tasks"), and what would let them."""
        if user is not None:
            return (f"{user} is not allowed to {action} (ask the Space's owner to add you to "
                    "SCHEDULER_ALLOWED_USERS).")
        if self.hugging_face_login:
            return f"You must sign in with Hugging Face to {action}."
        if self.sign_in is SignIn.CLOSED:
            return (f"You must sign in to {action}, and this app has no sign-in here: it is not on a Hugging Face "
                    "Space with OAuth (hf_oauth: true). Its owner can start it with --auth user:password.")
        return f"You must sign in to {action}."

    def notice(self) -> str:
        """One line for the app's log: who can sign in and how."""
        return {
            SignIn.SPACE_OAUTH: "sign-in with Hugging Face (the Space's OAuth)",
            SignIn.PASSWORD: f"sign-in with a password for {', '.join(u for u, _ in self.auth)}",
            SignIn.MOCK_LOGIN: "Gradio's mocked Hugging Face login (local development, loopback only)",
            SignIn.LOCAL: f"no sign-in: visitors on this machine are {self.local_user}",
            SignIn.CLOSED: ("read-only: SPACE_ID is set but this is no Space with OAuth (SYSTEM=spaces and "
                            "OAUTH_* variables), so nobody can sign in; pass --auth user:password to open it"),
        }[self.sign_in]
