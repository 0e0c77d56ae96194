"""Space runtime, hardware, billing, secrets, variables, volumes and duplication."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from huggingface_hub import SpaceHardware, SpaceStage
from huggingface_hub.errors import HfHubHTTPError

SPACE = "demo/scheduler"


def wait_stage(api, repo_id, stage, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        runtime = api.get_space_runtime(repo_id)
        if runtime.stage == stage:
            return runtime
        if time.monotonic() > deadline:
            raise AssertionError(f"{repo_id} stayed {runtime.stage}, expected {stage}")
        time.sleep(0.05)


@pytest.fixture
def space(hf_api):
    hf_api.create_repo(SPACE, repo_type="space", space_sdk="gradio")
    wait_stage(hf_api, SPACE, "RUNNING")
    return SPACE


def test_new_space_builds_then_runs_on_cpu_basic(hf_api):
    hf_api.create_repo(SPACE, repo_type="space", space_sdk="gradio")
    runtime = hf_api.get_space_runtime(SPACE)
    assert runtime.stage == "BUILDING" and runtime.hardware is None and runtime.requested_hardware == "cpu-basic"
    runtime = wait_stage(hf_api, SPACE, "RUNNING")
    assert runtime.hardware == SpaceHardware.CPU_BASIC and runtime.sleep_time is None
    info = hf_api.space_info(SPACE)
    assert info.runtime.stage == "RUNNING" and info.sdk == "gradio" and info.subdomain


def test_hardware_request_switches_after_the_boot_delay_and_is_billed(hf_api, space, emulator):
    emulator.set_rules(replica_overlap_s=0)  # the overlap has its own tests in test_replicas.py
    runtime = hf_api.request_space_hardware(space, SpaceHardware.T4_SMALL)
    assert runtime.stage == "RUNNING_BUILDING"
    assert runtime.hardware == "cpu-basic" and runtime.requested_hardware == "t4-small"
    runtime = wait_stage(hf_api, space, "RUNNING")
    assert runtime.hardware == "t4-small"
    time.sleep(0.3)
    hf_api.request_space_hardware(space, "cpu-basic")
    wait_stage(hf_api, space, "RUNNING")
    billing = httpx.get(f"{emulator.url}/_emulator/spaces/{space}/billing").json()
    assert billing["hardware_changes"] == 2
    assert set(billing["billed_seconds"]) == {"t4-small"}
    # Billed from the switch to t4 until the switch back to cpu-basic finished (one boot delay later).
    assert 0.3 <= billing["billed_seconds"]["t4-small"] < 3
    assert billing["cost_usd"]["t4-small"] == pytest.approx(billing["billed_seconds"]["t4-small"] / 3600 * 0.40, rel=1e-3)
    # The bill itself is per started minute: one t4 period, one minute.
    [period] = billing["periods"]
    assert period["flavor"] == "t4-small" and period["billed_minutes"] == 1 and not period["running"]
    assert billing["billed_usd"] == {"t4-small": pytest.approx(0.40 / 60, rel=1e-3)}
    stages = [(e["hardware"], e["stage"]) for e in billing["timeline"]]
    assert ("t4-small", "RUNNING") in stages and ("t4-small", "RUNNING_BUILDING") in stages


def test_requesting_the_current_hardware_does_not_restart(hf_api, space, emulator):
    hf_api.request_space_hardware(space, "t4-small")
    wait_stage(hf_api, space, "RUNNING")
    before = emulator.billing(space)
    runtime = hf_api.request_space_hardware(space, "t4-small", sleep_time=600)
    assert runtime.stage == "RUNNING" and runtime.sleep_time == 600
    after = emulator.billing(space)
    assert len(after["timeline"]) == len(before["timeline"]) and after["boots"] == before["boots"]


def test_pause_stops_billing_until_restart(hf_api, space, emulator):
    hf_api.request_space_hardware(space, "a10g-small")
    wait_stage(hf_api, space, "RUNNING")
    assert hf_api.pause_space(space).stage == SpaceStage.PAUSED
    paused_cost = emulator.billing(space)["total_cost_usd"]
    time.sleep(0.3)
    assert emulator.billing(space)["total_cost_usd"] == paused_cost
    runtime = hf_api.restart_space(space)
    assert runtime.stage == "BUILDING" and runtime.hardware is None
    assert wait_stage(hf_api, space, "RUNNING").hardware == "a10g-small"
    assert hf_api.restart_space(space, factory_reboot=True).stage == "RUNNING_BUILDING"
    hf_api.set_space_sleep_time(space, 300)
    assert hf_api.get_space_runtime(space).sleep_time == 300


def test_secret_values_are_never_returned_by_any_route(hf_api, space, emulator):
    secret = "s3cr3t-value-for-grep"
    hf_api.add_space_secret(space, "API_KEY", secret, description="key")
    secrets = hf_api.get_space_secrets(space)
    assert set(secrets) == {"API_KEY"} and secrets["API_KEY"].description == "key"
    bodies = []
    for path in (f"/api/spaces/{space}/secrets", f"/api/spaces/{space}", f"/api/spaces/{space}/runtime",
                 f"/api/spaces/{space}/variables", f"/_emulator/spaces/{space}/billing", "/_emulator/config",
                 f"/api/spaces/{space}/logs/build", f"/api/spaces/{space}/logs/run", "/_emulator/stats"):
        bodies.append(httpx.get(emulator.url + path, headers={"authorization": "Bearer hf_x"}).text)
    assert not any(secret in body for body in bodies)
    hf_api.delete_space_secret(space, "API_KEY")
    assert hf_api.get_space_secrets(space) == {}


def test_variables_are_stored_and_returned_with_values(hf_api, space):
    hf_api.add_space_variable(space, "MODEL", "gpt2", description="which model")
    variables = hf_api.get_space_variables(space)
    assert variables["MODEL"].value == "gpt2" and variables["MODEL"].description == "which model"
    after = hf_api.delete_space_variable(space, "MODEL")
    assert after == {}


def test_volumes_can_be_set_and_deleted(hf_api, space):
    from huggingface_hub import Volume

    hf_api.set_space_volumes(space, [Volume(type="dataset", source="demo/queue", mount_path="/data")])
    volumes = hf_api.get_space_runtime(space).volumes
    assert volumes and volumes[0].source == "demo/queue" and volumes[0].mount_path == "/data"
    hf_api.delete_space_volumes(space)
    assert hf_api.get_space_runtime(space).volumes is None


def test_duplicate_copies_files_and_variables_but_only_requested_secrets(hf_api, space):
    hf_api.upload_file(path_or_fileobj=b"print('hi')\n", path_in_repo="app.py", repo_id=space,
                       repo_type="space")
    hf_api.add_space_variable(space, "MODE", "prod")
    hf_api.add_space_secret(space, "TOKEN", "do-not-copy")
    url = hf_api.duplicate_repo(space, "demo/copy", repo_type="space", space_hardware="t4-small",
                                space_secrets=[{"key": "NEW", "value": "v"}])
    assert url.repo_id == "demo/copy"
    assert "app.py" in hf_api.list_repo_files("demo/copy", repo_type="space")
    assert hf_api.get_space_variables("demo/copy")["MODE"].value == "prod"
    assert set(hf_api.get_space_secrets("demo/copy")) == {"NEW"}
    assert wait_stage(hf_api, "demo/copy", "RUNNING").hardware == "t4-small"
    with pytest.raises(HfHubHTTPError) as excinfo:
        hf_api.duplicate_repo(space, "demo/copy", repo_type="space")
    assert excinfo.value.response.status_code == 409


def test_space_hardware_list_is_every_space_flavor_with_per_minute_prices(hf_api):
    listed = hf_api.list_spaces_hardware()
    hardware = {h.name: h for h in listed}
    assert set(hardware) == {h.value for h in SpaceHardware}
    assert listed[0].name == "zero-a10g" and hardware["zero-a10g"].unit_cost_usd == 0
    assert hardware["cpu-basic"].unit_cost_usd == 0
    assert hardware["t4-small"].unit_label == "minute"
    assert hardware["t4-small"].unit_cost_usd == pytest.approx(0.40 / 60, rel=1e-3)
    assert hardware["a100-large"].accelerator.model == "A100"


def test_job_hardware_list_is_every_job_flavor_and_no_zero_gpu(hf_api):
    from huggingface_hub import JobHardware

    hardware = {h.name: h for h in hf_api.list_jobs_hardware()}
    assert set(hardware) == {h.value for h in JobHardware}
    assert {"h200", "h200x8", "cpu-performance", "cpu-xl"} <= set(hardware) and "zero-a10g" not in hardware
    assert hardware["h200"].accelerator.model == "H200" and hardware["h200"].unit_label == "minute"
    assert hardware["cpu-basic"].unit_cost_usd > 0  # Jobs have no free tier


@pytest.mark.parametrize("flavor", ["h100-imaginary", "h200", "cpu-performance"])
def test_a_flavor_that_is_no_space_flavor_is_a_400(hf_api, space, flavor):
    with pytest.raises(HfHubHTTPError) as excinfo:
        hf_api.request_space_hardware(space, flavor)
    assert excinfo.value.response.status_code == 400 and flavor in excinfo.value.server_message


def test_space_creation_accepts_hardware_secrets_and_variables(hf_api, emulator):
    hf_api.create_repo("demo/full", repo_type="space", space_sdk="docker", space_hardware="t4-medium",
                       space_secrets=[{"key": "S", "value": "hidden"}],
                       space_variables=[{"key": "V", "value": "shown"}], private=True)
    assert wait_stage(hf_api, "demo/full", "RUNNING").hardware == "t4-medium"
    assert set(hf_api.get_space_secrets("demo/full")) == {"S"}
    assert hf_api.get_space_variables("demo/full")["V"].value == "shown"
    stored = json.loads((emulator.data_dir / "repos/spaces/demo/full/space.json").read_text())
    assert stored["secrets"]["S"]["value"] == "hidden"  # at rest in the data dir, by design
