"""Repos, commits and downloads through the real huggingface_hub client."""

from __future__ import annotations

import threading

import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, hf_hub_url
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError

REPO = "demo/queue"


@pytest.fixture
def dataset(hf_api):
    hf_api.create_repo(REPO, repo_type="dataset")
    return REPO


def test_dataset_upload_and_download_round_trip(hf_api, dataset):
    info = hf_api.upload_file(path_or_fileobj=b"id,state\n1,PENDING\n", path_in_repo="tasks.csv",
                              repo_id=dataset, repo_type="dataset", commit_message="add queue")
    assert info.oid and info.commit_url.endswith(f"/datasets/{dataset}/commit/{info.oid}")
    path = hf_api.hf_hub_download(dataset, "tasks.csv", repo_type="dataset")
    assert open(path, "rb").read() == b"id,state\n1,PENDING\n"
    assert hf_api.repo_info(dataset, repo_type="dataset").sha == info.oid
    assert hf_api.list_repo_commits(dataset, repo_type="dataset")[0].title == "add queue"


def test_a_few_megabytes_file_is_uploaded_as_a_regular_file(hf_api, dataset):
    blob = bytes(range(256)) * 16 * 1024  # 4 MiB
    hf_api.upload_file(path_or_fileobj=blob, path_in_repo="big.bin", repo_id=dataset, repo_type="dataset")
    path = hf_api.hf_hub_download(dataset, "big.bin", repo_type="dataset")
    assert open(path, "rb").read() == blob


def test_stale_parent_commit_is_refused_with_412_and_nothing_is_committed(hf_api, dataset):
    first = hf_api.upload_file(path_or_fileobj=b"v1", path_in_repo="tasks.csv", repo_id=dataset,
                               repo_type="dataset")
    second = hf_api.upload_file(path_or_fileobj=b"v2", path_in_repo="tasks.csv", repo_id=dataset,
                                repo_type="dataset", parent_commit=first.oid)
    with pytest.raises(HfHubHTTPError) as excinfo:
        hf_api.upload_file(path_or_fileobj=b"v3", path_in_repo="tasks.csv", repo_id=dataset,
                           repo_type="dataset", parent_commit=first.oid)
    assert excinfo.value.response.status_code == 412
    assert "A commit has happened since" in excinfo.value.server_message
    assert hf_api.repo_info(dataset, repo_type="dataset").sha == second.oid
    path = hf_api.hf_hub_download(dataset, "tasks.csv", repo_type="dataset", revision=second.oid)
    assert open(path, "rb").read() == b"v2"


def test_short_parent_commit_is_accepted(hf_api, dataset):
    head = hf_api.repo_info(dataset, repo_type="dataset").sha
    hf_api.upload_file(path_or_fileobj=b"x", path_in_repo="a.txt", repo_id=dataset, repo_type="dataset",
                       parent_commit=head[:7])


def test_concurrent_commits_on_the_same_parent_have_exactly_one_winner(hf_api, dataset, emulator):
    head = hf_api.repo_info(dataset, repo_type="dataset").sha
    results: list[str] = []

    def worker(i: int) -> None:
        try:
            hf_api.create_commit(dataset, repo_type="dataset", commit_message=f"w{i}", parent_commit=head,
                                 operations=[CommitOperationAdd("tasks.csv", f"worker {i}".encode())])
            results.append("ok")
        except HfHubHTTPError as exc:
            results.append(str(exc.response.status_code))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 1 and results.count("412") == 11
    assert len(hf_api.list_repo_commits(dataset, repo_type="dataset")) == 2
    assert emulator.stats["commit_412"] == 11


def test_file_metadata_gives_the_commit_and_the_git_blob_etag(hf_api, dataset):
    info = hf_api.upload_file(path_or_fileobj=b"hello", path_in_repo="dir/a b.txt", repo_id=dataset,
                              repo_type="dataset")
    url = hf_hub_url(dataset, "dir/a b.txt", repo_type="dataset", endpoint=hf_api.endpoint)
    meta = hf_api.get_hf_file_metadata(url=url)
    assert meta.commit_hash == info.oid
    assert meta.etag == "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0"  # git hash-object of "hello"
    assert meta.size == 5
    short = hf_hub_url(dataset, "dir/a b.txt", repo_type="dataset", endpoint=hf_api.endpoint,
                       revision=info.oid[:8])
    assert hf_api.get_hf_file_metadata(url=short).commit_hash == info.oid


