"""The app's shared queue reads: a write's invalidation never waits behind readers on a slow Hub,
concurrent readers share reads, and a fresh read sees every write acknowledged before it."""

from __future__ import annotations

import threading

import pytest

from scheduler.dashboard import CachedQueue
from scheduler.queue import TaskQueue
from scheduler.tasks import Task


class GatedReads:
    """A queue whose reads take their snapshot, then block until the test opens the gate (a Hub
    that takes its time to answer)."""

    def __init__(self, queue: TaskQueue):
        self.queue = queue
        self.gate = threading.Event()
        self.inside = threading.Semaphore(0)
        self.calls = 0

    def list(self):
        self.calls += 1
        snapshot = self.queue.list()
        self.inside.release()
        assert self.gate.wait(30), "the test never opened the gate"
        return snapshot


@pytest.fixture
def queue(tmp_path) -> TaskQueue:
    return TaskQueue.open(str(tmp_path / "q"))


def readers(cached: CachedQueue, n: int, fresh: bool) -> tuple[list[threading.Thread], list]:
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(cached.tasks(fresh=fresh)), daemon=True)
               for _ in range(n)]
    for thread in threads:
        thread.start()
    return threads, results


def test_invalidating_after_a_write_never_waits_for_readers_stuck_in_a_read(queue):
    gated = GatedReads(queue)
    cached = CachedQueue(gated)
    threads, _ = readers(cached, 6, fresh=True)
    assert gated.inside.acquire(timeout=10)  # one of them is inside a read that does not end
    queue.add(Task.new("a/b", "c/d", id="NEW"))
    done = threading.Event()
    threading.Thread(target=lambda: (cached.invalidate(), done.set()), daemon=True).start()
    assert done.wait(10), "invalidate() waited for the readers"
    assert all(t.is_alive() for t in threads)  # the readers are still waiting: nothing was skipped
    gated.gate.set()
    for thread in threads:
        thread.join(10)
    assert [t.id for t in cached.tasks(fresh=True)] == ["NEW"]


def test_concurrent_fresh_readers_share_reads_and_each_sees_writes_made_before_its_call(queue):
    gated = GatedReads(queue)
    cached = CachedQueue(gated)
    first, first_results = readers(cached, 1, fresh=True)
    assert gated.inside.acquire(timeout=10)
    queue.add(Task.new("a/b", "c/d", id="T1"))  # after the first read began: it cannot be in it
    later, later_results = readers(cached, 5, fresh=True)
    gated.gate.set()
    for thread in first + later:
        thread.join(10)
    assert gated.calls == 2  # six readers, two reads: the one under way, then one for all who came after
    assert [t.id for t in first_results[0]] == []
    assert all([t.id for t in result] == ["T1"] for result in later_results)


def test_a_page_gets_the_last_copy_while_a_fresher_read_is_under_way_unless_a_write_made_it_stale(queue):
    queue.add(Task.new("a/b", "c/d", id="OLD"))
    gated = GatedReads(queue)
    gated.gate.set()
    now = [0.0]
    cached = CachedQueue(gated, ttl_s=1.0, clock=lambda: now[0])
    assert cached.last_copy() == [] and gated.calls == 0  # never reads
    assert [t.id for t in cached.tasks()] == ["OLD"]
    gated.gate.clear()
    queue.add(Task.new("a/b", "c/d", id="OTHER"))  # by another client: this app does not know
    now[0] = 5.0  # the copy is past its ttl
    threads, _ = readers(cached, 1, fresh=False)
    assert gated.inside.acquire(timeout=10) and gated.inside.acquire(timeout=10)  # the first read, then this one
    assert [t.id for t in cached.tasks()] == ["OLD"] == [t.id for t in cached.last_copy()]  # no wait
    gated.gate.set()
    threads[0].join(10)
    assert [t.id for t in cached.tasks()] == ["OLD", "OTHER"]

    gated.gate.clear()
    queue.add(Task.new("a/b", "c/d", id="MINE"))  # through this app: its write is invalidated
    cached.invalidate()
    page_threads, page_results = readers(cached, 2, fresh=False)
    assert gated.inside.acquire(timeout=10)
    assert all(t.is_alive() for t in page_threads)  # they wait for the read that sees it
    gated.gate.set()
    for thread in page_threads:
        thread.join(10)
    assert all([t.id for t in result] == ["OLD", "OTHER", "MINE"] for result in page_results)


def test_a_failed_read_reaches_its_caller_and_the_next_caller_reads_again(queue):
    class Flaky:
        def __init__(self):
            self.calls = 0

        def list(self):
            self.calls += 1
            if self.calls == 1:
                raise OSError("the Hub went away")
            return queue.list()

    flaky = Flaky()
    cached = CachedQueue(flaky)
    with pytest.raises(OSError, match="the Hub went away"):
        cached.tasks(fresh=True)
    assert cached.tasks(fresh=True) == [] and flaky.calls == 2
