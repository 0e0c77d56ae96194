"""Webhooks on the emulator, through HfApi: registered per user, delivered after each commit to a
watched repo with the secret header, and never in the way of the commit itself."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from scheduler.emulator import start_emulator
from tests.support import free_port, wait_for


@pytest.fixture
def receiver():
    """A local HTTP server that records every POST (headers and JSON body)."""
    calls: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            calls.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", calls
    server.shutdown()


def test_a_commit_to_a_watched_repo_is_delivered_with_the_secret_and_the_new_sha(hf_api, emulator, receiver):
    url, calls = receiver
    hf_api.create_repo("demo/queue", repo_type="dataset", private=True)
    hf_api.create_repo("demo/unwatched", repo_type="dataset")
    hook = hf_api.create_webhook(url=url, watched=[{"type": "dataset", "name": "demo/queue"}], domains=["repo"],
                                 secret="s3cret")
    assert hf_api.get_webhook(hook.id).secret == "s3cret" and [h.id for h in hf_api.list_webhooks()] == [hook.id]

    hf_api.upload_file(path_or_fileobj=b"x", path_in_repo="a.txt", repo_id="demo/unwatched", repo_type="dataset")
    info = hf_api.upload_file(path_or_fileobj=b"id\n", path_in_repo="tasks.csv", repo_id="demo/queue",
                              repo_type="dataset")
    wait_for(lambda: calls, 10, "the delivery")
    assert len(calls) == 1
    call = calls[0]
    assert call["path"] == "/hook" and call["headers"]["X-Webhook-Secret"] == "s3cret"
    body = call["body"]
    assert body["event"] == {"action": "update", "scope": "repo.content"}
    assert body["repo"]["name"] == "demo/queue" and body["repo"]["type"] == "dataset" and body["repo"]["private"]
    assert body["updatedRefs"] == [{"ref": "refs/heads/main", "oldSha": body["updatedRefs"][0]["oldSha"],
                                    "newSha": info.oid}]
    assert body["webhook"] == {"id": hook.id, "version": 3}
    deliveries = httpx.get(f"{emulator.url}/_emulator/webhooks/deliveries").json()
    assert [(d["repo"], d["status"]) for d in deliveries] == [("demo/queue", 200)]
    assert "s3cret" not in json.dumps(deliveries)

    hf_api.disable_webhook(hook.id)
    hf_api.upload_file(path_or_fileobj=b"id\n1\n", path_in_repo="tasks.csv", repo_id="demo/queue", repo_type="dataset")
    hf_api.enable_webhook(hook.id)
    hf_api.delete_webhook(hook.id)
    hf_api.upload_file(path_or_fileobj=b"id\n2\n", path_in_repo="tasks.csv", repo_id="demo/queue", repo_type="dataset")
    assert hf_api.list_webhooks() == []
    # Deliveries go out in commit order from one sender: once a later webhook's call has arrived,
    # anything wrongly queued for the disabled or deleted one would have arrived before it.
    hf_api.create_webhook(url=url + "2", watched=[{"type": "dataset", "name": "demo/queue"}], domains=["repo"])
    hf_api.upload_file(path_or_fileobj=b"id\n3\n", path_in_repo="tasks.csv", repo_id="demo/queue", repo_type="dataset")
    wait_for(lambda: len(calls) >= 2, 10, "the second webhook's delivery")
    assert [c["path"] for c in calls] == ["/hook", "/hook2"] and "X-Webhook-Secret" not in calls[1]["headers"]


def test_an_unreachable_receiver_never_fails_the_commit(hf_api, emulator):
    hf_api.create_repo("demo/queue", repo_type="dataset")
    hf_api.create_webhook(url="http://127.0.0.1:9/nothing-listens", watched=[{"type": "user", "name": "demo"}],
                          domains=["repo"])
    info = hf_api.upload_file(path_or_fileobj=b"x", path_in_repo="f", repo_id="demo/queue", repo_type="dataset")
    assert hf_api.dataset_info("demo/queue").sha == info.oid
    deliveries = wait_for(lambda: httpx.get(f"{emulator.url}/_emulator/webhooks/deliveries").json(), 10, "a delivery")
    assert deliveries[0]["repo"] == "demo/queue" and "error" in deliveries[0] and "status" not in deliveries[0]


def test_webhooks_are_per_user_and_bad_definitions_name_the_field(tmp_path):
    handle = start_emulator(tmp_path / "hub", users={"hf_alice_token": "alice", "hf_bob_token": "bob"}, fsync=False)
    try:
        alice = HfApi(endpoint=handle.url, token="hf_alice_token")
        bob = HfApi(endpoint=handle.url, token="hf_bob_token")
        hook = alice.create_webhook(url="http://127.0.0.1:9/h", watched=[{"type": "user", "name": "alice"}])
        assert hook.domains == ["repo", "discussion"]  # the client's default: both
        assert bob.list_webhooks() == []
        with pytest.raises(HfHubHTTPError) as err:
            bob.get_webhook(hook.id)
        assert err.value.response.status_code == 404
        with pytest.raises(HfHubHTTPError, match="watched\\[0\\]"):
            alice.create_webhook(url="http://127.0.0.1:9/h", watched=[{"type": "galaxy", "name": "x"}])
        with pytest.raises(HfHubHTTPError, match="url must be an http"):
            alice.create_webhook(url="ftp://x", watched=[{"type": "user", "name": "alice"}])
        assert [h.id for h in alice.list_webhooks()] == [hook.id]
    finally:
        handle.stop()


def test_a_webhook_triggers_at_most_its_limit_per_window_and_is_never_retried(hf_api, emulator, receiver):
    url, calls = receiver
    emulator.set_rules("webhook_limit=2,webhook_window_s=3600")
    hf_api.create_repo("demo/queue", repo_type="dataset")
    hf_api.create_webhook(url=url, watched=[{"type": "dataset", "name": "demo/queue"}], domains=["repo"])
    for i in range(3):
        hf_api.upload_file(path_or_fileobj=f"{i}".encode(), path_in_repo="f", repo_id="demo/queue", repo_type="dataset")
    wait_for(lambda: len(calls) == 2, 10, "two deliveries")
    deliveries = httpx.get(f"{emulator.url}/_emulator/webhooks/deliveries").json()
    assert [d.get("dropped") for d in deliveries].count("webhook trigger limit") == 1
    emulator.advance_clock(3600)
    hf_api.upload_file(path_or_fileobj=b"later", path_in_repo="f", repo_id="demo/queue", repo_type="dataset")
    wait_for(lambda: len(calls) == 3, 10, "the delivery once the window moved on")


def test_a_failed_delivery_is_not_retried(hf_api, emulator):
    hf_api.create_repo("demo/queue", repo_type="dataset")
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    hf_api.create_webhook(url=dead, watched=[{"type": "dataset", "name": "demo/queue"}], domains=["repo"])
    hf_api.upload_file(path_or_fileobj=b"x", path_in_repo="f", repo_id="demo/queue", repo_type="dataset")
    wait_for(lambda: httpx.get(f"{emulator.url}/_emulator/webhooks/deliveries").json(), 10, "the attempt")
    time.sleep(0.5)
    [attempt] = httpx.get(f"{emulator.url}/_emulator/webhooks/deliveries").json()
    assert attempt["error"] and "status" not in attempt
