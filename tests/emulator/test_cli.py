"""The `space-scheduler emulator` verb and `python -m scheduler.emulator`."""

from __future__ import annotations

import httpx
from huggingface_hub import HfApi

from scheduler.cli import build_parser
from scheduler.emulator import spawn_emulator


def test_emulator_verb_parses_its_flags():
    args = build_parser().parse_args(["emulator", "--port", "0", "--data", "d", "--boot-delay", "0.5",
                                      "--require-token", "--commit-429-every", "3", "--error-rate", "0.1",
                                      "--user", "alice:hf_token_a"])
    assert args.boot_delay == 0.5 and args.require_token and args.commit_429_every == 3
    assert args.user == ["alice:hf_token_a"] and callable(args.handler)


def test_spawned_emulator_takes_fault_and_user_options_and_restarts_on_the_same_port(tmp_path):
    with spawn_emulator(tmp_path / "hub", boot_delay=0.1, commit_429_every=5, seed=1,
                        users={"hf_alice_token_123": "alice"}) as proc:
        assert httpx.get(f"{proc.url}/_emulator/faults").json()["commit_429_every"] == 5
        api = HfApi(endpoint=proc.url, token="hf_alice_token_123")
        assert api.whoami()["name"] == "alice"
        api.create_repo("alice/data", repo_type="dataset")
        port = proc.port
        proc.restart()
        assert proc.port == port and api.repo_exists("alice/data", repo_type="dataset")
