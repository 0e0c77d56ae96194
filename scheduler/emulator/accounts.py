"""Accounts of the emulated Hub: who a token is, their plan, payment method and Jobs credits, and the
plan gates the Hub enforces with them (hub-facts §11).

Built in (tests rely on both):

| user | token | plan | payment method | Jobs credits |
|---|---|---|---|---|
| `demo` | any token not listed here (unless `users`/`--user` are given) | PRO | yes | $100 |
| `hobbyist` | `hf_hobbyisttoken0123456789` | free | no | $0 |

Any other user name (from `users={token: name}` / `--user NAME:TOKEN`) starts like `demo`.
`POST /_emulator/users/{name}` changes an account at run time: `{"plan": "free"|"pro"}` for a user,
`{"type": "org", "plan": "free"|"team"|"enterprise", "members": [...]}` for an organization,
`"canPay"`, `"credits"` (USD), and `"token"` to give a user a token. Accounts are kept in
`<data>/accounts.json` (tokens only as their SHA-256).
"""

from __future__ import annotations

import copy
import hashlib
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .hardware import is_paid
from .storage import atomic_write_json, read_json

DEFAULT_USER = "demo"
FREE_USER = "hobbyist"
FREE_TOKEN = "hf_hobbyisttoken0123456789"
USER_PLANS = ("free", "pro")
ORG_PLANS = ("free", "team", "enterprise")

# Creating (or duplicating into) these SDKs needs a paid plan; static Spaces are free. Streamlit
# Spaces are refused with them: on the Hub they run as Docker Spaces.
HOSTED_SDKS = ("gradio", "docker", "streamlit")
FREE_ZERO_GPU_SPACES = 2

# The Hub's answer to a free account creating a Gradio/Docker Space: 402, quoted verbatim in public
# reports (ed-donner/agents#1469, huggingface/agents-course#733, mid 2026).
NEEDS_PRO = ("Static Spaces are free for everyone, but hosting Gradio and Docker Spaces on free cpu-basic "
             "requires a PRO subscription. Subscribe at https://huggingface.co/pro")
# Not seen verbatim: the same refusal for an organization on the free plan.
NEEDS_TEAM = ("Static Spaces are free for everyone, but hosting Gradio and Docker Spaces on free cpu-basic "
              "requires a Team or Enterprise subscription for organizations. Upgrade at "
              "https://huggingface.co/enterprise")
# Not seen verbatim: the cap on free accounts' ZeroGPU Spaces (hub-docs spaces-zerogpu.md).
ZERO_GPU_CAP = (f"Free accounts can host up to {FREE_ZERO_GPU_SPACES} ZeroGPU Spaces. Subscribe to PRO to host "
                "more: https://huggingface.co/pro")
# The Hub's answer (403) to a hardware upgrade without a payment method (gradio-app/gradio#3804).
NEEDS_PAYMENT = ("You must add a payment method to your account to upgrade your space's hardware. Visit your "
                 "billing settings to add one: https://huggingface.co/settings/billing")
# Not seen verbatim: Jobs refused for want of pre-paid credits (hub-docs jobs-pricing.md: Jobs draw on them).
NEEDS_CREDITS = ("You need pre-paid credits to run Jobs. Add credits to your account in your billing settings: "
                 "https://huggingface.co/settings/billing")


