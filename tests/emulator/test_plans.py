"""Plans and payment: what a free account may not do, what whoami reports, and changing accounts."""

from __future__ import annotations

import time

import httpx
import pytest
from huggingface_hub.errors import HfHubHTTPError

from scheduler.emulator.accounts import NEEDS_CREDITS, NEEDS_PAYMENT, NEEDS_PRO, NEEDS_TEAM, ZERO_GPU_CAP


def refused(call, status: int, message: str) -> None:
    with pytest.raises(HfHubHTTPError) as excinfo:
        call()
    assert excinfo.value.response.status_code == status
    assert excinfo.value.server_message == message


def test_whoami_reports_plan_payment_method_and_orgs_with_their_plan(hf_api, free_api, emulator):
    demo = hf_api.whoami()
    assert demo["isPro"] is True and demo["canPay"] is True and demo["orgs"] == []
    free = free_api.whoami()
    assert free["name"] == "hobbyist" and free["isPro"] is False and free["canPay"] is False
    emulator.set_user("acme", type="org", plan="enterprise", canPay=True, members=["demo"])
    [org] = hf_api.whoami()["orgs"]
    assert org["name"] == "acme" and org["type"] == "org" and org["canPay"] is True
    assert org["plan"] == "enterprise" and org["isEnterprise"] is True


@pytest.mark.parametrize("sdk", ["gradio", "docker"])
def test_a_free_account_cannot_create_a_gradio_or_docker_space_and_nothing_is_created(free_api, sdk):
    refused(lambda: free_api.create_repo("hobbyist/app", repo_type="space", space_sdk=sdk), 402, NEEDS_PRO)
    assert not free_api.repo_exists("hobbyist/app", repo_type="space")


def test_a_free_account_may_host_a_static_space_and_two_zero_gpu_spaces(free_api):
    free_api.create_repo("hobbyist/site", repo_type="space", space_sdk="static")
    for name in ("zero1", "zero2"):
        free_api.create_repo(f"hobbyist/{name}", repo_type="space", space_sdk="gradio", space_hardware="zero-a10g")
    refused(lambda: free_api.create_repo("hobbyist/zero3", repo_type="space", space_sdk="gradio",
                                         space_hardware="zero-a10g"), 402, ZERO_GPU_CAP)
    # Its ZeroGPU Space cannot move to free cpu-basic either, nor to a GPU without a payment method.
    refused(lambda: free_api.request_space_hardware("hobbyist/zero1", "cpu-basic"), 402, NEEDS_PRO)
    refused(lambda: free_api.request_space_hardware("hobbyist/zero1", "t4-small"), 403, NEEDS_PAYMENT)


def test_a_free_account_cannot_duplicate_into_a_gradio_space(hf_api, free_api):
    hf_api.create_repo("demo/public-app", repo_type="space", space_sdk="gradio")
    refused(lambda: free_api.duplicate_repo("demo/public-app", "hobbyist/copy", repo_type="space"), 402, NEEDS_PRO)
    assert not free_api.repo_exists("hobbyist/copy", repo_type="space")


def test_paid_hardware_needs_a_payment_method_and_jobs_need_credits(hf_api, emulator):
    hf_api.create_repo("demo/app", repo_type="space", space_sdk="gradio")
    emulator.set_user("demo", canPay=False, credits=0)
    refused(lambda: hf_api.request_space_hardware("demo/app", "t4-small"), 403, NEEDS_PAYMENT)
    refused(lambda: hf_api.create_repo("demo/gpu", repo_type="space", space_sdk="gradio", space_hardware="a10g-small"),
            403, NEEDS_PAYMENT)
    refused(lambda: hf_api.run_job(image="python:3.12", command=["python", "-c", "1"], namespace="demo"),
            402, NEEDS_CREDITS)
    assert list(hf_api.list_jobs(namespace="demo")) == []
    hf_api.request_space_hardware("demo/app", "cpu-basic")  # free hardware stays possible for a PRO user
    r = httpx.post(f"{emulator.url}/_emulator/users/demo", json={"canPay": True, "credits": 5})
    assert r.json() == {"name": "demo", "type": "user", "plan": "pro", "canPay": True, "credits": 5.0}
    assert hf_api.request_space_hardware("demo/app", "t4-small").requested_hardware == "t4-small"
    job = hf_api.run_job(image="python:3.12", command=["python", "-c", "1"], namespace="demo")
    assert job.id


def test_an_org_needs_team_or_enterprise_to_host_a_gradio_space(hf_api, emulator):
    emulator.set_user("club", type="org", plan="free", members=["demo"])
    refused(lambda: hf_api.create_repo("club/app", repo_type="space", space_sdk="gradio"), 402, NEEDS_TEAM)
    emulator.set_user("club", plan="team")
    hf_api.create_repo("club/app", repo_type="space", space_sdk="gradio")


def test_accounts_are_changed_and_listed_at_run_time_and_bad_changes_name_the_field(emulator):
    r = httpx.post(f"{emulator.url}/_emulator/users/carol", json={"plan": "free", "token": "hf_carol_token_1"})
    assert r.status_code == 200 and r.json()["plan"] == "free"
    from huggingface_hub import HfApi

    assert HfApi(endpoint=emulator.url, token="hf_carol_token_1").whoami()["isPro"] is False
    users = {u["name"]: u for u in httpx.get(f"{emulator.url}/_emulator/users").json()}
    assert {"demo", "hobbyist", "carol"} <= set(users) and "token" not in users["carol"]
    for body, field in (({"plan": "gold"}, "plan"), ({"canPay": "yes"}, "canPay"), ({"credits": "lots"}, "credits"),
                        ({"colour": 1}, "colour")):
        bad = httpx.post(f"{emulator.url}/_emulator/users/carol", json=body)
        assert bad.status_code == 400 and field in bad.json()["error"]
    # The token is kept only as a hash in the data dir.
    assert "hf_carol_token_1" not in (emulator.data_dir / "accounts.json").read_text()


def test_with_the_plans_rule_off_a_free_account_may_do_anything(free_api, emulator):
    emulator.set_rules(plans=False)
    free_api.create_repo("hobbyist/app", repo_type="space", space_sdk="gradio", space_hardware="t4-small")
    free_api.run_job(image="x", command=["python", "-c", "1"], namespace="hobbyist")
    deadline = time.monotonic() + 5
    while free_api.get_space_runtime("hobbyist/app").hardware != "t4-small":
        assert time.monotonic() < deadline
        time.sleep(0.05)
