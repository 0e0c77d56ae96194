"""The Hub's quotas: 128 commits per hour per repository, and requests per account per 5 minutes."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_url
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import parse_ratelimit_headers

from scheduler.emulator import start_emulator
from tests.conftest import TEST_TOKEN

DS = "demo/queue"


def upload(api, content: bytes, **kw):
    return api.upload_file(path_or_fileobj=content, path_in_repo="tasks.csv", repo_id=DS, repo_type="dataset", **kw)


def commits(api) -> int:
    return len(api.list_repo_commits(DS, repo_type="dataset"))


def test_the_commit_past_the_hourly_quota_gets_the_hubs_429_and_retry_after(hf_api, emulator):
    hf_api.create_repo(DS, repo_type="dataset")  # repo creation is no commit of the quota
    for i in range(128):
        upload(hf_api, f"{i}".encode())
    with pytest.raises(HfHubHTTPError) as excinfo:
        upload(hf_api, b"one too many")
    response = excinfo.value.response
    assert response.status_code == 429
    assert excinfo.value.server_message == ("You have exceeded the rate limit for repository commits (128 per hour). "
                                            "You can retry this action in about 1 hour.")
    assert 3590 <= int(response.headers["Retry-After"]) <= 3600
    assert commits(hf_api) == 1 + 128  # the refused commit was not applied
    emulator.advance_clock(int(response.headers["Retry-After"]))
    upload(hf_api, b"allowed again")


def test_a_compressed_window_names_its_numbers_and_every_writer_shares_it(hf_api, emulator):
    emulator.set_rules("commit_limit=3,commit_window_s=400")
    emulator.set_user("alice", token="hf_alice_token_0123")
    emulator.set_user("acme", type="org", plan="team", members=["demo", "alice"])
    repo = "acme/queue"
    hf_api.create_repo(repo, repo_type="dataset")
    alice = HfApi(endpoint=emulator.url, token="hf_alice_token_0123")
    assert alice.whoami()["name"] == "alice"

    def write(api, content: bytes):
        return api.upload_file(path_or_fileobj=content, path_in_repo="tasks.csv", repo_id=repo, repo_type="dataset")

    write(hf_api, b"a")
    emulator.advance_clock(100)
    write(alice, b"b")
    write(hf_api, b"c")
    with pytest.raises(HfHubHTTPError) as excinfo:
        write(alice, b"d")
    assert "(3 per 400 seconds)" in excinfo.value.server_message
    assert "in about 400 seconds" in excinfo.value.server_message
    assert excinfo.value.response.headers["Retry-After"] == "300"  # when the first of the three leaves
    assert httpx.get(f"{emulator.url}/_emulator/quotas").json()["commits"]["dataset/acme/queue"]["used"] == 3
    hf_api.create_repo(DS, repo_type="dataset")
    upload(hf_api, b"x")  # another repo has its own quota
    emulator.advance_clock(300)
    write(alice, b"d")


def test_a_refused_412_counts_unless_the_rule_says_otherwise_and_a_no_op_never_counts(hf_api, emulator):
    emulator.set_rules(commit_limit=3)
    hf_api.create_repo(DS, repo_type="dataset")
    stale = upload(hf_api, b"v1").oid
    upload(hf_api, b"v2")
    upload(hf_api, b"v2")  # identical content: the client skips the commit, no request is sent
    with pytest.raises(HfHubHTTPError) as excinfo:
        upload(hf_api, b"v3", parent_commit=stale)
    assert excinfo.value.response.status_code == 412
    with pytest.raises(HfHubHTTPError) as excinfo:
        upload(hf_api, b"v3")
    assert excinfo.value.response.status_code == 429  # v1, v2 and the 412

    emulator.set_rules(count_412=False, commit_limit=4)
    with pytest.raises(HfHubHTTPError) as excinfo:
        upload(hf_api, b"v3", parent_commit=stale)
    assert excinfo.value.response.status_code == 412
    upload(hf_api, b"v3")  # the 412 just refused took no slot


def test_with_the_commit_quota_off_nothing_is_counted(hf_api, emulator):
    emulator.set_rules(commit_quota=False, commit_limit=1)
    hf_api.create_repo(DS, repo_type="dataset")
    for i in range(3):
        upload(hf_api, f"{i}".encode())
    assert httpx.get(f"{emulator.url}/_emulator/quotas").json()["commits"] == {}


def test_every_answer_carries_the_ratelimit_headers_of_its_bucket(hf_api, emulator):
    hf_api.create_repo(DS, repo_type="dataset")
    upload(hf_api, b"content")
    auth = {"authorization": f"Bearer {TEST_TOKEN}"}
    api_answer = httpx.get(f"{emulator.url}/api/datasets/{DS}", headers=auth)
    resolver = httpx.head(hf_hub_url(DS, "tasks.csv", repo_type="dataset", endpoint=emulator.url), headers=auth)
    page = httpx.get(f"{emulator.url}/datasets/{DS}", headers=auth)  # a page (404 here: still counted)
    for answer, bucket, quota in ((api_answer, "api", 2500), (resolver, "resolvers", 12000), (page, "pages", 400)):
        info = parse_ratelimit_headers(answer.headers)
        assert info.resource_type == bucket and info.limit == quota and info.window_seconds == 300, answer.headers
        assert 0 < info.remaining < quota and 0 < info.reset_in_seconds <= 300
        assert answer.headers["ratelimit-policy"] == f'"fixed window";"{bucket}";q={quota};w=300'
    control = httpx.get(f"{emulator.url}/_emulator/health")
    assert "ratelimit" not in control.headers and "date" in control.headers


def test_past_its_quota_an_account_gets_429_until_the_window_resets(hf_api, emulator):
    emulator.set_rules("quota.pro.api=5")
    for _ in range(5):
        hf_api.whoami()
    refused = httpx.get(f"{emulator.url}/api/whoami-v2", headers={"authorization": f"Bearer {TEST_TOKEN}"})
    assert refused.status_code == 429
    info = parse_ratelimit_headers(refused.headers)
    assert info.remaining == 0 and info.limit == 5
    with pytest.raises(HfHubHTTPError) as excinfo:
        hf_api.list_spaces_hardware()  # not retried by the client: it raises, naming the bucket
    assert "'api' rate limit" in str(excinfo.value) and "0/5 requests remaining" in str(excinfo.value)
    # Downloads are another bucket, and other accounts have their own counts.
    assert httpx.get(f"{emulator.url}/api/whoami-v2", headers={"authorization": "Bearer hf_hobbyisttoken0123456789"}
                     ).status_code == 200
    emulator.advance_clock(info.reset_in_seconds)
    assert hf_api.whoami()["name"] == "demo"


def test_quotas_follow_the_plan(emulator, free_api):
    free_api.whoami()
    usage = httpx.get(f"{emulator.url}/_emulator/quotas").json()
    assert usage["window_s"] == 300 and 0 < usage["reset_s"] <= 300
    assert usage["accounts"]["hobbyist"]["plan"] == "free"
    assert usage["accounts"]["hobbyist"]["buckets"]["api"] == {"used": 1, "quota": 1000, "remaining": 999}


def test_anonymous_requests_count_per_client_ip_and_a_401_carries_the_headers_too(tmp_path):
    with start_emulator(tmp_path / "hub", users={"hf_alice_token_0123": "alice"}, fsync=False) as hub:
        anonymous = httpx.get(f"{hub.url}/api/spaces/hardware")
        info = parse_ratelimit_headers(anonymous.headers)
        assert anonymous.status_code == 200 and info.limit == 500 and info.remaining == 499
        refused = httpx.get(f"{hub.url}/api/whoami-v2", headers={"authorization": "Bearer hf_not_a_token"})
        assert refused.status_code == 401 and parse_ratelimit_headers(refused.headers).remaining == 498
        usage = httpx.get(f"{hub.url}/_emulator/quotas").json()["accounts"]
        assert usage["ip:127.0.0.1"]["plan"] == "anonymous"


def test_an_org_member_gets_the_better_of_their_plans_quotas(emulator, free_api):
    emulator.set_user("acme", type="org", plan="team", members=["hobbyist"])
    answer = httpx.get(f"{emulator.url}/api/whoami-v2", headers={"authorization": "Bearer hf_hobbyisttoken0123456789"})
    assert parse_ratelimit_headers(answer.headers).limit == 3000


def test_ratelimit_windows_follow_the_emulator_clock(hf_api, emulator):
    hf_api.whoami()
    before = httpx.get(f"{emulator.url}/_emulator/quotas").json()["accounts"]["demo"]["buckets"]["api"]["used"]
    emulator.advance_clock(300)
    after = httpx.get(f"{emulator.url}/_emulator/quotas").json()["accounts"]["demo"]["buckets"]["api"]["used"]
    assert before >= 1 and after == 0


def test_raw_commit_posts_past_the_quota_are_refused_before_they_are_applied(hf_api, emulator):
    emulator.set_rules(commit_limit=1)
    hf_api.create_repo(DS, repo_type="dataset")
    body = "\n".join(json.dumps(line) for line in (
        {"key": "header", "value": {"summary": "raw"}},
        {"key": "file", "value": {"path": "f", "content": base64.b64encode(b"x").decode(), "encoding": "base64"}}))
    post = lambda: httpx.post(f"{emulator.url}/api/datasets/{DS}/commit/main", content=body,  # noqa: E731
                              headers={"content-type": "application/x-ndjson",
                                       "authorization": f"Bearer {TEST_TOKEN}"})
    assert post().status_code == 200
    refused = post()
    assert refused.status_code == 429 and refused.headers["retry-after"] == "3600"
    assert emulator.stats["commit_quota_429"] == 1
