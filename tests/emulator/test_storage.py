"""The repo store on its own, and bad input to the commit route."""

from __future__ import annotations

import subprocess

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.emulator.storage import Operation, ParentMismatch, RepoStore, git_blob_sha1

segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-. ", min_size=1, max_size=12).filter(
    lambda s: s.strip() not in ("", ".", "..") and s == s.strip())
paths = st.lists(segment, min_size=1, max_size=3).map("/".join)


def test_git_blob_sha1_matches_git():
    try:
        out = subprocess.run(["git", "hash-object", "--stdin"], input=b"abc\n", capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git not available")
    assert git_blob_sha1(b"abc\n") == out.stdout.decode().strip()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.dictionaries(paths, st.binary(max_size=300), min_size=1, max_size=5))
def test_committed_files_read_back_identically(tmp_path_factory, files):
    store = RepoStore(tmp_path_factory.mktemp("store"), fsync=False)
    store.create("dataset", "demo/x", "demo", False)
    head = store.resolve("dataset", "demo/x", "main").id
    commit = store.commit("dataset", "demo/x", [Operation("add", p, c) for p, c in files.items()],
                          title="t", parent_commit=head)
    for path, content in files.items():
        meta = commit.tree[path]
        assert store.read_blob(meta["oid"]) == content and meta["size"] == len(content)
    with pytest.raises(ParentMismatch):
        store.commit("dataset", "demo/x", [], title="stale", parent_commit=head)
    assert [c.id for c in store.history("dataset", "demo/x", "main")][0] == commit.id


@pytest.mark.parametrize("body", [
    b"not json",
    b'{"key":"file","value":{"path":"a","content":"!!!","encoding":"base64"}}',
    b'{"key":"header","value":{"summary":"x"}}\n{"key":"file","value":{"path":"../up","content":""}}',
    b'{"key":"header","value":{"summary":"x"}}\n{"key":"lfsFile","value":{"path":"a","oid":"0","size":1}}',
    b'{"key":"header","value":{"summary":"x"}}\n{"key":"deletedFile","value":{"path":"missing"}}',
])
def test_malformed_commit_payloads_are_client_errors(hf_api, emulator, body):
    hf_api.create_repo("demo/q", repo_type="dataset")
    before = hf_api.repo_info("demo/q", repo_type="dataset").sha
    r = httpx.post(f"{emulator.url}/api/datasets/demo/q/commit/main", content=body,
                   headers={"content-type": "application/x-ndjson"})
    assert 400 <= r.status_code < 500 and "error" in r.json()
    assert hf_api.repo_info("demo/q", repo_type="dataset").sha == before
