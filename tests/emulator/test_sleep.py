"""Sleep: no custom sleep time on cpu-basic, sleep after inactivity on the emulator clock, wake on a visit."""

from __future__ import annotations

import email.utils

import httpx
import pytest
from huggingface_hub.errors import HfHubHTTPError

from tests.emulator.test_spaces import wait_stage
from tests.support import wait_for

SPACE = "demo/scheduler"
REFUSAL = "Cannot change the sleep time for cpu-basic Spaces"
DAY = 24 * 3600


@pytest.fixture
def space(hf_api):
    hf_api.create_repo(SPACE, repo_type="space", space_sdk="gradio")
    wait_stage(hf_api, SPACE, "RUNNING")
    return SPACE


def refused_400(call) -> None:
    with pytest.raises(HfHubHTTPError) as excinfo:
        call()
    assert excinfo.value.response.status_code == 400 and excinfo.value.server_message == REFUSAL


def test_a_sleep_time_on_cpu_basic_is_refused_wherever_it_is_sent(hf_api, space):
    refused_400(lambda: hf_api.set_space_sleep_time(space, 3600))
    with pytest.warns(UserWarning):  # the client warns, then sends it anyway
        refused_400(lambda: hf_api.request_space_hardware(space, "cpu-basic", sleep_time=3600))
    refused_400(lambda: hf_api.create_repo("demo/other", repo_type="space", space_sdk="gradio", space_sleep_time=600))
    assert not hf_api.repo_exists("demo/other", repo_type="space")
    assert hf_api.get_space_runtime(space).sleep_time is None
    # On upgraded hardware it is the owner's to choose.
    assert hf_api.request_space_hardware(space, "t4-small", sleep_time=900).sleep_time == 900


def test_an_idle_cpu_basic_space_sleeps_after_48_hours_and_a_visit_of_its_page_wakes_it(hf_api, space, emulator):
    emulator.advance_clock(2 * DAY - 60)
    assert hf_api.get_space_runtime(space).stage == "RUNNING"  # the worker's own API calls are no visits
    emulator.advance_clock(60)
    runtime = hf_api.get_space_runtime(space)
    assert runtime.stage == "SLEEPING" and runtime.hardware is None and runtime.requested_hardware == "cpu-basic"
    page = httpx.get(f"{emulator.url}/spaces/{space}")
    assert page.status_code == 200 and "ratelimit" in page.headers  # a page, in the pages bucket
    assert hf_api.get_space_runtime(space).stage == "BUILDING"
    assert wait_stage(hf_api, space, "RUNNING").hardware == "cpu-basic"
    info = httpx.get(f"{emulator.url}/_emulator/spaces/{space}").json()
    assert info["restarts"] == {"wake": 1} and info["boots"] == 2


def test_a_sleeping_gpu_space_is_not_billed_and_a_control_visit_or_a_restart_wakes_it(hf_api, space, emulator):
    hf_api.request_space_hardware(space, "t4-small", sleep_time=600)
    wait_stage(hf_api, space, "RUNNING")
    emulator.advance_clock(599)
    assert hf_api.get_space_runtime(space).stage == "RUNNING"
    emulator.advance_clock(1)
    assert hf_api.get_space_runtime(space).stage == "SLEEPING"
    asleep = emulator.billing(space)
    emulator.advance_clock(DAY)
    assert emulator.billing(space)["billed_usd"] == asleep["billed_usd"]  # a day asleep costs nothing
    assert asleep["billed_minutes"]["t4-small"] == 11  # 600 s of the clock and a few real ms: 11 started minutes
    r = httpx.post(f"{emulator.url}/_emulator/spaces/{space}/visit")
    assert r.status_code == 200 and r.json()["stage"] == "BUILDING"
    assert wait_stage(hf_api, space, "RUNNING").hardware == "t4-small"
    emulator.advance_clock(600)
    assert hf_api.get_space_runtime(space).stage == "SLEEPING"
    hf_api.restart_space(space)
    assert wait_stage(hf_api, space, "RUNNING").hardware == "t4-small"


def test_an_upgraded_space_without_a_sleep_time_never_sleeps(hf_api, space, emulator):
    hf_api.request_space_hardware(space, "t4-small")
    wait_stage(hf_api, space, "RUNNING")
    emulator.advance_clock(30 * DAY)
    assert hf_api.get_space_runtime(space).stage == "RUNNING"