def test_missing_file_raises_entry_not_found_and_missing_repo_does_not_exist(hf_api, dataset):
    assert hf_api.file_exists(dataset, "nope.csv", repo_type="dataset") is False
    with pytest.raises(EntryNotFoundError):
        hf_api.hf_hub_download(dataset, "nope.csv", repo_type="dataset")
    assert hf_api.repo_exists("demo/absent", repo_type="dataset") is False
    assert hf_api.repo_exists(dataset, repo_type="dataset") is True
    with pytest.raises(RepositoryNotFoundError):
        hf_api.repo_info("demo/absent", repo_type="dataset")


def test_creating_an_existing_repo_is_409_unless_exist_ok(hf_api, dataset):
    with pytest.raises(HfHubHTTPError) as excinfo:
        hf_api.create_repo(dataset, repo_type="dataset")
    assert excinfo.value.response.status_code == 409
    assert str(hf_api.create_repo(dataset, repo_type="dataset", exist_ok=True)).endswith(f"/datasets/{dataset}")


def test_delete_operations_tree_listing_and_paths_info(hf_api, dataset):
    hf_api.create_commit(dataset, repo_type="dataset", commit_message="files", operations=[
        CommitOperationAdd("a/1.txt", b"1"), CommitOperationAdd("a/b/2.txt", b"22"),
        CommitOperationAdd("c.txt", b"333")])
    files = hf_api.list_repo_files(dataset, repo_type="dataset")
    assert sorted(files) == [".gitattributes", "a/1.txt", "a/b/2.txt", "c.txt"]
    top = {e.path for e in hf_api.list_repo_tree(dataset, repo_type="dataset")}
    assert top == {".gitattributes", "a", "c.txt"}
    infos = hf_api.get_paths_info(dataset, ["c.txt", "a", "zzz"], repo_type="dataset")
    assert [(type(i).__name__, i.path) for i in infos] == [("RepoFile", "c.txt"), ("RepoFolder", "a")]
    hf_api.create_commit(dataset, repo_type="dataset", commit_message="rm", operations=[
        CommitOperationDelete("a/"), CommitOperationDelete("c.txt")])
    assert hf_api.list_repo_files(dataset, repo_type="dataset") == [".gitattributes"]


def test_identical_content_is_a_client_side_no_op(hf_api, dataset):
    first = hf_api.upload_file(path_or_fileobj=b"same", path_in_repo="t.csv", repo_id=dataset,
                               repo_type="dataset")
    again = hf_api.upload_file(path_or_fileobj=b"same", path_in_repo="t.csv", repo_id=dataset,
                               repo_type="dataset")
    assert again.oid == first.oid


def test_model_repos_and_delete_repo(hf_api):
    hf_api.create_repo("demo/model", private=True)
    hf_api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id="demo/model")
    assert open(hf_api.hf_hub_download("demo/model", "config.json"), "rb").read() == b"{}"
    assert hf_api.model_info("demo/model").private is True
    hf_api.delete_repo("demo/model")
    assert hf_api.repo_exists("demo/model") is False
    hf_api.delete_repo("demo/model", missing_ok=True)


def test_branches_and_super_squash(hf_api, dataset):
    for i in range(3):
        hf_api.upload_file(path_or_fileobj=str(i).encode(), path_in_repo="n.txt", repo_id=dataset,
                           repo_type="dataset")
    hf_api.create_branch(dataset, branch="dev", repo_type="dataset")
    hf_api.upload_file(path_or_fileobj=b"dev", path_in_repo="n.txt", repo_id=dataset, repo_type="dataset",
                       revision="dev")
    path = hf_api.hf_hub_download(dataset, "n.txt", repo_type="dataset", revision="main")
    assert open(path, "rb").read() == b"2"
    hf_api.super_squash_history(dataset, repo_type="dataset")
    assert len(hf_api.list_repo_commits(dataset, repo_type="dataset")) == 1
    assert {b.name for b in hf_api.list_repo_refs(dataset, repo_type="dataset").branches} == {"main", "dev"}


def test_list_datasets_filters_by_author(hf_api, dataset):
    hf_api.create_repo("other/thing", repo_type="dataset")
    assert [d.id for d in hf_api.list_datasets(author="demo")] == [dataset]
    assert {d.id for d in hf_api.list_datasets(search="thing")} == {"other/thing"}
