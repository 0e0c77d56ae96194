"""The Hub's rules are on by default; each can be switched off or tuned, from Python, HTTP or the CLI."""

from __future__ import annotations

import httpx
import pytest

from scheduler.cli import build_parser
from scheduler.emulator import start_emulator
from scheduler.emulator.rules import Rules
from scheduler.emulator.server import rules_to_arg


def test_every_rule_is_on_by_default_and_shown_in_the_config(emulator):
    config = httpx.get(f"{emulator.url}/_emulator/config").json()
    rules = config["rules"]
    for switch in ("commit_quota", "request_quota", "plans", "sleep", "fixed_cpu_basic_sleep", "restart_on_config",
                   "gpu_machine", "webhook_quota", "count_412"):
        assert rules[switch] is True, switch
    assert rules["commit_limit"] == 128 and rules["commit_window_s"] == 3600
    assert rules["request_window_s"] == 300 and rules["request_quotas"]["free"]["api"] == 1000
    assert rules["replica_overlap_s"] > 0 and rules["sleep_stage"] == "SLEEPING"
    assert httpx.get(f"{emulator.url}/_emulator/rules").json() == rules


def test_a_rules_string_switches_off_tunes_and_uses_aliases():
    rules = Rules().with_changes("quota=off, overlap=0, commit_limit=12,commit_window_s=400,"
                                 "quota.free.api=50,sleep_stage=stopped")
    assert not rules.commit_quota and not rules.request_quota and rules.replica_overlap_s == 0
    assert rules.commit_limit == 12 and rules.commit_window_s == 400
    assert rules.request_quotas["free"]["api"] == 50 and rules.request_quotas["pro"]["api"] == 2500
    assert rules.sleep_stage == "STOPPED"
    everything_off = Rules().with_changes({"all": False})
    assert not any(getattr(everything_off, s) for s in ("plans", "sleep", "gpu_machine", "webhook_quota"))
    assert Rules().with_changes("overlap=on").replica_overlap_s > 0
    assert Rules().with_changes("overlap=1.5").replica_overlap_s == 1.5


def test_a_rules_flag_round_trips_through_its_string_form():
    tuned = Rules().with_changes("commit_limit=7,sleep=off,quota.pro.pages=9")
    assert Rules().with_changes(rules_to_arg(tuned)) == tuned


@pytest.mark.parametrize("bad, named", [
    ("commit_quota=maybe", "commit_quota"), ("nonsense=1", "nonsense"), ("commit_limit=0", "commit_limit"),
    ("commit_window_s=-5", "commit_window_s"), ("quota.gold.api=5", "quota.gold.api"),
    ("sleep_stage=NAPPING", "sleep_stage"), ("commit_limit", "commit_limit"), ("request_window_s=0", "request_window_s"),
])
def test_a_bad_rule_is_refused_with_its_name(bad, named):
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        Rules().with_changes(bad)


def test_rules_change_at_run_time_over_http_and_reset(emulator):
    r = httpx.post(f"{emulator.url}/_emulator/rules", json={"sleep": False, "commit_limit": 5})
    assert r.status_code == 200 and r.json()["sleep"] is False and r.json()["commit_limit"] == 5
    assert emulator.hub.rules.current.commit_limit == 5
    bad = httpx.post(f"{emulator.url}/_emulator/rules", json={"commit_limit": "many"})
    assert bad.status_code == 400 and "commit_limit" in bad.json()["error"]
    assert emulator.hub.rules.current.commit_limit == 5  # a refused change changes nothing
    assert httpx.post(f"{emulator.url}/_emulator/rules", json={"reset": True}).json() == Rules().to_dict()


def test_start_emulator_takes_rules_and_refuses_a_bad_one_before_taking_the_data_dir(tmp_path):
    with pytest.raises(ValueError, match="bogus"):
        start_emulator(tmp_path / "hub", rules="bogus=1")
    with start_emulator(tmp_path / "hub", rules={"plans": False}, fsync=False) as hub:  # same dir: not locked
        assert hub.hub.rules.current.plans is False and hub.hub.rules.current.sleep is True


def test_the_emulator_verb_takes_a_rules_flag():
    args = build_parser().parse_args(["emulator", "--data", "d", "--rules", "quota=off,overlap=0"])
    assert args.rules == "quota=off,overlap=0"
