"""HubStore against the emulator: the Hub's failure modes, and why the queue survives each."""

from __future__ import annotations

import pytest
from huggingface_hub import HfApi

from scheduler import codec
from scheduler.errors import CSVFormatError, StoreError
from scheduler.queue import TaskQueue
from scheduler.stores import HubStore, open_store
from scheduler.tasks import Status, Task

from .conftest import TOKEN, make_hub_queue_url


def _queue(emulator, url, **kw) -> TaskQueue:
    return TaskQueue.open(url, token=TOKEN, endpoint=emulator.url, **kw)


def _repo(url: str) -> str:
    return url[len("hf://datasets/"):]


def test_a_malformed_tasks_csv_on_the_hub_is_reported_and_never_overwritten(hub_emulator):
    url = make_hub_queue_url(hub_emulator)
    queue = _queue(hub_emulator, url)
    queue.add(Task.new("acme/m", "acme/d"))
    api = HfApi(endpoint=hub_emulator.url, token=TOKEN)
    broken = queue.store.read().data.replace(b"PENDING", b"PENDNG")
    api.upload_file(path_or_fileobj=broken, path_in_repo="tasks.csv", repo_id=_repo(url), repo_type="dataset")
    head = api.repo_info(_repo(url), repo_type="dataset").sha
    for action in (lambda q: q.add(Task.new("acme/m2", "acme/d")), lambda q: q.claim("w", 60), lambda q: q.list()):
        with pytest.raises(CSVFormatError) as info:
            action(_queue(hub_emulator, url))
        assert info.value.line == 2 and info.value.field == "status"
    assert api.repo_info(_repo(url), repo_type="dataset").sha == head
    assert _queue(hub_emulator, url).store.read().data == broken


def test_reads_are_never_served_from_a_stale_cache_when_the_hub_fails(hub_emulator):
    url = make_hub_queue_url(hub_emulator)
    writer, reader = _queue(hub_emulator, url), _queue(hub_emulator, url, unavailable_deadline_s=1.5)
    task = writer.add(Task.new("acme/m", "acme/d"))
    assert reader.get(task.id).status is Status.PENDING
    writer.cancel(task.id)
    hub_emulator.set_faults(error_rate=1.0, paths=r"/resolve/")
    try:
        with pytest.raises(StoreError, match="unavailable"):
            reader.get(task.id)
    finally:
        hub_emulator.set_faults(error_rate=0.0, paths=None)
    assert reader.get(task.id).status is Status.CANCELLED


def test_a_commit_applied_but_unacknowledged_is_not_applied_twice(hub_emulator):
    url = make_hub_queue_url(hub_emulator)
    queue = _queue(hub_emulator, url)
    hub_emulator.set_faults(drop_after_commit_rate=1.0, paths=r"/commit/")
    try:
        stored = queue.add_many([Task.new("acme/a", "acme/d"), Task.new("acme/b", "acme/d")])
        claimed = queue.claim("w", 60)
    finally:
        hub_emulator.set_faults(drop_after_commit_rate=0.0, paths=None)
    assert queue.stats["ambiguous"] >= 2
    assert hub_emulator.stats["fault_dropped_after_commit"] >= 2
    tasks = _queue(hub_emulator, url).list()
    assert sorted(t.id for t in tasks) == sorted(t.id for t in stored)
    assert [t.id for t in tasks if t.status is Status.RUNNING] == [claimed.id]


def test_rate_limited_commits_wait_for_retry_after_and_then_land(hub_emulator):
    url = make_hub_queue_url(hub_emulator)
    queue = _queue(hub_emulator, url)
    hub_emulator.set_faults(commit_429_every=1, retry_after_s=0.3, paths=r"/commit/")
    waits: list[float] = []
    queue._sleep = lambda s: (waits.append(s), hub_emulator.set_faults(commit_429_every=0))
    try:
        queue.add(Task.new("acme/a", "acme/d"))
    finally:
        hub_emulator.set_faults(commit_429_every=0, paths=None)
    assert waits and 0.3 <= waits[0] < 0.5
    assert len(_queue(hub_emulator, url).list()) == 1


def test_a_missing_dataset_is_a_clear_error_and_init_creates_it_private(hub_emulator):
    url = "hf://datasets/demo/not-there-yet"
    with pytest.raises(StoreError, match="not found"):
        _queue(hub_emulator, url).list()
    assert _queue(hub_emulator, url).init() is True
    assert _queue(hub_emulator, url).init() is False
    info = HfApi(endpoint=hub_emulator.url, token=TOKEN).dataset_info("demo/not-there-yet")
    assert info.private is True
    assert _queue(hub_emulator, url).list() == []


def test_the_store_writes_archive_and_queue_in_one_commit(hub_emulator):
    url = make_hub_queue_url(hub_emulator)
    api = HfApi(endpoint=hub_emulator.url, token=TOKEN)
    before = len(api.list_repo_commits(_repo(url), repo_type="dataset"))
    store = open_store(url, token=TOKEN, endpoint=hub_emulator.url)
    assert isinstance(store, HubStore)
    version = store.read().version
    store.write({"tasks.csv": codec.dump(codec.Table()), "archive/tasks-2026-01.csv": b"x"}, expected=version, message="m")
    assert len(api.list_repo_commits(_repo(url), repo_type="dataset")) == before + 1


@pytest.mark.parametrize("url", ["hf://datasets/only-owner", "hf://datasets/a/b/../../etc", "s3://bucket/x"])
def test_bad_queue_urls_are_refused_before_any_request(url):
    from scheduler.errors import UserError

    with pytest.raises(UserError):
        open_store(url)


@pytest.mark.parametrize("skew_s", [-900, 900])
def test_leases_are_judged_on_the_hubs_clock_whatever_this_machines_clock_says(hub_emulator, skew_s):
    """A worker whose clock is 15 minutes off neither steals a live lease (ahead) nor keeps waiting on a
    dead one (behind): lease times are written and compared in the time of the Hub's answers (`Date`)."""
    import time

    url = make_hub_queue_url(hub_emulator)
    honest = _queue(hub_emulator, url)
    skewed = TaskQueue.open(url, token=TOKEN, endpoint=hub_emulator.url, local_clock=lambda: time.time() + skew_s)
    honest.add(Task.new("acme/m", "acme/d"))
    held = honest.claim("honest", 600)
    assert skewed.claim("skewed", 600) is None  # live for the Hub: not stolen, even 15 minutes "later"
    assert abs((skewed.clock() - honest.clock()).total_seconds()) < 5
    short = honest.add(Task.new("acme/m2", "acme/d"))
    taken = skewed.claim("skewed", 2, hardware=short.hardware)
    assert taken.id == short.id and held.id != short.id
    time.sleep(3.5)  # the lease (2 s, in Hub time) has run out, whatever the skewed clock says
    again = honest.claim("honest-2", 600)
    assert again.id == short.id and again.attempts == 2
