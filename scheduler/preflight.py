"""What `deploy` checks before it writes anything: who the token is, that it may write to both
namespaces, that the plan can host a Gradio Space, that GPU hardware (or Jobs) can be paid for.

`missing_prerequisites()` is a pure function of the `whoami-v2` answer and the deploy's choices, so each
rule is a row in a test. The rules come from the Hub's documentation (hub-facts §11): creating a Gradio
or Docker Space needs PRO (a user) or Team/Enterprise (an organization); requesting GPU hardware needs a
payment method on file (`canPay`); Jobs draw on pre-paid credits, which no API reports, so only the
payment method is checked for them and the credits are named in the notes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

PRO_URL = "https://huggingface.co/pro"
TEAM_URL = "https://huggingface.co/enterprise"
BILLING_URL = "https://huggingface.co/settings/billing"
TOKENS_URL = "https://huggingface.co/settings/tokens"
WRITE_ROLES = ("admin", "write", "contributor")


@dataclass(frozen=True)
class Plan:
    """What a deploy is about to do: the two namespaces and whether it creates the Space."""

    space_namespace: str
    queue_namespace: str
    creates_space: bool
    executor: str = "space"  # space | jobs | local


@dataclass
class Verdict:
    """Missing prerequisites (one line each, what to do included) and notes worth knowing."""

    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _entity(me: Mapping[str, Any], namespace: str) -> Mapping[str, Any] | None:
    if namespace == me.get("name"):
        return me
    return next((o for o in me.get("orgs") or [] if o.get("name") == namespace), None)


def _can_write(me: Mapping[str, Any], namespace: str) -> str | None:
    """None if the token may write repos in `namespace`, else why not."""
    token = ((me.get("auth") or {}).get("accessToken") or {})
    role = token.get("role")
    entity = _entity(me, namespace)
    if entity is None:
        return f"{me.get('name')} is neither {namespace} nor a member of it"
    if entity is not me and entity.get("roleInOrg") not in WRITE_ROLES:
        return f"{me.get('name')} is only {entity.get('roleInOrg') or 'a reader'} in {namespace}"
    if role == "read":
        return "the token is read-only"
    if role == "fineGrained":
        grained = token.get("fineGrained") or {}
        allowed = set(grained.get("global") or [])
        for scope in grained.get("scoped") or []:
            if (scope.get("entity") or {}).get("name") == namespace:
                allowed |= set(scope.get("permissions") or [])
        if "repo.write" not in allowed:
            return f"the fine-grained token has no repo.write permission on {namespace}"
    return None


def _hosts_gradio(entity: Mapping[str, Any]) -> bool:
    if entity.get("type") == "org":
        return entity.get("plan") in ("team", "enterprise") or bool(entity.get("isEnterprise"))
    return bool(entity.get("isPro"))


def missing_prerequisites(me: Mapping[str, Any], plan: Plan) -> Verdict:
    """Every prerequisite `plan` lacks, as one line with what to do; nothing is written before this passes."""
    verdict = Verdict()
    for label, namespace in (("the Space", plan.space_namespace), ("the queue dataset", plan.queue_namespace)):
        why = _can_write(me, namespace)
        if why:
            verdict.missing.append(f"cannot write {label} in {namespace}: {why}; use a write token ({TOKENS_URL})")
    space_owner = _entity(me, plan.space_namespace)
    if space_owner is None:
        return verdict
    is_org = space_owner.get("type") == "org"
    if plan.creates_space and not _hosts_gradio(space_owner):
        if is_org:
            verdict.missing.append(f"{plan.space_namespace} is on the free plan: hosting a Gradio Space needs a Team "
                                   f"or Enterprise subscription ({TEAM_URL})")
        else:
            verdict.missing.append(f"{plan.space_namespace} has no PRO subscription: hosting a Gradio Space needs one "
                                   f"({PRO_URL}); without it, run the worker on your machine "
                                   f"(`space-scheduler worker --executor local`)")
    if plan.executor in ("space", "jobs") and not space_owner.get("canPay"):
        what = "GPU hardware for the Space" if plan.executor == "space" else "Jobs"
        verdict.missing.append(f"{plan.space_namespace} has no payment method: {what} cannot be paid for; add one "
                               f"({BILLING_URL})")
    if plan.executor == "jobs":
        verdict.notes.append(f"Jobs draw on {plan.space_namespace}'s pre-paid credits, which the Hub does not report "
                             f"through its API: check them at {BILLING_URL}")
    return verdict
