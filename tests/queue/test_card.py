"""The queue dataset's card: `init` writes it with the queue, gives an existing queue one, and never replaces
a README someone else wrote; the datasets library reads the two splits it declares."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from datetime import timedelta

import pytest
from huggingface_hub import HfApi, snapshot_download

from scheduler import card, codec, schema
from scheduler.queue import TaskQueue
from scheduler.stores import HubStore
from scheduler.tasks import Task

from ..support import child_env
from .conftest import TOKEN
from .people_files import lease_of

_names = itertools.count()


@pytest.fixture
def hub(hub_emulator):
    api = HfApi(endpoint=hub_emulator.url, token=TOKEN)
    repo = f"demo/carded-{next(_names)}"
    return hub_emulator, api, repo


def _commits(api, repo) -> int:
    return len(api.list_repo_commits(repo, repo_type="dataset"))


def test_init_creates_the_queue_its_card_and_an_empty_archive_in_one_commit(hub):
    emulator, api, repo = hub
    assert TaskQueue.open(f"hf://datasets/{repo}", token=TOKEN, endpoint=emulator.url).init()
    files = set(api.list_repo_files(repo, repo_type="dataset"))
    archive = card.empty_archive_path()
    assert {"tasks.csv", "README.md", archive} <= files
    commit = api.list_repo_commits(repo, repo_type="dataset")[0]
    assert commit.title == "Create the task queue"
    configs = api.dataset_info(repo).card_data["configs"]
    assert configs[0]["data_files"] == [{"split": "queue", "path": "tasks.csv"},
                                        {"split": "archive", "path": "archive/*.csv"}]
    assert [f["name"] for f in configs[0]["features"]] == list(schema.NAMES)
    readme = api.hf_hub_download(repo, "README.md", repo_type="dataset")
    text = open(readme, encoding="utf-8").read()
    assert all(f"| `{name}` |" in text for name in schema.NAMES)
    assert codec.parse(open(api.hf_hub_download(repo, archive, repo_type="dataset"), "rb").read()).rows == []
    assert _commits(api, repo) == 2  # the repo's creation, then the queue with its card


def test_init_gives_an_existing_queue_its_card_once_and_leaves_tasks_csv_as_it_is(hub):
    emulator, api, repo = hub
    api.create_repo(repo, repo_type="dataset", private=True)
    store = HubStore(repo, token=TOKEN, endpoint=emulator.url)
    old = codec.dump(codec.Table().appended([Task.new("acme/m", "acme/d")])).replace(b"\r\n", b"\n")
    store.write({"tasks.csv": old}, expected=store.read().version, message="a queue made before cards")
    commits = _commits(api, repo)

    queue = TaskQueue.open(f"hf://datasets/{repo}", token=TOKEN, endpoint=emulator.url)
    assert queue.init() is False
    assert _commits(api, repo) == commits + 1
    assert store.read().data == old
    assert "README.md" in api.list_repo_files(repo, repo_type="dataset")
    assert queue.init() is False
    assert _commits(api, repo) == commits + 1  # up to date: no commit


def test_a_readme_someone_else_wrote_is_left_alone_and_ours_is_updated(hub):
    emulator, api, repo = hub
    url = f"hf://datasets/{repo}"
    TaskQueue.open(url, token=TOKEN, endpoint=emulator.url).init()
    store = HubStore(repo, token=TOKEN, endpoint=emulator.url)
    for readme, rewritten in [(b"# My own notes about this queue\n", False),
                              (card.card_text(repo).replace("Task queue", "Old title").encode(), True)]:
        store.write({"README.md": readme}, expected=store.read().version, message="edit the card")
        commits = _commits(api, repo)
        TaskQueue.open(url, token=TOKEN, endpoint=emulator.url).init()
        now = store.read_at("README.md", store.read().version)
        assert (now == card.card_text(repo).encode()) is rewritten and _commits(api, repo) == commits + rewritten


def test_a_local_queue_gets_no_card(tmp_path):
    TaskQueue.open(str(tmp_path / "q")).init()
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == [".tasks.csv.lock", "tasks.csv"]


LOAD = """
import json, sys
import datasets
folder = sys.argv[1]
out = {}
for streaming in (True, False):
    loaded = datasets.load_dataset(folder, streaming=streaming)
    out[str(streaming)] = {split: [row["id"] for row in loaded[split]] for split in loaded}
    out["columns"] = list(loaded["queue"].features)
print(json.dumps(out))
"""


def test_the_datasets_library_reads_the_queue_and_the_archive_as_the_two_splits_of_the_card(hub, tmp_path):
    pytest.importorskip("datasets")
    emulator, api, repo = hub
    queue = TaskQueue.open(f"hf://datasets/{repo}", token=TOKEN, endpoint=emulator.url)
    queue.init()
    done = queue.add(Task.new("acme/old", "acme/d", params={"epochs": 1}))
    pending = queue.add(Task.new("acme/new", "acme/d"))
    claimed = queue.claim("w", 60)
    assert claimed.id == done.id
    queue.complete(done.id, lease_of(claimed), {"loss": 0.5}, gpu_seconds=12.0, cost_usd=0.002)
    queue.clock = lambda: done.submitted_at + timedelta(days=40)
    assert queue.archive(timedelta(days=7)) == 1
    folder = snapshot_download(repo, repo_type="dataset", endpoint=emulator.url, token=TOKEN,
                               local_dir=tmp_path / "snapshot")
    result = subprocess.run([sys.executable, "-c", LOAD, str(folder)], capture_output=True, text=True, timeout=300,
                            env=child_env(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1",
                                          HF_DATASETS_CACHE=str(tmp_path / "cache")))
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    for streaming in ("True", "False"):
        assert loaded[streaming] == {"queue": [pending.id], "archive": [done.id]}, streaming
    assert loaded["columns"] == list(schema.NAMES)