class HubRefusal(Exception):
    """A request the Hub refuses by its rules; `status` and the Hub's message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass
class Account:
    """One user or organization. `credits_usd`: the Jobs credit balance; `members`: an org's users."""

    name: str
    type: str = "user"
    plan: str = "pro"
    can_pay: bool = True
    credits_usd: float = 100.0
    members: list[str] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        out = {"name": self.name, "type": self.type, "plan": self.plan, "canPay": self.can_pay,
               "credits": self.credits_usd}
        if self.type == "org":
            out["members"] = list(self.members)
        return out


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    """Tokens to users, and each account's plan, payment method and credits."""

    def __init__(self, data_dir: Path | None = None, *, users: dict[str, str] | None = None,
                 require_token: bool = False, fsync: bool = True):
        self._path = Path(data_dir) / "accounts.json" if data_dir is not None else None
        self._fsync = fsync
        self._lock = threading.Lock()
        self.require_token = require_token
        # The explicit token map: when given, a token outside it (and outside the built-ins) is refused.
        self.explicit = dict(users or {})
        self._accounts: dict[str, Account] = {
            DEFAULT_USER: Account(DEFAULT_USER),
            FREE_USER: Account(FREE_USER, plan="free", can_pay=False, credits_usd=0.0),
        }
        self._token_hashes: dict[str, str] = {_hash(FREE_TOKEN): FREE_USER}
        stored = read_json(self._path, {}) if self._path else {}
        for name, data in (stored or {}).get("accounts", {}).items():
            self._accounts[name] = Account(**data)
        self._token_hashes.update((stored or {}).get("tokens", {}))

    # -- who is asking ------------------------------------------------------------------------
    def user_for(self, authorization: str | None) -> tuple[str | None, bool]:
        """(user name or None for anonymous, token_ok). Never logs or stores the token."""
        token = None
        if authorization and authorization.lower().startswith("bearer "):
            token = authorization[7:].strip() or None
        if token is None:
            if self.require_token:
                return None, False
            return (None if self.explicit else DEFAULT_USER), True
        name = self.explicit.get(token) or self._token_hashes.get(_hash(token))
        if name:
            return name, True
        if self.explicit:
            return None, False
        return DEFAULT_USER, True

    # -- accounts ------------------------------------------------------------------------------
    def get(self, name: str) -> Account:
        """The account named `name`; a name never seen is a user with the default (PRO) profile."""
        with self._lock:
            account = self._accounts.get(name)
            return copy.deepcopy(account) if account else Account(name)

    def all(self) -> list[Account]:
        with self._lock:
            names = set(self._accounts) | set(self.explicit.values())
            return [copy.deepcopy(self._accounts.get(n) or Account(n)) for n in sorted(names)]

    def update(self, name: str, changes: dict[str, Any]) -> Account:
        """Create or change `name`. Raises ValueError naming the field for a bad value."""
        allowed = {"type", "plan", "canPay", "credits", "members", "token"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"unknown account fields {sorted(unknown)}; known: {sorted(allowed)}")
        with self._lock:
            account = copy.deepcopy(self._accounts.get(name) or Account(name))
            if "type" in changes:
                if changes["type"] not in ("user", "org"):
                    raise ValueError(f"type must be 'user' or 'org', got {changes['type']!r}")
                account.type = changes["type"]
                if account.type == "org" and "plan" not in changes and account.plan not in ORG_PLANS:
                    account.plan = "team"
            if "plan" in changes:
                plans = ORG_PLANS if account.type == "org" else USER_PLANS
                if changes["plan"] not in plans:
                    raise ValueError(f"plan of {account.type} {name!r} must be one of {', '.join(plans)}, "
                                     f"got {changes['plan']!r}")
                account.plan = changes["plan"]
            if "canPay" in changes:
                if not isinstance(changes["canPay"], bool):
                    raise ValueError(f"canPay must be true or false, got {changes['canPay']!r}")
                account.can_pay = changes["canPay"]
            if "credits" in changes:
                try:
                    account.credits_usd = float(changes["credits"])
                except (TypeError, ValueError):
                    raise ValueError(f"credits must be a number of USD, got {changes['credits']!r}") from None
            if "members" in changes:
                members = changes["members"]
                if account.type != "org" or not isinstance(members, list) or not all(isinstance(m, str)
                                                                                     for m in members):
                    raise ValueError("members must be a list of user names, on an org")
                account.members = list(members)
            if "token" in changes:
                token = changes["token"]
                if account.type != "user" or not isinstance(token, str) or len(token) < 8:
                    raise ValueError("token must be a string of at least 8 characters, on a user")
                self._token_hashes[_hash(token)] = name
            self._accounts[name] = account
            self._save()
            return copy.deepcopy(account)

    def _save(self) -> None:
        if self._path is not None:
            atomic_write_json(self._path, {"accounts": {n: asdict(a) for n, a in self._accounts.items()},
                                           "tokens": self._token_hashes}, self._fsync)

    def orgs_of(self, user: str) -> list[Account]:
        with self._lock:
            return [copy.deepcopy(a) for a in self._accounts.values() if a.type == "org" and user in a.members]

    def may_act_for(self, user: str | None, namespace: str) -> bool:
        """Whether `user` may write in `namespace`: their own, or an org they are a member of."""
        return user is not None and (user == namespace or any(o.name == namespace for o in self.orgs_of(user)))

    def quota_plan(self, user: str | None) -> str:
        """The plan whose request quotas apply: the user's own or, if better, an org's they belong to
        (hub-docs rate-limits.md: an org's limits apply to each member)."""
        if user is None:
            return "anonymous"
        order = ("free", "pro", "team", "enterprise")
        plans = [self.get(user).plan, *(o.plan for o in self.orgs_of(user))]
        return max((p for p in plans if p in order), key=order.index, default="free")

    # -- what whoami says ----------------------------------------------------------------------
    def whoami(self, user: str, avatar_base: str) -> dict[str, Any]:
        """`/api/whoami-v2` for `user`: the fields huggingface.js types `WhoAmIUser` / `WhoAmIOrg`
        (isPro, canPay, periodEnd; orgs with canPay and their plan)."""
        account = self.get(user)
        orgs = [{
            "type": "org",
            "id": _entity_id(org.name),
            "name": org.name,
            "fullname": org.name,
            "email": None,
            "canPay": org.can_pay,
            "avatarUrl": f"{avatar_base}/avatars/{org.name}.svg",
            "periodEnd": None,
            # Marked deprecated in huggingface.js's types, but still how an org's plan shows.
            "plan": org.plan,
            "isEnterprise": org.plan == "enterprise",
            "roleInOrg": "admin",
        } for org in self.orgs_of(user)]
        return {
            "type": "user",
            "id": _entity_id(user),
            "name": user,
            "fullname": user.capitalize(),
            "email": f"{user}@example.invalid",
            "emailVerified": True,
            "avatarUrl": f"{avatar_base}/avatars/{user}.svg",
            "isPro": account.plan == "pro",
            "canPay": account.can_pay,
            "periodEnd": None,
            "orgs": orgs,
            "auth": {"type": "access_token", "accessToken": {"displayName": "emulator", "role": "write"}},
        }

    # -- plan gates (hub-facts §11) ---------------------------------------------------------------
    def check_space_hosting(self, namespace: str, sdk: str | None, flavor: str, zero_gpu_spaces: int = 0) -> None:
        """Refuse hosting a Gradio/Docker Space of `namespace` on free hardware without a paid plan.

        Free hardware (cpu-basic, zero-a10g) needs PRO for a user, Team or Enterprise for an org;
        a free user may still host up to 2 Spaces on ZeroGPU (`zero_gpu_spaces`: how many it
        already has). Paid flavors are a matter of the payment method (`check_hardware_payment`).
        Raises HubRefusal (402).
        """
        if sdk not in HOSTED_SDKS or is_paid(flavor):
            return
        account = self.get(namespace)
        if account.type == "org":
            if account.plan == "free":
                raise HubRefusal(402, NEEDS_TEAM)
            return
        if account.plan != "free":
            return
        if flavor != "zero-a10g":
            raise HubRefusal(402, NEEDS_PRO)
        if zero_gpu_spaces >= FREE_ZERO_GPU_SPACES:
            raise HubRefusal(402, ZERO_GPU_CAP)

    def check_hardware_payment(self, namespace: str, flavor: str) -> None:
        """Refuse paid hardware for a Space of `namespace` without a payment method (403)."""
        if is_paid(flavor) and not self.get(namespace).can_pay:
            raise HubRefusal(403, NEEDS_PAYMENT)

    def check_jobs(self, namespace: str) -> None:
        """Refuse a Job of `namespace` without a positive credit balance (402)."""
        if self.get(namespace).credits_usd <= 0:
            raise HubRefusal(402, NEEDS_CREDITS)


def _entity_id(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:24]