def test_the_stage_of_a_slept_space_can_be_stopped_instead(hf_api, space, emulator):
    emulator.set_rules(sleep_stage="STOPPED")
    emulator.advance_clock(2 * DAY)
    assert hf_api.get_space_runtime(space).stage == "STOPPED"
    httpx.get(f"{emulator.url}/spaces/{space}")
    wait_stage(hf_api, space, "RUNNING")


def test_a_paused_space_stays_paused_until_restarted(hf_api, space, emulator):
    hf_api.pause_space(space)
    httpx.get(f"{emulator.url}/spaces/{space}")
    emulator.advance_clock(3 * DAY)
    runtime = hf_api.request_space_hardware(space, "t4-small")
    assert runtime.stage == "PAUSED" and runtime.requested_hardware == "t4-small"
    hf_api.add_space_secret(space, "K", "v")
    assert hf_api.get_space_runtime(space).stage == "PAUSED"
    hf_api.restart_space(space)
    assert wait_stage(hf_api, space, "RUNNING").hardware == "t4-small"


def test_a_visit_keeps_a_space_awake(hf_api, space, emulator):
    emulator.advance_clock(DAY + 3600)
    httpx.post(f"{emulator.url}/_emulator/spaces/{space}/visit")
    emulator.advance_clock(DAY + 3600)
    assert hf_api.get_space_runtime(space).stage == "RUNNING"


def test_with_the_sleep_rules_off_nothing_sleeps_and_any_sleep_time_is_kept(hf_api, space, emulator):
    emulator.set_rules(fixed_cpu_basic_sleep=False)
    assert hf_api.set_space_sleep_time(space, 3600).sleep_time == 3600
    emulator.advance_clock(3600)
    assert hf_api.get_space_runtime(space).stage == "RUNNING"  # cpu-basic sleeps after 48 h, whatever was set
    emulator.set_rules(sleep=False)
    emulator.advance_clock(10 * DAY)
    assert hf_api.get_space_runtime(space).stage == "RUNNING"


def test_date_headers_and_commit_times_follow_the_emulator_clock(hf_api, emulator):
    emulator.advance_clock(DAY)
    answer = httpx.get(f"{emulator.url}/api/spaces/hardware")
    date = email.utils.parsedate_to_datetime(answer.headers["date"]).timestamp()
    assert abs(date - emulator.hub.clock.now()) < 2
    hf_api.create_repo("demo/q", repo_type="dataset")
    commit = hf_api.upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id="demo/q", repo_type="dataset")
    [latest, *_] = hf_api.list_repo_commits("demo/q", repo_type="dataset")
    assert latest.commit_id == commit.oid and abs(latest.created_at.timestamp() - emulator.hub.clock.now()) < 5
    assert httpx.post(f"{emulator.url}/_emulator/clock", json={"advance_s": -5}).status_code == 400
    clock = httpx.post(f"{emulator.url}/_emulator/clock", json={"advance_s": 60}).json()
    assert clock["offset_s"] == pytest.approx(DAY + 60)


def test_the_clock_offset_survives_a_restart_of_the_emulator(tmp_path):
    from scheduler.emulator import start_emulator

    with start_emulator(tmp_path / "hub", fsync=False) as hub:
        hub.advance_clock(3600)
    with start_emulator(tmp_path / "hub", fsync=False) as hub:
        assert hub.hub.clock.offset_s == 3600


def test_a_supervised_app_is_stopped_while_its_space_sleeps(hf_api, emulator, tmp_path):
    hf_api.create_repo("demo/app", repo_type="space", space_sdk="gradio")
    httpx.post(f"{emulator.url}/_emulator/spaces/demo/app/supervise",
               json={"command": ["python", "-c", "import time; time.sleep(60)"], "cwd": str(tmp_path)})
    wait_for(lambda: emulator.hub.spaces.supervisor.pid("demo/app"), 10, "the app to start")
    emulator.advance_clock(2 * DAY)
    wait_for(lambda: emulator.hub.spaces.supervisor.pid("demo/app") is None, 10, "the app to stop")
    assert hf_api.get_space_runtime("demo/app").stage == "SLEEPING"


def test_a_sleep_rule_changed_at_run_time_applies_to_running_spaces(hf_api, space, emulator):
    emulator.set_rules(cpu_basic_sleep_s=60)
    emulator.advance_clock(60)
    assert hf_api.get_space_runtime(space).stage == "SLEEPING"
