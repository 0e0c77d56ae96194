"""Fault injection, tokens and users, and state that survives restarts and SIGKILL."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_url
from huggingface_hub.errors import HfHubHTTPError

from scheduler.emulator import DataDirBusy, spawn_emulator, start_emulator

TOKEN = "hf_testtoken0123456789"
DS = "demo/queue"


def upload(api, content: bytes, **kw):
    return api.upload_file(path_or_fileobj=content, path_in_repo="tasks.csv", repo_id=DS, repo_type="dataset", **kw)


def test_every_nth_commit_gets_429_with_retry_after_and_is_not_applied(hf_api, emulator):
    hf_api.create_repo(DS, repo_type="dataset")
    emulator.set_faults(commit_429_every=2, retry_after_s=3)
    upload(hf_api, b"1")
    with pytest.raises(HfHubHTTPError) as excinfo:
        upload(hf_api, b"2")
    assert excinfo.value.response.status_code == 429
    assert excinfo.value.response.headers["Retry-After"] == "3"
    upload(hf_api, b"3")
    assert len(hf_api.list_repo_commits(DS, repo_type="dataset")) == 3  # initial + "1" + "3"
    assert emulator.stats["fault_429"] == 1


def test_error_rate_is_seeded_and_counted_and_control_routes_are_never_faulted(hf_api, emulator):
    r = httpx.post(f"{emulator.url}/_emulator/faults", json={"error_rate": 0.5, "seed": 7, "paths": "^/api/whoami"})
    assert r.json()["error_rate"] == 0.5
    failures = 0
    for _ in range(30):
        try:
            hf_api.whoami()
        except HfHubHTTPError as exc:
            assert exc.response.status_code in (500, 502, 503)
            failures += 1
    assert 5 <= failures <= 25
    assert httpx.get(f"{emulator.url}/_emulator/stats").json()["fault_error"] == failures
    hf_api.create_repo(DS, repo_type="dataset")  # outside the paths filter
    emulator.set_faults(error_rate=1.0, paths=None)
    assert httpx.get(f"{emulator.url}/_emulator/health").status_code == 200
    assert httpx.get(f"{emulator.url}/_emulator/faults").json()["error_rate"] == 1.0
    assert httpx.post(f"{emulator.url}/_emulator/faults", json={"reset": True}).json()["error_rate"] == 0.0
    assert httpx.post(f"{emulator.url}/_emulator/faults", json={"bogus": 1}).status_code == 400


def test_latency_is_added_before_answering(hf_api, emulator):
    emulator.set_faults(latency_s=0.3, latency_rate=1.0, paths="whoami")
    start = time.monotonic()
    hf_api.whoami()
    assert time.monotonic() - start >= 0.3


def test_dropped_response_after_commit_still_applies_the_commit(hf_api, emulator):
    hf_api.create_repo(DS, repo_type="dataset")
    emulator.set_faults(drop_after_commit_rate=1.0)
    with pytest.raises(Exception) as excinfo:
        upload(hf_api, b"applied")
    assert not isinstance(excinfo.value, HfHubHTTPError)  # a transport error: the response was lost
    emulator.set_faults(drop_after_commit_rate=0.0)
    url = hf_hub_url(DS, "tasks.csv", repo_type="dataset", endpoint=emulator.url)
    meta = hf_api.get_hf_file_metadata(url=url)
    assert open(hf_api.hf_hub_download(DS, "tasks.csv", repo_type="dataset", revision=meta.commit_hash),
                "rb").read() == b"applied"
    assert emulator.stats["fault_dropped_after_commit"] == 1


def test_required_token_and_users_decide_who_sees_what(tmp_path):
    users = {"hf_alice_token_123456": "alice", "hf_bob_token_1234567": "bob"}
    with start_emulator(tmp_path / "hub", require_token=True, users=users, boot_delay=0.1) as hub:
        anon = httpx.get(f"{hub.url}/api/whoami-v2")
        assert anon.status_code == 401
        with pytest.raises(HfHubHTTPError) as excinfo:
            HfApi(endpoint=hub.url, token="hf_wrong_token_0000000").whoami()
        assert excinfo.value.response.status_code == 401
        alice = HfApi(endpoint=hub.url, token="hf_alice_token_123456")
        bob = HfApi(endpoint=hub.url, token="hf_bob_token_1234567")
        assert alice.whoami()["name"] == "alice"
        alice.create_repo("alice/private", repo_type="dataset", private=True)
        alice.create_repo("alice/public", repo_type="dataset")
        assert alice.repo_exists("alice/private", repo_type="dataset")
        assert not bob.repo_exists("alice/private", repo_type="dataset")
        assert bob.repo_exists("alice/public", repo_type="dataset")
        with pytest.raises(HfHubHTTPError) as excinfo:
            bob.upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id="alice/public", repo_type="dataset")
        assert excinfo.value.response.status_code == 403


def test_restart_on_the_same_data_keeps_repos_files_and_spaces(tmp_path):
    data = tmp_path / "hub"
    with start_emulator(data, boot_delay=0.1) as hub:
        api = HfApi(endpoint=hub.url, token=TOKEN)
        api.create_repo(DS, repo_type="dataset")
        head = upload(api, b"kept").oid
        api.create_repo("demo/sp", repo_type="space", space_sdk="gradio", space_hardware="t4-small")
        api.add_space_secret("demo/sp", "K", "v")
        with pytest.raises(DataDirBusy):
            start_emulator(data)
    with start_emulator(data, boot_delay=0.1) as hub:
        api = HfApi(endpoint=hub.url, token=TOKEN)
        assert api.repo_info(DS, repo_type="dataset").sha == head
        assert open(api.hf_hub_download(DS, "tasks.csv", repo_type="dataset", force_download=True),
                    "rb").read() == b"kept"
        assert set(api.get_space_secrets("demo/sp")) == {"K"}
        deadline = time.monotonic() + 5
        while api.get_space_runtime("demo/sp").stage != "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert api.get_space_runtime("demo/sp").hardware == "t4-small"


def test_sigkill_during_commits_never_leaves_a_corrupt_head(tmp_path):
    data = tmp_path / "hub"
    # Commits as fast as they go until the kill: far more than the Hub's 128 an hour.
    proc = spawn_emulator(data, rules="commit_quota=off")
    api = HfApi(endpoint=proc.url, token=TOKEN)
    api.create_repo(DS, repo_type="dataset")
    stop = threading.Event()
    done = []

    def writer():
        # Raw commit POSTs: the client's own retries on connection errors would only slow the test.
        i = 0
        with httpx.Client(base_url=proc.url, headers={"authorization": f"Bearer {TOKEN}"}) as http:
            while not stop.is_set():
                content = base64.b64encode(f"row {i}\n".encode() * 50).decode()
                body = "\n".join(json.dumps(line) for line in (
                    {"key": "header", "value": {"summary": f"row {i}"}},
                    {"key": "file", "value": {"path": "tasks.csv", "content": content, "encoding": "base64"}}))
                try:
                    http.post(f"/api/datasets/{DS}/commit/main", content=body,
                              headers={"content-type": "application/x-ndjson"}).raise_for_status()
                except httpx.HTTPError:
                    return
                done.append(i)
                i += 1

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.6)
    proc.kill()
    stop.set()
    t.join(timeout=10)
    assert done, "no commit happened before the kill"
    # A second emulator on a live data dir is refused with a clear message.
    proc.restart()
    try:
        second = subprocess.run([sys.executable, "-m", "scheduler.emulator", "--port", "0", "--data", str(data)],
                                capture_output=True, text=True, timeout=30)
        assert second.returncode == 2 and "already running" in second.stderr
        head = api.repo_info(DS, repo_type="dataset").sha
        content = open(api.hf_hub_download(DS, "tasks.csv", repo_type="dataset", revision=head), "rb").read()
        n = int(content.split()[1])
        assert content == f"row {n}\n".encode() * 50 and n >= done[-1]
        upload(api, b"after restart", parent_commit=head)
    finally:
        proc.stop()
